package drill

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

func TestChildArgsRoundTrip(t *testing.T) {
	c := ChildConfig{
		Dir: "/tmp/w", Bootstrap: "127.0.0.1:9092", KafkaConfig: "/tmp/k.json", Topics: []string{"a", "b"}, Partitions: 3,
		Rate: 12.5, Size: 7, Durability: "periodic", Run: 7, Nonce: "abc",
		Drain: true, DrainRecords: 9, DrainTimeout: 3 * time.Second,
	}
	got, err := parseChildArgs(c.Args())
	if err != nil || !reflect.DeepEqual(got, c) {
		t.Fatalf("parseChildArgs(Args()) = %+v, %v; want %+v", got, err, c)
	}
	for _, bad := range [][]string{
		nil,
		append(c.Args(), "--durability", "sometimes"),
		append(c.Args(), "--run", "0"),
		append(c.Args(), "stray"),
		append(c.Args(), "--no-such-flag"),
	} {
		if _, err := parseChildArgs(bad); err == nil {
			t.Errorf("parseChildArgs(%q) accepted", bad)
		}
	}
}

// TestChildRecords: ids carry the run and never repeat; records go
// round-robin over topics and partitions, so that every partition sees its
// ids in increasing order (the order the drill checks).
func TestChildRecords(t *testing.T) {
	c := ChildConfig{Topics: []string{"a", "b"}, Partitions: 3, Size: 30, Run: 5, Nonce: "xyz"}
	last := map[string]uint64{}
	seen := map[uint64]bool{}
	count := map[string]int{}
	for i := range uint64(60) {
		r := c.record(i)
		id := c.id(i)
		if id>>32 != 5 || seen[id] {
			t.Fatalf("record %d: id %d (run %d) repeats or misses the run", i, id, id>>32)
		}
		seen[id] = true
		key := r.Topic + "/" + string(rune('0'+r.Partition))
		if r.Topic == "b" {
			if r.Partition != kafkawal.PartitionAny || len(r.Key) != 2 {
				t.Fatalf("record %d on the second topic: partition %d key %q, want PartitionAny and a key", i, r.Partition, r.Key)
			}
			key = r.Topic + "/" + string(r.Key)
		}
		if id <= last[key] {
			t.Fatalf("%s: id %d after %d", key, id, last[key])
		}
		last[key] = id
		count[key]++
		if len(r.Value) != 30 || !bytes.HasPrefix(r.Value, []byte("21474836")) {
			t.Fatalf("value %q", r.Value)
		}
		if len(r.Headers) != 2 || r.Headers[0].Key != IDHeader || r.Headers[1].Key != NonceHeader || string(r.Headers[1].Value) != "xyz" {
			t.Fatalf("headers %+v", r.Headers)
		}
	}
	if len(count) != 6 {
		t.Fatalf("used %d topic-partitions, want 6: %v", len(count), count)
	}
	for k, n := range count {
		if n != 10 {
			t.Errorf("%s got %d records of 60, want 10", k, n)
		}
	}
	if c.id(0) >= (ChildConfig{Run: 6}).id(0) || (ChildConfig{Run: 5}).id(1<<32-2) >= (ChildConfig{Run: 6}).id(0) {
		t.Error("ids of a later run are not above those of an earlier one")
	}
}

