package sender

import (
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Delivery reports are attributed to records by position: librdkafka
// reports a record's success only after the reports of every record
// produced before it to the same partition (the idempotent producer
// writes a partition's records in order, and its retries keep it), so the
// sender keeps, per partition, the sequences it produced there (fifo) and
// gives each report the oldest one. That needs the partition at Produce
// time; for PartitionAny records the sender therefore partitions them
// itself, exactly as librdkafka's configured partitioner would
// (partitionerKind.hash, tested against librdkafka), with the partition
// count from a metadata request (metaFetcher).
//
// The alternative, confluent-kafka-go's Message.Opaque, goes through a
// mutex-guarded map shared with the poller goroutine on every Produce and
// every report, plus two allocations: the largest single cost of
// forwarding small records (bench/HISTORY.md, "Delivery reports attributed
// by position"). It remains the fallback wherever
// the partition is not known yet (no metadata: outage, new topic), for
// records sent alone to confirm a permanent error, and without idempotence
// (AllowWeakerDelivery), where librdkafka may retry out of order.
//
// Why a wrong attribution cannot lose a record:
//   - Success reports of one partition swapped among themselves mark the
//     same set of records delivered.
//   - Failures can be reported before an earlier record's success:
//     librdkafka fails every queued record of a partition at once on a
//     topic-level error (TOPIC_AUTHORIZATION_FAILED) while an earlier
//     request is still in flight, and that one succeeds later. So a failure
//     report switches the sender to draining, and from then until the
//     rewind (or, at Close and while a producer is closed, until the end)
//     every positional report counts as a failure, successes included: a
//     success that was really another record's cannot mark a failed record
//     delivered. The records are re-sent (counted Resent).
//   - The one order that would mark a failed record delivered is a success
//     reported before an earlier record's failure in the same partition.
//     librdkafka does not produce it: TestNoSuccessOvertakesAnEarlierReport
//     drives it, configured as here, through permanent and retriable broker
//     errors with later requests in flight and through a local timeout of a
//     request the broker did write, and fails if a success ever overtakes
//     an earlier record's report (it would fail on a librdkafka upgrade
//     that changed this). Given that, and no success believed after a
//     failure, the successes believed are exactly the records in produce
//     order: the first report is the first record's, and each later
//     success follows the reports of every record before its own, which
//     are all earlier reports, so it is its position's record. Nothing
//     detects the order at run time (a report carries no identity).
//   - A tripwire checks each partition's success offsets rise in report
//     order; if they ever do not, the sender logs it, counts it
//     (Stats.ReportAnomalies), re-sends everything unacknowledged, and
//     goes back to Opaque for good.

// partitionerKind is librdkafka's partitioner setting.
type partitionerKind uint8

const (
	consistentRandom partitionerKind = iota // librdkafka's default
	consistent
	random
	murmur2Partitioner
	murmur2Random
	fnv1aPartitioner
	fnv1aRandom
)

var partitionerNames = map[string]partitionerKind{
	"consistent_random": consistentRandom,
	"consistent":        consistent,
	"random":            random,
	"murmur2":           murmur2Partitioner,
	"murmur2_random":    murmur2Random,
	"fnv1a":             fnv1aPartitioner,
	"fnv1a_random":      fnv1aRandom,
}

// partitionerOf reads the partitioner from the librdkafka configuration.
func partitionerOf(m kafka.ConfigMap) (partitionerKind, error) {
	v, ok := m["partitioner"]
	if !ok {
		return consistentRandom, nil
	}
	s, _ := v.(string)
	k, ok := partitionerNames[s]
	if !ok {
		return 0, fmt.Errorf("kafkawal: config: Kafka[partitioner]: not one of librdkafka's partitioners")
	}
	return k, nil
}

// hash returns the partition librdkafka gives key among n partitions, and
// false when librdkafka would not hash this key: the random partitioner,
// and keyless records (a nil key; an empty key too for consistent_random),
// which go to the topic's sticky partition. Mirrors
// rd_kafka_msg_partitioner in librdkafka's rdkafka_msg.c.
func (k partitionerKind) hash(key []byte, n int32) (int32, bool) {
	if k == random || key == nil || (len(key) == 0 && k == consistentRandom) {
		return 0, false
	}
	var h uint32
	switch k {
	case consistent, consistentRandom:
		h = crc32.ChecksumIEEE(key)
	case murmur2Partitioner, murmur2Random:
		h = murmur2(key) & 0x7fffffff
	default:
		h = fnv1a(key)
	}
	return int32(h % uint32(n)), true
}

// murmur2 is Kafka's (Java client's) MurmurHash2, as librdkafka's
// rd_murmur2.
func murmur2(key []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(key))
	for len(key) >= 4 {
		k := uint32(key[0]) | uint32(key[1])<<8 | uint32(key[2])<<16 | uint32(key[3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
		key = key[4:]
	}
	switch len(key) {
	case 3:
		h ^= uint32(key[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(key[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(key[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

// fnv1a is librdkafka's rd_fnv1a: 32-bit FNV-1a, its absolute value taken
// as a signed integer (Sarama's hash partitioner).
func fnv1a(key []byte) uint32 {
	h := int32(-2128831035) // 0x811C9DC5
	for _, b := range key {
		h ^= int32(b)
		h *= 16777619
	}
	if h < 0 {
		h = -h
	}
	return uint32(h)
}

// Partition metadata is refreshed this often while a topic is produced
// to; a failed request is retried after a backoff (metaBackoff), with the
// last known count (partitions are never removed) or Opaque in the
// meantime.
const (
	metaRefresh = 30 * time.Second
	metaRetry   = time.Second
	metaTimeout = 1500 * time.Millisecond
)

// topicRoute is what the sender knows of one topic's partitions.
type topicRoute struct {
	count    int32   // 0: unknown, PartitionAny records use Opaque
	avail    []int32 // partitions with a leader
	sticky   int32
	stickyAt time.Time
	fetchAt  time.Time     // next metadata request
	retry    time.Duration // after the last failed request; 0 after a success
	fetching bool
	fifos    map[int32]*fifo
	lastFifo *fifo // fifos[lastPart], for runs of one partition
	lastPart int32
}

// fifo holds the sequences produced to one partition and not yet
// reported, oldest first, in a ring.
type fifo struct {
	buf        []uint64
	head, n    int
	lastOffset int64 // of the last success reported: the tripwire
}

func newFifo() *fifo { return &fifo{buf: make([]uint64, 64), lastOffset: -1} }

func (f *fifo) push(seq uint64) {
	if f.n == len(f.buf) {
		nb := make([]uint64, 2*len(f.buf))
		for i := 0; i < f.n; i++ {
			nb[i] = f.buf[(f.head+i)&(len(f.buf)-1)]
		}
		f.buf, f.head = nb, 0
	}
	f.buf[(f.head+f.n)&(len(f.buf)-1)] = seq
	f.n++
}

func (f *fifo) pop() (uint64, bool) {
	if f.n == 0 {
		return 0, false
	}
	seq := f.buf[f.head]
	f.head = (f.head + 1) & (len(f.buf) - 1)
	f.n--
	return seq, true
}

// router partitions PartitionAny records and attributes reports. It is
// owned by the sender goroutine.
type router struct {
	kind   partitionerKind
	linger time.Duration // sticky.partitioning.linger.ms
	topics map[string]*topicRoute
	last   *topicRoute
	lastN  string
	// now is the sender's clock, read once per clockEvery records
	// produced: time.Now per record showed in the sender's CPU profile
	// (bench/HISTORY.md, "Figures that were in code comments").
	now   time.Time
	clock func() time.Time
	rnd   *rand.Rand
}

const clockEvery = 256

// tick reads the clock.
func (r *router) tick() { r.now = r.clock() }

func newRouter(kind partitionerKind, linger time.Duration) *router {
	return &router{kind: kind, linger: linger, topics: map[string]*topicRoute{}, clock: time.Now,
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

func (r *router) topic(name string) *topicRoute {
	if r.last != nil && r.lastN == name {
		return r.last
	}
	t := r.topics[name]
	if t == nil {
		t = &topicRoute{fifos: map[int32]*fifo{}, lastPart: -1}
		r.topics[name] = t
	}
	r.last, r.lastN = t, name
	return t
}

// partition chooses the partition for a PartitionAny record of topic t,
// or returns false while t's partition count is unknown.
func (r *router) partition(t *topicRoute, key []byte) (int32, bool) {
	if t.count <= 0 {
		return 0, false
	}
	if p, ok := r.kind.hash(key, t.count); ok {
		return p, true
	}
	if r.kind == random {
		return r.pick(t), true
	}
	if t.stickyAt.IsZero() || r.now.Sub(t.stickyAt) >= r.linger || !t.available(t.sticky) {
		t.sticky, t.stickyAt = r.pick(t), r.now
	}
	return t.sticky, true
}

// pick is librdkafka's random partitioner, preferring partitions with a
// leader.
func (r *router) pick(t *topicRoute) int32 {
	if len(t.avail) > 0 {
		return t.avail[r.rnd.IntN(len(t.avail))]
	}
	return r.rnd.Int32N(t.count)
}

func (t *topicRoute) available(p int32) bool {
	for _, a := range t.avail {
		if a == p {
			return true
		}
	}
	return false
}

func (t *topicRoute) queue(p int32) *fifo {
	if t.lastFifo != nil && t.lastPart == p {
		return t.lastFifo
	}
	f := t.fifos[p]
	if f == nil {
		f = newFifo()
		t.fifos[p] = f
	}
	t.lastFifo, t.lastPart = f, p
	return f
}

// outstanding counts sequences produced positionally and not yet reported.
func (r *router) outstanding() int {
	n := 0
	for _, t := range r.topics {
		for _, f := range t.fifos {
			n += f.n
		}
	}
	return n
}

// reset forgets every outstanding sequence and success offset (after a
// rewind or a new producer: the old producer's reports are all in, or
// will never come).
func (r *router) reset() {
	for _, t := range r.topics {
		for _, f := range t.fifos {
			f.head, f.n, f.lastOffset = 0, 0, -1
		}
	}
}

// setMeta records a metadata answer for topic name. unreachable says
// librdkafka reports every broker down (see metaBackoff).
func (r *router) setMeta(name string, md *kafka.TopicMetadata, err error, unreachable bool) {
	t := r.topic(name)
	t.fetching = false
	r.tick()
	now := r.now
	if err != nil || md == nil || md.Error.Code() != kafka.ErrNoError || len(md.Partitions) == 0 {
		t.retry = metaBackoff(t.retry, unreachable)
		t.fetchAt = now.Add(t.retry)
		return
	}
	t.retry = 0
	t.fetchAt = now.Add(metaRefresh)
	// A topic deleted and re-created with fewer partitions is the one way
	// the count falls; take whatever the cluster says.
	t.count = int32(len(md.Partitions))
	t.avail = t.avail[:0]
	for _, p := range md.Partitions {
		if p.Leader >= 0 && p.ID < t.count {
			t.avail = append(t.avail, p.ID)
		}
	}
}

// forget drops what is known of topic name's partitions and asks again.
func (r *router) forget(name string) {
	t := r.topic(name)
	t.count, t.avail, t.fetchAt = 0, nil, time.Time{}
}

// restartFetches is for a new producer (and its new metaFetcher): the old
// one's answers will not come.
func (r *router) restartFetches() {
	for _, t := range r.topics {
		t.fetching, t.fetchAt = false, time.Time{}
	}
}

// stickyLinger reads sticky.partitioning.linger.ms (librdkafka's default
// 10 ms): how long keyless records stay on one partition.
func stickyLinger(m kafka.ConfigMap) (time.Duration, error) {
	v, ok := m["sticky.partitioning.linger.ms"]
	if !ok {
		return 10 * time.Millisecond, nil
	}
	var ms int
	switch x := v.(type) {
	case int:
		ms = x
	case string:
		if _, err := fmt.Sscan(x, &ms); err != nil {
			return 0, fmt.Errorf("kafkawal: config: Kafka[sticky.partitioning.linger.ms]: not an integer")
		}
	default:
		return 0, fmt.Errorf("kafkawal: config: Kafka[sticky.partitioning.linger.ms]: not an integer")
	}
	if ms < 0 {
		return 0, fmt.Errorf("kafkawal: config: Kafka[sticky.partitioning.linger.ms]: negative")
	}
	return time.Duration(ms) * time.Millisecond, nil
}

var errMisordered = errors.New("kafkawal: delivery reports out of order in a partition")
