// Command benchtable turns `go test -bench ./bench/...` output into the
// Markdown tables of bench/README.md: one table per benchmark, one row per
// sub-benchmark, one column per metric, each cell the median of the runs
// (-count N) with the spread of the runs when there is more than one.
//
//	go run ./bench/cmd/benchtable bench/results/latest.txt
//	go test -run '^$' -bench . ./bench/ | go run ./bench/cmd/benchtable
//
// The ratios (x_plain, x_bbolt, of_disk, …) are metrics the benchmarks
// report themselves, each against a reference measured in the same run;
// see bench/README.md for how to read them. One table is derived: after
// EndToEnd's, the most x_plain the machine allows each kafkawal row (see
// bound), from the run's medians.
package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

func main() {
	var in io.Reader = os.Stdin
	if len(os.Args) > 2 || (len(os.Args) == 2 && strings.HasPrefix(os.Args[1], "-")) {
		fmt.Fprintln(os.Stderr, "usage: benchtable [go-test-bench-output.txt]  (default: stdin)")
		os.Exit(2)
	}
	if len(os.Args) == 2 {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchtable:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	res, err := parse(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(res.groups) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark results in the input")
		os.Exit(1)
	}
	render(os.Stdout, res)
}

// results is a parsed `go test -bench` output.
type results struct {
	config [][2]string // "key: value" lines, in order, first of each key
	groups []*group
}

// group is one top-level benchmark.
type group struct {
	name  string
	rows  []*row
	units []string
}

// row is one sub-benchmark: its values per unit, one per run.
type row struct {
	name   string
	values map[string][]float64
}

var (
	// A result line: name, iterations, then value/unit pairs.
	resultLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)
	configLine = regexp.MustCompile(`^([a-z][^\s:]*): (.*)$`)
)

func parse(r io.Reader) (*results, error) {
	res := &results{}
	seenKey := map[string]bool{}
	groups := map[string]*group{}
	rows := map[string]*row{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t")
		if m := configLine.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, "ok") {
			if !seenKey[m[1]] {
				seenKey[m[1]] = true
				res.config = append(res.config, [2]string{m[1], m[2]})
			}
			continue
		}
		m := resultLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		full := m[1]
		top, sub, _ := strings.Cut(full, "/")
		g := groups[top]
		if g == nil {
			g = &group{name: top}
			groups[top] = g
			res.groups = append(res.groups, g)
		}
		rw := rows[full]
		if rw == nil {
			rw = &row{name: sub, values: map[string][]float64{}}
			rows[full] = rw
			g.rows = append(g.rows, rw)
		}
		f := strings.Fields(m[3])
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("odd value/unit fields in %q", line)
		}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("value %q in %q: %v", f[i], line, err)
			}
			unit := f[i+1]
			if unit == "ns/op" && v == 0 {
				continue // hidden by the benchmark: its op is not comparable
			}
			if !slices.Contains(g.units, unit) {
				g.units = append(g.units, unit)
			}
			rw.values[unit] = append(rw.values[unit], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, g := range res.groups {
		sort.SliceStable(g.units, func(i, j int) bool { return unitRank(g.units[i]) < unitRank(g.units[j]) })
	}
	return res, nil
}

// unitOrder puts the figures first, then the comparisons.
var unitOrder = []string{
	"records/s", "MB/s", "cpu-us/record", "broker-cpu-us/record", "records/write",
	"p50-append-us", "p99-append-us", "p99.9-append-us",
	"p50-delivered-ms", "p99-delivered-ms", "p99.9-delivered-ms",
	"p50-after-ms", "p99-after-ms", "p99-fsync-ms",
	"first-delivery-ms", "open-ms",
	"base-RSS-MB", "peak-RSS-MB", "RSS-growth-MB", "RSS-growth-2nd-half-MB", "peak-heap-MB", "heap-growth-MB", "held-MB", "RSS-MB/GiB-held",
	"appended-MB", "disk-B/value-B", "disk-B/wal-B", "dev-B/value-B",
}

func unitRank(u string) int {
	if i := slices.Index(unitOrder, u); i >= 0 {
		return i
	}
	if strings.HasPrefix(u, "x_") || strings.HasPrefix(u, "of_") {
		return 2000
	}
	return 1000
}