func TestParseArgs(t *testing.T) {
	cfg, out, err := ParseArgs([]string{"--kills", "50", "--topics", "x,y", "--json", "--net-cuts", "2", "--cut-for", "5s", "--seed", "9"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Kills != 50 || !reflect.DeepEqual(cfg.Topics, []string{"x", "y"}) || !out.JSON || cfg.NetCuts != 2 ||
		cfg.CutFor != 5*time.Second || cfg.Seed != 9 || cfg.Broker != "embedded" || cfg.Rate != DefaultRate {
		t.Fatalf("parsed %+v %+v", cfg, out)
	}
	if cfg, _, err := ParseArgs([]string{"--kills", "0"}); err != nil || !cfg.NoKills || cfg.withDefaults().Kills != 0 {
		t.Fatalf("--kills 0: %+v, %v", cfg, err)
	}
	if _, _, err := ParseArgs([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--kill-after-min", "3s", "--kill-after-max", "1s"}, "--kill-after-min"},
		{[]string{"--durability", "sometimes"}, "--durability"},
		{[]string{"--bootstrap", "x:1", "--net-cuts", "1"}, "--net-cuts"},
		{[]string{"--broker", "imaginary"}, "--broker"},
		{[]string{"--listener", "carrier-pigeon"}, "--listener"},
		{[]string{"--bootstrap", "x:1", "--listener", "sasl_ssl"}, "--listener"},
		{[]string{"--rate", "0"}, "--rate"},
		{[]string{"--partitions", "0"}, "--partitions"},
		{[]string{"--topics", "a,,b"}, "--topics"},
		{[]string{"--kills", "0", "--net-cuts", "1"}, "--kills"},
		{[]string{"--kills", "-1"}, "--kills"},
		{[]string{"stray"}, "stray"},
		{[]string{"--kills", "many"}, "kills"},
	} {
		if _, _, err := ParseArgs(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseArgs(%q) = %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
	var b bytes.Buffer
	Usage(&b)
	for _, f := range []string{"-kills", "-kill-after-min", "-broker-restarts", "-net-cuts", "-cut-for", "-json", "Exit status"} {
		if !strings.Contains(b.String(), f) {
			t.Errorf("usage lacks %s", f)
		}
	}
}

func TestPlanFaults(t *testing.T) {
	plan := func(seed uint64) []plannedFault {
		return planFaults(rand.New(rand.NewPCG(seed, seed)), 2, 3, 1, 10*time.Second)
	}
	p := plan(1)
	if !reflect.DeepEqual(p, plan(1)) || reflect.DeepEqual(p, plan(2)) {
		t.Fatal("the fault plan is not a function of the seed")
	}
	kinds := map[string]int{}
	for i, f := range p {
		kinds[f.Kind]++
		if f.At < 0 || f.At >= 10*time.Second || i > 0 && f.At < p[i-1].At {
			t.Fatalf("plan %+v: out of span or order", p)
		}
	}
	if kinds[faultBrokerRestart] != 2 || kinds[faultNetCut] != 3 || kinds[faultStall] != 1 {
		t.Fatalf("plan %+v", p)
	}
}

// TestRunChildDrain runs the load generator in this process (so the race
// detector sees it) as the drain run: it appends, flushes, closes, and its
// ledger says so.
func TestRunChildDrain(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	b, err := kafkatest.StartEmbedded(ctx, kafkatest.Options{Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.CreateTopic(ctx, "c", 2, nil); err != nil {
		t.Fatal(err)
	}
	c := ChildConfig{Dir: t.TempDir(), Bootstrap: b.Bootstrap(), Topics: []string{"c"}, Partitions: 2, Rate: 2000,
		Size: 10, Durability: "never", Run: 3, Nonce: "n", Drain: true, DrainRecords: 300, DrainTimeout: 30 * time.Second}
	var ledger, logs bytes.Buffer
	if err := RunChild(ctx, c, &ledger, &logs); err != nil {
		t.Fatalf("RunChild: %v\n%s", err, logs.String())
	}
	l := readLedger(&ledger, time.Now)
	if l.Open == nil || l.ackedCount() != 300 || l.Acked[0].First != 3<<32|1 || l.FirstDelivery.IsZero() ||
		l.Drained == nil || l.Drained.Delivered != 300 || l.Drained.Cursor != 300 || len(l.Garbage) != 0 {
		t.Fatalf("ledger %+v, drained %+v", l, l.Drained)
	}
	recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), c.Topics, 300)
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Nonce: "n"}
	rep.verify(ackedIDs([]*runLedger{l}), recs)
	if rep.Lost != 0 || rep.OrderViolations != 0 || rep.Acknowledged != 300 || rep.Duplicates != 0 {
		t.Fatalf("read back: %+v", rep)
	}
}
