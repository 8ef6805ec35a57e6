package kafkawal_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// eosConfig is baseConfig in exactly-once mode.
func eosConfig(t testing.TB, b kafkatest.Broker, txnID string) kafkawal.Config {
	cfg := baseConfig(t, b)
	cfg.Delivery = kafkawal.ExactlyOnce
	cfg.TransactionalID = txnID
	return cfg
}

// verifyCommitted reads topics back with read_committed and checks the
// exactly-once contract: nothing lost, nothing twice, order kept.
func verifyCommitted(t testing.TB, b kafkatest.Broker, topics []string, acked []uint64) kafkatest.Report {
	t.Helper()
	recs, err := kafkatest.ReadCommitted(testCtx(t, 3*time.Minute), b.Bootstrap(), topics, len(acked))
	if err != nil {
		t.Logf("read back: %v", err)
	}
	rep := kafkatest.Verify(acked, recs, recordID, nil)
	t.Logf("verify (read_committed) %s: %v", strings.Join(topics, ","), rep)
	if !rep.OK() || rep.Duplicates != 0 || rep.Unidentified != 0 {
		t.Fatalf("exactly-once broken: %v", rep)
	}
	return rep
}

// appendIDs appends n id records round-robin over partitions, in batches.
func appendIDs(t testing.TB, p *kafkawal.Producer, topic string, partitions int32, from, n uint64) []uint64 {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	var acked []uint64
	var batch []kafkawal.Record
	for id := from; id < from+n; id++ {
		batch = append(batch, idRecord(topic, int32(id%uint64(partitions)), id, value(100, id)))
		if len(batch) == 100 || id == from+n-1 {
			if _, err := p.AppendBatch(ctx, batch); err != nil {
				t.Fatalf("AppendBatch: %v", err)
			}
			for _, r := range batch {
				id, _ := recordIDOf(r)
				acked = append(acked, id)
			}
			batch = batch[:0]
		}
	}
	return acked
}

func recordIDOf(r kafkawal.Record) (uint64, bool) {
	for _, h := range r.Headers {
		if h.Key == idHeader {
			var id uint64
			for _, c := range h.Value {
				id = id*10 + uint64(c-'0')
			}
			return id, true
		}
	}
	return 0, false
}

// Records appended under ExactlyOnce are read once by a read_committed
// consumer, across a Close and a new Open of the same directory; the
// checkpoint topic is created on first use.
func TestExactlyOnceDelivers(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "eos", 3, nil)
	cfg := eosConfig(t, b, "eos-delivers")
	p := openT(t, cfg)
	acked := appendIDs(t, p, "eos", 3, 1, 5000)
	if err := p.Flush(testCtx(t, time.Minute)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	st := p.Stats()
	if st.Transactions == 0 || st.Delivered != 5000 || st.Cursor != 5000 || st.Fenced || st.ExactlyOnceError != "" {
		t.Fatalf("stats after Flush: %+v", st)
	}
	// Each commit observed once; each record once, at its commit.
	if l := p.Latencies(); l.Commit.Count != st.Transactions || l.Delivery.Count != 5000 || st.CommitLatencyP99 == 0 {
		t.Fatalf("commit histogram %d observations for %d transactions, delivery histogram %d for 5000 records, commit p99 %v",
			l.Commit.Count, st.Transactions, l.Delivery.Count, st.CommitLatencyP99)
	}
	closeT(t, p, 30*time.Second)

	p = openT(t, cfg)
	acked = append(acked, appendIDs(t, p, "eos", 3, 5001, 2000)...)
	if err := p.Flush(testCtx(t, time.Minute)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	closeT(t, p, 30*time.Second)
	verifyCommitted(t, b, []string{"eos"}, acked)
}

// syncBuffer is a log sink for one producer, safe for its goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), sub)
}

// copyDir copies the WAL directory src to dst (the lock file is a plain
// file: its flock is not copied).
func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o600)
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}

func idsOf(recs []*kgo.Record) map[uint64]int {
	m := make(map[uint64]int)
	for _, r := range recs {
		if id, ok := recordID(r); ok {
			m[id]++
		}
	}
	return m
}