// titles say what each benchmark compares; README.md says more.
var titles = map[string]string{
	"BenchmarkDurableAppend":         "Durable append (sender idle): kafkawal vs the raw disk and bbolt (OTel Collector queue)",
	"BenchmarkEndToEnd":              "End to end, append → delivery report: kafkawal vs plain confluent-kafka-go",
	"BenchmarkPartitions":            "Many partitions: end to end with the records spread over 4 or 1,000 partitions (one with a hot key)",
	"BenchmarkPartitionsExactlyOnce": "Many partitions under exactly-once: the same records, kafkawal ExactlyOnce vs at-least-once and a plain transactional producer",
	"BenchmarkExactlyOnce":           "Exactly-once, append → committed: kafkawal ExactlyOnce vs at-least-once and a plain transactional producer",
	"BenchmarkLatency":               "Latency at a fixed offered load (open loop), SyncAlways vs plain",
	"BenchmarkReplay":                "Replay after a restart with a backlog vs a plain producer sending the same records",
	"BenchmarkOutageMemory":          "Memory while a backlog builds behind a blackholed broker (one child process per side)",
	"BenchmarkWriteAmplification":    "Write amplification with delivery and truncation running",
}

// order is the order of the tables, whatever the order of the runs
// (bench/table.sh runs EndToEnd last, in a go test of its own).
var order = []string{
	"BenchmarkDurableAppend", "BenchmarkEndToEnd", "BenchmarkPartitions", "BenchmarkPartitionsExactlyOnce",
	"BenchmarkExactlyOnce", "BenchmarkLatency", "BenchmarkOutageMemory", "BenchmarkReplay", "BenchmarkWriteAmplification",
}

func render(w io.Writer, res *results) {
	rank := func(g *group) int {
		if i := slices.Index(order, g.name); i >= 0 {
			return i
		}
		return len(order) // others after, in the order they ran
	}
	slices.SortStableFunc(res.groups, func(a, b *group) int { return rank(a) - rank(b) })
	for _, kv := range res.config {
		fmt.Fprintf(w, "- %s: %s\n", kv[0], kv[1])
	}
	if len(res.config) > 0 {
		fmt.Fprintln(w)
	}
	for _, g := range res.groups {
		title := titles[g.name]
		if title == "" {
			title = g.name
		}
		fmt.Fprintf(w, "#### %s\n\n`%s`\n\n", title, g.name)
		fmt.Fprintf(w, "| |%s|\n", strings.Join(g.units, "|"))
		fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---:|", len(g.units)))
		for _, r := range g.rows {
			cells := make([]string, len(g.units))
			for i, u := range g.units {
				cells[i] = cell(r.values[u])
			}
			fmt.Fprintf(w, "|%s|%s|\n", r.name, strings.Join(cells, "|"))
		}
		fmt.Fprintln(w)
		if g.name == "BenchmarkEndToEnd" {
			renderBounds(w, res, g)
		}
	}
}

// goals are the end-to-end x_plain goals, by durability mode.
var goals = map[string]float64{"SyncPeriodic": 0.90, "SyncAlways": 0.75}

// bound is, for one kafkawal EndToEnd row, the most x_plain the machine
// allows: kafkawal does the plain producer's Kafka work (same librdkafka,
// broker and records) plus its WAL's, measured alone by DurableAppend in
// the same run, so with every core busy it cannot exceed
// cores / (plain's + the WAL's cpu-us/record) records/s; nor can it
// deliver faster than the WAL alone appends. Both over the plain
// producer's records/s.
//
// The sender's read-back of records from the WAL is not in that sum: when
// the run has ReadBack (its cpu-us/record, same value size), the table
// also gives the limit with it added (readBack), which is what the
// pipeline costs when the appenders outrun Kafka, as they do in EndToEnd.
type bound struct {
	plainRPS, plainCPU, walCPU, walRPS, cores float64
	readCPU                                   float64 // 0: not measured
}

func (b bound) cpu() float64   { return b.cores / ((b.plainCPU + b.walCPU) * 1e-6 * b.plainRPS) }
func (b bound) wal() float64   { return b.walRPS / b.plainRPS }
func (b bound) value() float64 { return min(b.cpu(), b.wal()) }
func (b bound) readBack() float64 {
	return min(b.cores/((b.plainCPU+b.walCPU+b.readCPU)*1e-6*b.plainRPS), b.wal())
}

