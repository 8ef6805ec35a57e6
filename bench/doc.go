// Package bench holds kafkawal's side-by-side benchmarks: what durability
// costs in throughput, latency and memory, each figure measured in the same
// run as the thing it is compared with (the raw disk, a bbolt queue used as
// the OpenTelemetry Collector uses it, a plain confluent-kafka-go producer).
//
// Everything is in _test.go files; run
//
//	go test -run '^$' -bench . ./bench/...
//
// and see README.md for the table, the environment variables
// (KAFKAWAL_BROKER=real, KAFKAWAL_BENCH_FULL=1) and how to read the ratios.
// Nothing imports this package.
package bench
