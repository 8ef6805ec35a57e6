#!/usr/bin/env bash
# check.sh: promtool on kafkawal's Prometheus artefacts, as CI runs it.
#
#   promtool check rules alerts.yml        the rules parse
#   promtool test rules alerts_test.yml    every alert fires, and stays silent
#   promtool check metrics                 on a real scrape of
#                                          examples/httpingest's /metrics
#                                          (names, types, units)
#   promtool check rules                   on dashboard.json's expressions
#                                          (prom's TestDashboard: valid
#                                          PromQL, exported metrics only)
#
# Needs Go, promtool (Debian: apt-get install prometheus) and curl.
set -euo pipefail
cd "$(dirname "$0")"

promtool check rules alerts.yml
promtool test rules alerts_test.yml
echo "Checking dashboard.json's expressions"
KAFKAWAL_REQUIRE_PROMTOOL=1 go test -count=1 -run 'TestDashboard|TestAlertsUseExportedMetrics' ../../prom/

# A real scrape: httpingest with its embedded broker, after a few events
# were delivered, so that every histogram has observations.
tmp=$(mktemp -d)
pid=
cleanup() {
	if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/httpingest" ../httpingest
"$tmp/httpingest" -addr 127.0.0.1:0 -dir "$tmp/wal" -producer-name check 2>"$tmp/log" &
pid=$!
addr=
for _ in $(seq 300); do
	addr=$(grep 'httpingest: serving' "$tmp/log" | grep -o '"addr":"[^"]*"' | cut -d'"' -f4 || true)
	[[ -n $addr ]] && break
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/log"; echo "check.sh: httpingest exited"; exit 1; }
	sleep 0.1
done
[[ -n $addr ]] || { cat "$tmp/log"; echo "check.sh: httpingest did not start"; exit 1; }
for i in 1 2 3; do
	curl -fsS "http://$addr/events" -d "[{\"key\":\"k$i\",\"n\":$i},{\"key\":\"j$i\"}]" >/dev/null
done
for _ in $(seq 300); do
	curl -fsS "http://$addr/stats" | grep -q '"delivered":6,' && break
	sleep 0.1
done
curl -fsS "http://$addr/metrics" >"$tmp/metrics.txt"
grep -q '^kafkawal_delivered_records_total{producer="check"} 6$' "$tmp/metrics.txt" ||
	{ grep '^kafkawal_' "$tmp/metrics.txt"; echo "check.sh: the scrape does not show 6 delivered records"; exit 1; }
echo "Checking a scrape of httpingest's /metrics ($(grep -c '^kafkawal_' "$tmp/metrics.txt") kafkawal samples)"
promtool check metrics <"$tmp/metrics.txt"
echo "  SUCCESS"
