#!/usr/bin/env bash
# table.sh: the tables of bench/README.md from `go test -bench` output.
#
#   bench/table.sh                 render bench/results/embedded.txt
#   bench/table.sh FILE            render FILE (any `go test -bench ./bench/` output)
#   bench/table.sh run [FLAGS...]  run the suite with FLAGS (e.g. -count 3),
#                                  EndToEnd and Partitions with -benchtime 3s (and -count N
#                                  as N rounds of -count 1), save the output
#                                  to bench/results/<broker>.txt (embedded or
#                                  real), then render it
#
# Environment: KAFKAWAL_BROKER=real and KAFKAWAL_BENCH_FULL=1 as for go test;
# BENCHSTAT=1 also prints benchstat's summary (fetched with go run, not added
# to go.mod).
set -euo pipefail
cd "$(dirname "$0")/.."

broker=embedded
[[ "${KAFKAWAL_BROKER:-}" == real ]] && broker=real

if [[ "${1:-}" == run ]]; then
	shift
	mkdir -p bench/results
	out=bench/results/$broker.txt
	# -count N runs EndToEnd as N rounds of -count 1 rather than N runs of
	# each sub-benchmark in a row, so that every kafkawal run's x_plain is
	# against a plain producer run seconds before it, not minutes: this
	# machine's speed drifts that much.
	rounds=1
	flags=()
	while (($#)); do
		case $1 in
		-count) rounds=$2; shift 2 ;;
		-count=*) rounds=${1#-count=}; shift ;;
		*) flags+=("$1"); shift ;;
		esac
	done
	go test -run '^$' -bench . -skip 'EndToEnd|Partitions' -timeout 3h -count "$rounds" ${flags[@]+"${flags[@]}"} ./bench/ | tee "$out.tmp"
	# EndToEnd and Partitions run on their own with -benchtime 3s, for
	# sustained figures: at the default 1 s, start-up weighs on them. The
	# raw-disk loops run again beside them for EndToEnd's of_disk column
	# (the table's medians take every run of them).
	for ((i = 1; i <= rounds; i++)); do
		go test -run '^$' -bench 'DurableAppend|EndToEnd|Partitions' -skip 'DurableAppend/./(bbolt|kafkawal)' \
			-benchtime 3s -timeout 3h -count 1 ${flags[@]+"${flags[@]}"} ./bench/ | tee -a "$out.tmp"
	done
	mv "$out.tmp" "$out"
	set -- "$out"
fi

in=${1:-bench/results/$broker.txt}
go run ./bench/cmd/benchtable "$in"
if [[ "${BENCHSTAT:-0}" == 1 ]]; then
	go run golang.org/x/perf/cmd/benchstat@latest "$in"
fi
