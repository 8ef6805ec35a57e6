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
	// countWaitLog is how long records may wait for their topic's
	// partition count before the sender says so: longer than a metadata
	// request and its first retries take.
	countWaitLog = 10 * time.Second
)

// topicRoute is what the sender knows of one topic's partitions.
type topicRoute struct {
	name     string
	count    int32   // 0: unknown, PartitionAny records use Opaque
	avail    []int32 // partitions with a leader
	sticky   int32
	stickyAt time.Time
	fetchAt  time.Time     // next metadata request
	retry    time.Duration // after the last failed request; 0 after a success
	fetching bool
	parts    map[int32]*part
	last     *part // parts[last.id], for runs of one partition
	// keyless is the lane of the topic's keyless PartitionAny records
	// while none of its partitions accepts them (lane.go).
	keyless *lane
	// lanes counts the topic's lanes. While there are any, count does not
	// change (but from unknown to known): a lane reads back the records of
	// its partition by hashing their keys, and must find the same ones the
	// main stream handed it. A newer count waits in nextCount.
	lanes     int
	nextCount int32
	// anyHigh is the highest sequence produced with PartitionAny, its
	// partition left to librdkafka (count unknown, or isolated with no
	// known partition): such a record belongs to no lane, so no lane of
	// the topic may park until the window has resolved it (parkLanes).
	anyHigh uint64
	// countWait is since when records of the topic wait for its count
	// (askMeta), zero if none do; countWaitLogged: said so.
	countWait       time.Time
	countWaitLogged bool
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
	all   []int32 // scratch for pick
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
		t = &topicRoute{name: name, parts: map[int32]*part{}}
		r.topics[name] = t
	}
	r.last, r.lastN = t, name
	return t
}

// partition returns the partition of a PartitionAny record with a key
// librdkafka's partitioner hashes, or false while t's partition count is
// unknown or the record is keyless (see steer).
func (r *router) partition(t *topicRoute, key []byte) (int32, bool) {
	if t.count <= 0 {
		return 0, false
	}
	return r.kind.hash(key, t.count)
}

// keyless reports whether librdkafka's partitioner would not hash key:
// such records go to the topic's sticky partition (or a random one).
func (k partitionerKind) keyless(key []byte) bool {
	return k == random || key == nil || (len(key) == 0 && k == consistentRandom)
}

// steer chooses the partition of a keyless PartitionAny record of t among
// those that accept records (ok), as librdkafka's sticky partitioner does
// among those with a leader: the sticky one for sticky.partitioning.linger.ms
// (with the random partitioner, a new one each time). It returns false
// when t's partition count is unknown or no partition accepts.
func (r *router) steer(t *topicRoute, ok func(*topicRoute, int32) bool) (int32, bool) {
	if t.count <= 0 {
		return 0, false
	}
	if r.kind != random && !t.stickyAt.IsZero() && r.now.Sub(t.stickyAt) < r.linger && ok(t, t.sticky) {
		return t.sticky, true
	}
	p, found := r.pick(t, ok)
	if !found {
		return 0, false
	}
	if r.kind != random {
		t.sticky, t.stickyAt = p, r.now
	}
	return p, true
}

// pick is librdkafka's random partitioner over the partitions with a
// leader (all of them while none is known), leaving out those that do not
// accept records.
func (r *router) pick(t *topicRoute, ok func(*topicRoute, int32) bool) (int32, bool) {
	cand := t.avail
	if len(cand) == 0 {
		cand = r.all[:0]
		for p := int32(0); p < t.count; p++ {
			cand = append(cand, p)
		}
		r.all = cand
	}
	n := len(cand)
	// From a random candidate on, the first that accepts: librdkafka's
	// uniform choice when all of them do.
	i := r.rnd.IntN(n)
	for k := 0; k < n; k++ {
		if p := cand[(i+k)%n]; ok(t, p) {
			return p, true
		}
	}
	return 0, false
}

// part returns the state of partition p.
func (t *topicRoute) part(p int32) *part {
	if t.last != nil && t.last.id == p {
		return t.last
	}
	pt := t.parts[p]
	if pt == nil {
		pt = newPart(t, p)
		t.parts[p] = pt
	}
	t.last = pt
	return pt
}

// outstanding counts sequences produced positionally and not yet reported.
func (r *router) outstanding() int {
	n := 0
	for _, t := range r.topics {
		for _, p := range t.parts {
			n += p.q.n
		}
	}
	return n
}

// reset forgets every outstanding flight and success offset (after a
// rewind or a new producer: the old producer's reports are all in, or
// will never come).
func (r *router) reset() {
	for _, t := range r.topics {
		for _, p := range t.parts {
			p.q.reset()
			p.bytes, p.lastOffset = 0, -1
		}
	}
}

// setMeta records a metadata answer for topic name. unreachable says
// librdkafka reports every broker down (see metaBackoff). It returns
// whether the partition count changed.
func (r *router) setMeta(name string, md *kafka.TopicMetadata, err error, unreachable bool) bool {
	t := r.topic(name)
	t.fetching = false
	r.tick()
	now := r.now
	if err != nil || md == nil || md.Error.Code() != kafka.ErrNoError || len(md.Partitions) == 0 {
		t.retry = metaBackoff(t.retry, unreachable)
		t.fetchAt = now.Add(t.retry)
		return false
	}
	t.retry = 0
	t.fetchAt = now.Add(metaRefresh)
	// A topic deleted and re-created with fewer partitions is the one way
	// the count falls; take whatever the cluster says, unless lanes of the
	// topic need the count they were handed records with.
	t.nextCount = int32(len(md.Partitions))
	was := t.count
	if t.lanes == 0 || t.count <= 0 {
		t.count = t.nextCount
	}
	t.avail = t.avail[:0]
	for _, p := range md.Partitions {
		if p.Leader >= 0 && p.ID < t.count {
			t.avail = append(t.avail, p.ID)
		}
	}
	return t.count != was
}

// forget drops what is known of topic name's partitions and asks again;
// the count stays while the topic has lanes.
func (r *router) forget(name string) {
	t := r.topic(name)
	t.avail, t.fetchAt = nil, time.Time{}
	if t.lanes == 0 {
		t.count = 0
	}
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