func median(vs []float64) (float64, bool) {
	if len(vs) == 0 {
		return 0, false
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
	}
	return s[len(s)/2], true
}

// renderBounds follows the EndToEnd table with what the machine allows
// each kafkawal row (see bound), when the run has DurableAppend and a
// "cores:" line.
func renderBounds(w io.Writer, res *results, e2e *group) {
	var cores float64
	for _, kv := range res.config {
		if kv[0] == "cores" {
			cores, _ = strconv.ParseFloat(kv[1], 64)
		}
	}
	if cores <= 0 {
		return
	}
	rows := map[string]*row{}
	for _, g := range res.groups {
		for _, r := range g.rows {
			rows[g.name+"/"+r.name] = r
		}
	}
	var lines []string
	for _, r := range e2e.rows {
		// value=V/SHAPE/kafkawal-MODE
		parts := strings.Split(r.name, "/")
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "kafkawal-") {
			continue
		}
		mode := strings.TrimPrefix(parts[2], "kafkawal-")
		plain := rows["BenchmarkEndToEnd/"+parts[0]+"/"+parts[1]+"/plain"]
		wal := rows["BenchmarkDurableAppend/"+parts[0]+"/"+parts[2]+"/"+parts[1]]
		if plain == nil || wal == nil {
			continue
		}
		missing := false
		med := func(r *row, unit string) float64 {
			v, ok := median(r.values[unit])
			missing = missing || !ok
			return v
		}
		b := bound{
			plainRPS: med(plain, "records/s"), plainCPU: med(plain, "cpu-us/record"),
			walRPS: med(wal, "records/s"), walCPU: med(wal, "cpu-us/record"),
			cores: cores,
		}
		if missing || b.plainRPS <= 0 {
			continue
		}
		readCPU, withRead := "", ""
		if rb := rows["BenchmarkReadBack/"+parts[0]]; rb != nil {
			if v, ok := median(rb.values["cpu-us/record"]); ok && v > 0 {
				b.readCPU = v
				readCPU, withRead = num(v), num(b.readBack())
			}
		}
		goal := ""
		if g, ok := goals[mode]; ok {
			goal = strconv.FormatFloat(g, 'f', 2, 64)
		}
		limit := num(b.value())
		if b.wal() < b.cpu() {
			limit += " (WAL alone)"
		}
		lines = append(lines, fmt.Sprintf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|",
			r.name, goal, num(b.plainRPS), num(b.plainCPU), num(b.plainCPU*1e-6*b.plainRPS),
			num(b.walCPU), num(b.walRPS), limit, readCPU, withRead, cell(r.values["x_plain"])))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "#### End to end: the most `x_plain` this machine allows\n\n")
	n := strconv.FormatFloat(cores, 'f', -1, 64)
	fmt.Fprintf(w, "kafkawal does the plain producer's Kafka work plus its WAL's (DurableAppend, same run), so with all %s cores busy it cannot pass %s ÷ (plain + WAL `cpu-us/record`) records/s, nor the WAL's own records/s; both over plain's records/s (medians; plain's figure holds the broker's CPU with either broker: the embedded one runs in the process, and a real one's JVM is added since `7de691c`; in runs saved before that, a real broker's CPU was left out, which loosened the limit). That sum leaves out the sender's read-back of the records from the WAL, which every EndToEnd run pays (the appenders outrun Kafka): \"with read-back\" adds ReadBack's `cpu-us/record` (same run) to it.\n\n", n, n)
	fmt.Fprintln(w, "| |goal|plain records/s|plain cpu-us/record|plain cores busy|WAL cpu-us/record|WAL records/s|most x_plain|read-back cpu-us/record|most x_plain with read-back|x_plain|")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
}

// cell is the median of vs, with ±half the range of the runs in percent of
// the median when there are several.
func cell(vs []float64) string {
	med, ok := median(vs)
	if !ok {
		return ""
	}
	out := num(med)
	if len(vs) > 1 && med != 0 {
		out += fmt.Sprintf(" ±%.0f%%", 100*(slices.Max(vs)-slices.Min(vs))/2/math.Abs(med))
	}
	return out
}

// num prints v readably: integers with thousands separated from 100 up,
// three significant digits below.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1000:
		return group3(strconv.FormatFloat(v, 'f', 0, 64))
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a == 0:
		return "0"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func group3(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
