package kafkatest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// maxLostIDs and maxViolationSamples bound what a Report lists by name.
const (
	maxLostIDs          = 20
	maxViolationSamples = 5
)

// Report compares the records read back from Kafka with the ledger of
// records the producer acknowledged.
type Report struct {
	// Acked is the number of distinct acknowledged ids.
	Acked int
	// Delivered is the number of records read back that carry an id.
	Delivered int
	// Unique is the number of distinct ids among them.
	Unique int
	// Lost is the number of acknowledged ids never read back.
	Lost int
	// Duplicates is the number of extra copies: Delivered - Unique.
	Duplicates int
	// OrderViolations counts first occurrences that break the order; see
	// Verify.
	OrderViolations int
	// Unidentified is the number of records read back without an id.
	Unidentified int
	// LostIDs lists the smallest lost ids, at most 20.
	LostIDs []uint64
	// Violations describes the first order violations, at most 5.
	Violations []string
}

// Verify compares acked, the ids whose produce was acknowledged, with got,
// the records read back (for instance by ReadAll). id extracts a record's
// id; records for which it reports false are only counted as Unidentified.
// Ids read back but never acknowledged are normal (a crash between delivery
// and ledger) and not reported.
//
// Order is checked per stream, one stream per (topic, partition), in offset
// order. Within a stream, only the first occurrence of each id counts: a
// copy of an id already seen anywhere is a duplicate, whose position says
// nothing about order because a retry after a crash legitimately re-sends
// records already written. order maps a record to an order key and a
// position; for each key, the positions of the first occurrences in a
// stream must strictly increase. Each first occurrence whose position is
// not greater than the previous one of its key in that stream is one
// violation, so a single record out of place counts once, not once per
// record that follows it. A nil order uses one key per stream and the id as
// position.
func Verify(acked []uint64, got []*kgo.Record, id func(*kgo.Record) (uint64, bool), order func(*kgo.Record) (key string, pos uint64)) Report {
	var r Report

	// Streams in offset order; got may interleave partitions.
	recs := slices.Clone(got)
	slices.SortStableFunc(recs, func(a, b *kgo.Record) int {
		return cmp.Or(
			cmp.Compare(a.Topic, b.Topic),
			cmp.Compare(a.Partition, b.Partition),
			cmp.Compare(a.Offset, b.Offset),
		)
	})

	type orderKey struct {
		stream topicPartition
		key    string
	}
	seen := make(map[uint64]struct{}, len(recs))
	last := make(map[orderKey]uint64)
	for _, rec := range recs {
		v, ok := id(rec)
		if !ok {
			r.Unidentified++
			continue
		}
		r.Delivered++
		if _, dup := seen[v]; dup {
			continue
		}
		seen[v] = struct{}{}

		key, pos := "", v
		if order != nil {
			key, pos = order(rec)
		}
		k := orderKey{topicPartition{rec.Topic, rec.Partition}, key}
		prev, had := last[k]
		if had && pos <= prev {
			r.OrderViolations++
			if len(r.Violations) < maxViolationSamples {
				r.Violations = append(r.Violations, fmt.Sprintf("%s[%d]@%d id %d key %q: pos %d after %d",
					rec.Topic, rec.Partition, rec.Offset, v, key, pos, prev))
			}
		}
		last[k] = pos
	}
	r.Unique = len(seen)
	r.Duplicates = r.Delivered - r.Unique

	ackedSet := make(map[uint64]struct{}, len(acked))
	for _, v := range acked {
		ackedSet[v] = struct{}{}
	}
	r.Acked = len(ackedSet)
	var lost []uint64
	for v := range ackedSet {
		if _, ok := seen[v]; !ok {
			lost = append(lost, v)
		}
	}
	r.Lost = len(lost)
	slices.Sort(lost)
	if len(lost) > maxLostIDs {
		lost = lost[:maxLostIDs]
	}
	r.LostIDs = lost
	return r
}

// OK reports whether nothing acknowledged was lost and order held.
// Duplicates are allowed: delivery is at least once.
func (r Report) OK() bool { return r.Lost == 0 && r.OrderViolations == 0 }

// String is a one-line summary, naming the first lost ids and order
// violations when there are any.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "acked=%d delivered=%d unique=%d lost=%d duplicates=%d order_violations=%d",
		r.Acked, r.Delivered, r.Unique, r.Lost, r.Duplicates, r.OrderViolations)
	if r.Unidentified > 0 {
		fmt.Fprintf(&b, " unidentified=%d", r.Unidentified)
	}
	if r.Lost > 0 {
		fmt.Fprintf(&b, " lost_ids=%v", r.LostIDs)
		if r.Lost > len(r.LostIDs) {
			b.WriteString("...")
		}
	}
	if len(r.Violations) > 0 {
		fmt.Fprintf(&b, " violations=[%s]", strings.Join(r.Violations, "; "))
	}
	return b.String()
}
