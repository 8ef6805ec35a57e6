#!/usr/bin/env bash
# table.sh: the tables of bench/README.md from `go test -bench` output.
#
#   bench/table.sh                 render bench/results/embedded.txt
#   bench/table.sh FILE            render FILE (any `go test -bench ./bench/` output)
#   bench/table.sh run [FLAGS...]  run the suite with FLAGS (e.g. -count 3),
#                                  EndToEnd with -benchtime 3s, save the output
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
	# EndToEnd runs on its own with -benchtime 3s, for sustained figures:
	# at the default 1 s, start-up weighs on them. The raw-disk loops run
	# again beside it for its of_disk column (the table's medians take both
	# runs of them).
	go test -run '^$' -bench . -skip EndToEnd -timeout 3h "$@" ./bench/ | tee "$out.tmp"
	go test -run '^$' -bench 'DurableAppend|EndToEnd' -skip 'DurableAppend/./(bbolt|kafkawal)' \
		-benchtime 3s -timeout 3h "$@" ./bench/ | tee -a "$out.tmp"
	mv "$out.tmp" "$out"
	set -- "$out"
fi

in=${1:-bench/results/$broker.txt}
go run ./bench/cmd/benchtable "$in"
if [[ "${BENCHSTAT:-0}" == 1 ]]; then
	go run golang.org/x/perf/cmd/benchstat@latest "$in"
fi