// Zombie: a copy of a WAL directory opened with the same TransactionalID
// (a second instance started while the first still runs) fences the
// first. The first stops for good and says so (ErrFenced from Flush and
// Close, Stats.Fenced, one error line), keeps what it could not deliver,
// and nothing reaches read_committed consumers twice: the first's open
// transaction is aborted, and the second delivers those records from its
// copy. Reopened later, the first's directory, which appended on its own
// after the copy, is refused (its records under the same sequences
// differ from what Kafka committed), not taken for delivered. The two
// producers run in one process: to Kafka they are two instances as much
// as two processes would be.
func TestExactlyOnceZombieIsFenced(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "zombie", 2, nil)
	ctx := testCtx(t, 3*time.Minute)

	var logA syncBuffer
	lgA := zerolog.New(&logA)
	cfgA := eosConfig(t, b, "zombie-1")
	cfgA.Logger = &lgA
	cfgA.CommitInterval = time.Hour // a transaction stays open until a Flush
	a := openT(t, cfgA)
	batch1 := appendIDs(t, a, "zombie", 2, 1, 500)
	if err := a.Flush(ctx); err != nil {
		t.Fatalf("A Flush: %v", err)
	}
	// Batch 2 goes into A's open transaction: in Kafka, not committed.
	batch2 := appendIDs(t, a, "zombie", 2, 501, 500)
	if recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"zombie"}, 1000); err != nil || len(recs) != 1000 {
		t.Fatalf("read_uncommitted read %d records (%v), want A's 1000", len(recs), err)
	}

	cfgB := eosConfig(t, b, "zombie-1")
	copyDir(t, cfgA.Dir, cfgB.Dir)
	bp := openT(t, cfgB)
	if err := bp.Flush(ctx); err != nil {
		t.Fatalf("B Flush: %v", err)
	}
	if st := bp.Stats(); st.Delivered != 500 || st.Fenced {
		t.Fatalf("B delivered %d (fenced %v), want batch 2's 500 from its copy", st.Delivered, st.Fenced)
	}

	err := a.Flush(ctx)
	if !errors.Is(err, kafkawal.ErrFenced) {
		t.Fatalf("A Flush after B started = %v, want ErrFenced", err)
	}
	batch3 := appendIDs(t, a, "zombie", 2, 1001, 300) // kept in A's WAL, never sent
	if err := a.Flush(ctx); !errors.Is(err, kafkawal.ErrFenced) {
		t.Fatalf("second A Flush = %v, want ErrFenced at once", err)
	}
	st := a.Stats()
	if !st.Fenced || st.BacklogRecords != 800 || st.Cursor != 500 {
		t.Fatalf("A stats: fenced %v, backlog %d, cursor %d; want true, 800 (batches 2 and 3), 500", st.Fenced, st.BacklogRecords, st.Cursor)
	}
	batch4 := appendIDs(t, bp, "zombie", 2, 2001, 300)
	if err := bp.Flush(ctx); err != nil {
		t.Fatalf("B Flush: %v", err)
	}
	if err := a.Close(ctx); !errors.Is(err, kafkawal.ErrFenced) {
		t.Fatalf("A Close = %v, want ErrFenced", err)
	}
	closeT(t, bp, 30*time.Second)
	if n, m := logA.count(`"level":"error"`), logA.count("delivery stopped for good"); n != 1 || m != 1 {
		t.Fatalf("A logged %d error lines, %d about the fencing; want that one only:\n%s", n, m, logA.b.String())
	}

	acked := append(append(append([]uint64{}, batch1...), batch2...), batch4...)
	verifyCommitted(t, b, []string{"zombie"}, acked)
	all, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"zombie"}, len(acked)+len(batch2))
	if err != nil {
		t.Fatalf("read_uncommitted: %v", err)
	}
	ids := idsOf(all)
	for _, id := range batch2 {
		if ids[id] != 2 {
			t.Fatalf("read_uncommitted sees batch 2's id %d %d times, want twice (A's aborted copy and B's)", id, ids[id])
		}
	}
	for _, id := range batch3 {
		if ids[id] != 0 {
			t.Fatalf("id %d, appended to the fenced A, reached Kafka", id)
		}
	}

	// A's directory again, with B gone: its sequences 1001..1300 hold
	// batch 3, B committed batch 4 under them.
	var logA2 syncBuffer
	lgA2 := zerolog.New(&logA2)
	cfgA.Logger = &lgA2
	a2 := openT(t, cfgA)
	waitFor(t, time.Minute, "the checkpoint refused", func() bool { return a2.Stats().ExactlyOnceError != "" })
	if msg := a2.Stats().ExactlyOnceError; !strings.Contains(msg, "differs from the one Kafka committed") {
		t.Fatalf("ExactlyOnceError = %q, want the histories told apart", msg)
	}
	if err := a2.Flush(ctx); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("Flush of the diverged copy = %v, want the checkpoint's error", err)
	}
	if st := a2.Stats(); st.Delivered != 0 || st.BacklogRecords != 800 {
		t.Fatalf("diverged copy: delivered %d, backlog %d; want 0 and 800 kept", st.Delivered, st.BacklogRecords)
	}
	if err := a2.Close(ctx); err == nil || !strings.Contains(err.Error(), "differs") {
		t.Fatalf("Close of the diverged copy = %v, want the checkpoint's error", err)
	}
}

