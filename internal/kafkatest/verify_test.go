package kafkatest

import (
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// stream builds the records of one partition, at consecutive offsets, with
// the given ids.
func stream(topic string, partition int32, ids ...uint64) []*kgo.Record {
	recs := make([]*kgo.Record, len(ids))
	for i, id := range ids {
		r := idRecord(topic, id)
		r.Partition = partition
		r.Offset = int64(i)
		recs[i] = r
	}
	return recs
}

// producerOrder orders records by producer (the key's first byte) and id.
func producerOrder(r *kgo.Record) (string, uint64) {
	id, _ := recordID(r)
	return string(r.Key[:1]), id
}

func keyed(key string, r *kgo.Record) *kgo.Record {
	r.Key = []byte(key)
	return r
}

func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name  string
		acked []uint64
		got   []*kgo.Record
		order func(*kgo.Record) (string, uint64)
		want  Report
	}{
		{
			name:  "exact",
			acked: ids(1, 4),
			got:   stream("t", 0, 1, 2, 3, 4),
			want:  Report{Acked: 4, Delivered: 4, Unique: 4},
		},
		{
			name:  "lost",
			acked: ids(1, 5),
			got:   stream("t", 0, 1, 2, 4),
			want:  Report{Acked: 5, Delivered: 3, Unique: 3, Lost: 2, LostIDs: []uint64{3, 5}},
		},
		{
			name:  "lost_ids_capped",
			acked: ids(1, 30),
			got:   stream("t", 0, 1),
			want:  Report{Acked: 30, Delivered: 1, Unique: 1, Lost: 29, LostIDs: ids(2, 21)},
		},
		{
			name:  "replay_duplicates_keep_order",
			acked: ids(1, 6),
			got:   stream("t", 0, 1, 2, 3, 4, 2, 3, 4, 5, 6),
			want:  Report{Acked: 6, Delivered: 9, Unique: 6, Duplicates: 3},
		},
		{
			name:  "swap",
			acked: ids(1, 4),
			got:   stream("t", 0, 1, 3, 2, 4),
			want: Report{Acked: 4, Delivered: 4, Unique: 4, OrderViolations: 1,
				Violations: []string{`t[0]@2 id 2 key "": pos 2 after 3`}},
		},
		{
			name:  "one_early_record_counts_once",
			acked: ids(1, 6),
			got:   stream("t", 0, 1, 6, 2, 3, 4, 5),
			want: Report{Acked: 6, Delivered: 6, Unique: 6, OrderViolations: 1,
				Violations: []string{`t[0]@2 id 2 key "": pos 2 after 6`}},
		},
		{
			name:  "partitions_are_separate_streams",
			acked: ids(1, 4),
			got:   append(stream("t", 1, 2, 4), stream("t", 0, 1, 3)...),
			want:  Report{Acked: 4, Delivered: 4, Unique: 4},
		},
		{
			name:  "topics_are_separate_streams",
			acked: ids(1, 4),
			got:   append(stream("b", 0, 1, 2), stream("a", 0, 3, 4)...),
			want:  Report{Acked: 4, Delivered: 4, Unique: 4},
		},
		{
			name:  "input_order_is_not_stream_order",
			acked: ids(1, 3),
			got:   reversed(stream("t", 0, 1, 2, 3)),
			want:  Report{Acked: 3, Delivered: 3, Unique: 3},
		},
		{
			name:  "order_keys_interleave",
			acked: ids(1, 4),
			got: []*kgo.Record{
				keyed("a", stream("t", 0, 3)[0]), keyed("b", stream("t", 0, 1)[0]),
				keyed("a", stream("t", 0, 4)[0]), keyed("b", stream("t", 0, 2)[0]),
			},
			order: producerOrder,
			want:  Report{Acked: 4, Delivered: 4, Unique: 4},
		},
		{
			name:  "order_key_goes_back",
			acked: ids(1, 4),
			got: []*kgo.Record{
				keyed("a", stream("t", 0, 1)[0]), keyed("b", stream("t", 0, 4)[0]),
				keyed("a", stream("t", 0, 2)[0]), keyed("b", stream("t", 0, 3)[0]),
			},
			order: producerOrder,
			want: Report{Acked: 4, Delivered: 4, Unique: 4, OrderViolations: 1,
				Violations: []string{`t[0]@3 id 3 key "b": pos 3 after 4`}},
		},
		{
			name:  "unacked_and_unidentified",
			acked: []uint64{1, 1, 2},
			got:   append(stream("t", 0, 1, 2, 3), &kgo.Record{Topic: "t", Offset: 3, Value: []byte("junk")}),
			want:  Report{Acked: 2, Delivered: 3, Unique: 3, Unidentified: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.order != nil {
				// keyed records were built one by one: give them offsets.
				for i, r := range tc.got {
					r.Offset = int64(i)
				}
			}
			got := Verify(tc.acked, tc.got, recordID, tc.order)
			if !equalReports(got, tc.want) {
				t.Fatalf("Verify:\n got  %v\n want %v", got, tc.want)
			}
			if got.OK() != (tc.want.Lost == 0 && tc.want.OrderViolations == 0) {
				t.Fatalf("OK() = %v for %v", got.OK(), got)
			}
		})
	}
}

func reversed(recs []*kgo.Record) []*kgo.Record {
	slices.Reverse(recs)
	return recs
}

func equalReports(a, b Report) bool {
	return a.Acked == b.Acked && a.Delivered == b.Delivered && a.Unique == b.Unique &&
		a.Lost == b.Lost && a.Duplicates == b.Duplicates && a.OrderViolations == b.OrderViolations &&
		a.Unidentified == b.Unidentified && slices.Equal(a.LostIDs, b.LostIDs) &&
		slices.Equal(a.Violations, b.Violations)
}

func TestReportString(t *testing.T) {
	ok := Verify(ids(1, 2), stream("t", 0, 1, 2, 2), recordID, nil)
	if got, want := ok.String(), "acked=2 delivered=3 unique=2 lost=0 duplicates=1 order_violations=0"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	bad := Verify(ids(1, 25), stream("t", 0, 2, 1), recordID, nil)
	s := bad.String()
	for _, want := range []string{"lost=23", "lost_ids=[3 4 5", "22]...", "order_violations=1", `pos 1 after 2`} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q, want it to contain %q", s, want)
		}
	}
}
