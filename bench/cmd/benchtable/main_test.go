package main

import (
	"strings"
	"testing"
)

const boundInput = `cores: 2
BenchmarkDurableAppend/value=100/kafkawal-SyncPeriodic/batch=1000-2   1   0 ns/op   1000000 records/s   1.0 cpu-us/record
BenchmarkDurableAppend/value=100/kafkawal-SyncAlways/batch=1000-2     1   0 ns/op    100000 records/s   1.0 cpu-us/record
BenchmarkEndToEnd/value=100/batch=1000/plain-2                        1   0 ns/op    500000 records/s   3.0 cpu-us/record
BenchmarkEndToEnd/value=100/batch=1000/plain-2                        1   0 ns/op    400000 records/s   2.0 cpu-us/record
BenchmarkEndToEnd/value=100/batch=1000/plain-2                        1   0 ns/op    600000 records/s   4.0 cpu-us/record
BenchmarkEndToEnd/value=100/batch=1000/kafkawal-SyncPeriodic-2        1   0 ns/op    450000 records/s   3.5 cpu-us/record   0.9 x_plain
BenchmarkEndToEnd/value=100/batch=1000/kafkawal-SyncAlways-2          1   0 ns/op     90000 records/s   9.0 cpu-us/record   0.18 x_plain
`

func renderString(t *testing.T, in string) string {
	t.Helper()
	res, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	render(&b, res)
	return b.String()
}

// The limit is cores / ((plain + WAL cpu-us/record) × plain records/s),
// from medians (plain: 500,000 records/s and 3.0 µs), or the WAL's own
// records/s over plain's when that is lower.
func TestBounds(t *testing.T) {
	out := renderString(t, boundInput)
	for _, want := range []string{
		"#### End to end: the most `x_plain` this machine allows",
		"with all 2 cores busy",
		// 2 / (4.0e-6 × 500,000) = 1.00; the WAL alone: 2.00
		"|value=100/batch=1000/kafkawal-SyncPeriodic|0.90|500,000|3.00|1.50|1.00|1,000,000|1.00|||0.9|",
		// the WAL alone: 100,000 / 500,000 = 0.2, below the CPU's 1.00
		"|value=100/batch=1000/kafkawal-SyncAlways|0.75|500,000|3.00|1.50|1.00|100,000|0.2 (WAL alone)|||0.18|",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// Without DurableAppend in the run (or without a cores line) there is
// nothing to bound with: no such table, and the rest renders as before.
func TestBoundsNeedTheirFigures(t *testing.T) {
	var e2eOnly []string
	for _, l := range strings.Split(boundInput, "\n") {
		if !strings.HasPrefix(l, "BenchmarkDurableAppend") {
			e2eOnly = append(e2eOnly, l)
		}
	}
	noCores := strings.TrimPrefix(boundInput, "cores: 2\n")
	for name, in := range map[string]string{"no DurableAppend": strings.Join(e2eOnly, "\n"), "no cores": noCores} {
		out := renderString(t, in)
		if strings.Contains(out, "most `x_plain`") {
			t.Errorf("%s: a bounds table without its figures:\n%s", name, out)
		}
		if !strings.Contains(out, "|value=100/batch=1000/kafkawal-SyncAlways|") {
			t.Errorf("%s: the EndToEnd table is missing:\n%s", name, out)
		}
	}
}

// A reference row without one of the figures (here the WAL's CPU) gives no
// limit for that row; the others keep theirs.
func TestBoundsSkipARowWithoutItsFigures(t *testing.T) {
	in := strings.Replace(boundInput,
		"BenchmarkDurableAppend/value=100/kafkawal-SyncPeriodic/batch=1000-2   1   0 ns/op   1000000 records/s   1.0 cpu-us/record",
		"BenchmarkDurableAppend/value=100/kafkawal-SyncPeriodic/batch=1000-2   1   0 ns/op   1000000 records/s", 1)
	if in == boundInput {
		t.Fatal("the input did not change")
	}
	out := renderString(t, in)
	_, bounds, _ := strings.Cut(out, "most `x_plain` this machine allows")
	if strings.Contains(bounds, "|value=100/batch=1000/kafkawal-SyncPeriodic|") {
		t.Errorf("a limit without the WAL's cpu-us/record:\n%s", bounds)
	}
	if !strings.Contains(bounds, "|value=100/batch=1000/kafkawal-SyncAlways|0.75|") {
		t.Errorf("the SyncAlways row lost its limit:\n%s", bounds)
	}
}

// With ReadBack in the run, each row also gets the limit with the
// read-back's cpu-us/record added to the sum (median of its runs), still
// capped by the WAL's own records/s.
func TestBoundsWithReadBack(t *testing.T) {
	in := boundInput +
		"BenchmarkReadBack/value=100-2   1   0 ns/op   9000000 records/s   0.5 cpu-us/record\n" +
		"BenchmarkReadBack/value=100-2   1   0 ns/op   9000000 records/s   1.0 cpu-us/record\n" +
		"BenchmarkReadBack/value=100-2   1   0 ns/op   9000000 records/s   2.0 cpu-us/record\n"
	out := renderString(t, in)
	for _, want := range []string{
		"|most x_plain|read-back cpu-us/record|most x_plain with read-back|x_plain|",
		// 2 / ((3.0 + 1.0 + 1.0) µs × 500,000) = 0.8
		"|value=100/batch=1000/kafkawal-SyncPeriodic|0.90|500,000|3.00|1.50|1.00|1,000,000|1.00|1.00|0.8|0.9|",
		// the WAL alone still binds: 0.2
		"|value=100/batch=1000/kafkawal-SyncAlways|0.75|500,000|3.00|1.50|1.00|100,000|0.2 (WAL alone)|1.00|0.2|0.18|",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