// rssBytes is the process's resident set (VmRSS): Go heap and librdkafka's
// C memory.
func rssBytes(t testing.TB) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatalf("read /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// An outage longer than transaction.timeout.ms: the coordinator aborts the
// transaction that was open when the network went silent, the producer
// finds itself fenced when the network is back, sees the transaction was
// older than the timeout, and replaces itself rather than stopping; then
// everything is delivered from the committed position, once. Memory stays
// flat while the backlog builds on disk.
func TestExactlyOnceOutageLongerThanTransactionTimeout(t *testing.T) {
	// With message.timeout.ms left at 0 records wait in librdkafka through
	// the outage; with a finite one (allowed under ExactlyOnce up to
	// transaction.timeout.ms) they fail, and their transaction is aborted:
	// either way the order holds, as the whole transaction goes again.
	for _, c := range []struct {
		name           string
		messageTimeout time.Duration
	}{{"message.timeout.ms 0", 0}, {"message.timeout.ms 2s", 2 * time.Second}} {
		t.Run(c.name, func(t *testing.T) { eosOutage(t, c.messageTimeout) })
	}
}

func eosOutage(t *testing.T, messageTimeout time.Duration) {
	b := kafkatest.StartT(t, kafkatest.Options{Proxy: true})
	createTopic(t, b, "eos-outage", 4, nil)
	cfg := eosConfig(t, b, "eos-outage")
	const txnTimeout = 3 * time.Second
	cfg.Kafka["transaction.timeout.ms"] = int(txnTimeout / time.Millisecond)
	// Transactions are committed by Flush only, so that one is surely
	// open on the broker when the network goes silent.
	cfg.CommitInterval = time.Hour
	if messageTimeout > 0 {
		cfg.Kafka["message.timeout.ms"] = int(messageTimeout / time.Millisecond)
	}
	p := openT(t, cfg)
	ctx := testCtx(t, 5*time.Minute)

	const valueSize, batch = 4096, 256
	id := uint64(1)
	var acked []uint64
	appendBatch := func() {
		recs := make([]kafkawal.Record, batch)
		for i := range recs {
			recs[i] = idRecord("eos-outage", int32(id%4), id, value(valueSize, id))
			acked = append(acked, id)
			id++
		}
		if _, err := p.AppendBatch(ctx, recs); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	for range 32 { // 32 MiB delivered first
		appendBatch()
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	appendBatch() // into a transaction left open: in Kafka, not committed
	if recs, err := kafkatest.ReadAll(ctx, b.Bootstrap(), []string{"eos-outage"}, len(acked)); err != nil || len(recs) != len(acked) {
		t.Fatalf("read_uncommitted read %d of %d records (%v)", len(recs), len(acked), err)
	}
	heap0, rss0 := heapInUse(), rssBytes(t)
	b.Proxy().Blackhole()
	start := time.Now()
	var peakHeap uint64
	var peakRSS int64
	// 4 x the transaction timeout (and past Apache Kafka's 1 s check for
	// timed-out transactions); 128 MiB of backlog, paced.
	for outage := 4 * txnTimeout; time.Since(start) < outage; {
		appendBatch()
		peakHeap, peakRSS = max(peakHeap, heapInUse()), max(peakRSS, rssBytes(t))
		time.Sleep(outage * batch * (valueSize + 64) / (128 << 20))
	}
	st := p.Stats()
	t.Logf("outage %v: backlog %d records, %d MiB on disk; heap %d -> %d MiB, RSS %d -> %d MiB",
		time.Since(start).Round(time.Millisecond), st.BacklogRecords, st.DiskBytes>>20, heap0>>20, peakHeap>>20, rss0>>20, peakRSS>>20)
	if growth := int64(peakHeap) - int64(heap0); growth > 64<<20 {
		t.Fatalf("heap grew %d MiB with a %d MiB backlog; want < 64 MiB", growth>>20, st.DiskBytes>>20)
	}
	if growth := peakRSS - rss0; growth > 128<<20 {
		t.Fatalf("RSS grew %d MiB with a %d MiB backlog; want < 128 MiB", growth>>20, st.DiskBytes>>20)
	}
	b.Proxy().Heal()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush after the outage: %v (stats %+v)", err, p.Stats())
	}
	st = p.Stats()
	t.Logf("after heal: %+v", st)
	if st.Fenced || st.ProducerRebuilds == 0 || st.ExactlyOnceError != "" {
		t.Fatalf("fenced %v, producer rebuilds %d, checkpoint error %q: want the timed-out transaction answered by a new producer, not a stop", st.Fenced, st.ProducerRebuilds, st.ExactlyOnceError)
	}
	closeT(t, p, time.Minute)
	verifyCommitted(t, b, []string{"eos-outage"}, acked)
	// The transaction open at the cut was aborted: a read_uncommitted
	// consumer sees its records twice, which tells the two reads apart.
	all, err := kafkatest.ReadAll(testCtx(t, 3*time.Minute), b.Bootstrap(), []string{"eos-outage"}, len(acked))
	if err != nil {
		t.Fatal(err)
	}
	if rep := kafkatest.Verify(acked, all, recordID, nil); rep.Lost != 0 || rep.Duplicates < batch {
		t.Fatalf("read_uncommitted: %v; want the aborted transaction's %d records twice", rep, batch)
	}
}

// Records Kafka refuses for good (one over the topic's max.message.bytes,
// one to a topic that does not exist) under exactly-once: each makes its
// transaction abort once, is then sent alone, dead-lettered, and covered
// by the next commit; the records behind them are delivered once.
func TestExactlyOnceDeadLetters(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "eos-small", 2, map[string]string{"max.message.bytes": "50000"})
	cfg := eosConfig(t, b, "eos-dead")
	cfg.Kafka["compression.type"] = "none"
	cfg.Kafka["batch.size"] = 40000 // the oversize record travels alone (README)
	var mu sync.Mutex
	var told []kafkawal.DeadLetter
	cfg.OnDeadLetter = func(dl kafkawal.DeadLetter) { mu.Lock(); told = append(told, dl); mu.Unlock() }
	p := openT(t, cfg)
	ctx := testCtx(t, 3*time.Minute)
	var acked []uint64
	for id := uint64(1); id <= 300; id++ {
		r := idRecord("eos-small", int32(id%2), id, value(100, id))
		switch id {
		case 100:
			r.Value = value(100000, id) // over the topic's max.message.bytes
		case 200:
			r.Topic = "eos-missing-topic"
		default:
			acked = append(acked, id)
		}
		if _, err := p.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); !errors.Is(err, kafkawal.ErrDeadLettered) {
		t.Fatalf("Flush = %v, want the dead letters reported (stats %+v)", err, p.Stats())
	}
	st := p.Stats()
	t.Logf("stats: %+v", st)
	if st.DeadLettered != 2 || st.Delivered != 298 || st.Cursor != 300 || st.TransactionsAborted == 0 {
		t.Fatalf("stats %+v: want 2 dead-lettered, 298 delivered, cursor 300, aborted transactions", st)
	}
	mu.Lock()
	if len(told) != 2 || told[0].Seq != 100 || told[1].Seq != 200 {
		t.Fatalf("OnDeadLetter told %d: %+v; want seq 100 and 200", len(told), told)
	}
	mu.Unlock()
	// Reopened, the committed checkpoint covers the dead letters: nothing
	// is sent (or dead-lettered) again.
	closeT(t, p, 30*time.Second)
	p = openT(t, cfg)
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.DeadLettered != 0 || st.Delivered != 0 || st.Cursor != 300 {
		t.Fatalf("after reopen: %+v; want nothing sent again", st)
	}
	closeT(t, p, 30*time.Second)
	verifyCommitted(t, b, []string{"eos-small"}, acked)
}

// A checkpoint that cannot be trusted stops delivery with an error that
// says why, and keeps every record: never a silent fresh start that would
// skip records or send committed ones again.
func TestExactlyOnceCheckpointRefused(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{})
	createTopic(t, b, "eos-refused", 1, nil)
	ctx := testCtx(t, 3*time.Minute)
	deliver := func(cfg kafkawal.Config, from uint64) {
		t.Helper()
		p := openT(t, cfg)
		appendIDs(t, p, "eos-refused", 1, from, 100)
		if err := p.Flush(ctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		closeT(t, p, 30*time.Second)
	}
	refused := func(cfg kafkawal.Config, want string) {
		t.Helper()
		p := openT(t, cfg)
		appendIDs(t, p, "eos-refused", 1, 9000, 10)
		waitFor(t, time.Minute, "the checkpoint refused", func() bool { return p.Stats().ExactlyOnceError != "" })
		st := p.Stats()
		if !strings.Contains(st.ExactlyOnceError, want) || st.Delivered != 0 || st.BacklogRecords == 0 {
			t.Fatalf("stats %+v; want ExactlyOnceError with %q, nothing delivered, the records kept", st, want)
		}
		if err := p.Flush(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Flush = %v, want the checkpoint's error", err)
		}
		if err := p.Close(ctx); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("Close = %v, want the checkpoint's error", err)
		}
	}

	// A directory that committed with the id, and a new directory given
	// the same id by mistake.
	cfg := eosConfig(t, b, "eos-refused")
	deliver(cfg, 1)
	other := eosConfig(t, b, "eos-refused")
	refused(other, "belongs to another WAL directory")

	// The checkpoint topic deleted (and created again, empty): the
	// directory that committed refuses to start over.
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Bootstrap()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).DeleteTopics(ctx, "kafkawal-checkpoints"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the checkpoint topic gone", func() bool {
		td, err := kadm.NewClient(cl).ListTopics(ctx, "kafkawal-checkpoints")
		return err == nil && !td.Has("kafkawal-checkpoints")
	})
	refused(cfg, "holds no checkpoint for TransactionalID")

	// A new TransactionalID for the directory: delivery resumes from the
	// local cursor (the records appended while refused are delivered),
	// with a warning.
	var log syncBuffer
	lg := zerolog.New(&log)
	cfg.Logger = &lg
	cfg.TransactionalID = "eos-refused-2"
	p := openT(t, cfg)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush with a new TransactionalID: %v", err)
	}
	if st := p.Stats(); st.Delivered != 10 || st.ExactlyOnceError != "" {
		t.Fatalf("stats %+v; want the 10 records appended while refused delivered", st)
	}
	closeT(t, p, 30*time.Second)
	if log.count("TransactionalID changed") != 1 {
		t.Fatalf("no warning about the changed TransactionalID:\n%s", log.b.String())
	}
}
