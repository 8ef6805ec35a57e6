package sender

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

func sampleCheckpoint() Checkpoint {
	return Checkpoint{
		WALID:  [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Writer: 0xdeadbeefcafef00d,
		Commit: 42,
		Time:   time.UnixMilli(1_760_000_000_123),
		Last:   0x01020304,
		Next:   1_000_001,
		Deferred: []PartitionFrom{
			{Topic: "orders", Partition: 3, From: 999_000},
			{Topic: "payments", Partition: 0, From: 12},
		},
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	for name, c := range map[string]Checkpoint{
		"zero":              {Time: time.UnixMilli(0)},
		"no deferred":       {WALID: [16]byte{9}, Writer: 1, Commit: 1, Time: time.UnixMilli(5), Next: 7},
		"deferred":          sampleCheckpoint(),
		"largest integers":  {Writer: ^uint64(0), Commit: ^uint64(0), Time: time.UnixMilli(1 << 50), Next: ^uint64(0), Deferred: []PartitionFrom{{Topic: "t", Partition: -1 << 31, From: ^uint64(0)}}},
		"partition maxint":  {Time: time.UnixMilli(1), Deferred: []PartitionFrom{{Topic: strings.Repeat("x", 249), Partition: 1<<31 - 1, From: 1}}},
		"unicode topic too": {Time: time.UnixMilli(1), Deferred: []PartitionFrom{{Topic: "é", Partition: 1, From: 1}}},
	} {
		t.Run(name, func(t *testing.T) {
			b := c.encode()
			got, err := decodeCheckpoint(b)
			if err != nil {
				t.Fatalf("decode(encode(%+v)): %v", c, err)
			}
			if !got.Time.Equal(c.Time) {
				t.Fatalf("time %v, want %v", got.Time, c.Time)
			}
			got.Time = c.Time
			if !reflect.DeepEqual(got, c) {
				t.Fatalf("decode(encode(c)) = %+v, want %+v", got, c)
			}
		})
	}
}

// The layout is fixed: a change of it needs a new version. The bytes of
// sampleCheckpoint are written out here so that an accidental change of
// the encoder fails.
func TestCheckpointLayoutVersion1(t *testing.T) {
	want := []byte{
		1,                                                     // version
		1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, // WAL id
		0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d, // writer
		0, 0, 0, 0, 0, 0, 0, 42, // commit
		0, 0, 0x01, 0x99, 0xc8, 0x2c, 0xc0, 0x7b, // time 1760000000123 ms
		1, 2, 3, 4, // fingerprint
		0xc1, 0x84, 0x3d, // next 1000001
		2,                                                             // deferred count
		6, 'o', 'r', 'd', 'e', 'r', 's', 0, 0, 0, 3, 0xd8, 0xfc, 0x3c, // orders[3] from 999000
		8, 'p', 'a', 'y', 'm', 'e', 'n', 't', 's', 0, 0, 0, 0, 12, // payments[0] from 12
	}
	c := sampleCheckpoint()
	if got := c.encode(); !bytes.Equal(got, want) {
		t.Fatalf("encode =\n%v\nwant\n%v", got, want)
	}
}

func TestCheckpointDecodeRejects(t *testing.T) {
	good := sampleCheckpoint()
	valid := good.encode()
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":            {nil, "empty value"},
		"newer version":    {append([]byte{2}, valid[1:]...), "version 2"},
		"version 0":        {append([]byte{0}, valid[1:]...), "version 0"},
		"short fixed part": {valid[:44], "truncated"},
		"no next":          {valid[:45], "truncated next"},
		"no count":         {valid[:48], "bad deferred partition count"},
		"huge count":       {append(append([]byte{}, valid[:48]...), 0xff, 0xff, 0xff, 0xff, 0x0f), "bad deferred partition count"},
		"topic too long":   {append(append([]byte{}, valid[:49]...), 100, 'x'), "bad topic length"},
		"empty topic":      {append(append([]byte{}, valid[:49]...), 0, 0, 0, 0, 1, 1), "bad topic length"},
		"no partition":     {valid[:49+7+2], "truncated"},
		"no from":          {valid[:49+7+4], "truncated"},
		"trailing bytes":   {append(append([]byte{}, valid...), 0), "1 bytes after the last field"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := decodeCheckpoint(tc.b)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("decode = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckpointCommitted(t *testing.T) {
	c := Checkpoint{Next: 100, Deferred: []PartitionFrom{{Topic: "a", Partition: 1, From: 40}}}
	for _, tc := range []struct {
		seq       uint64
		topic     string
		partition int32
		want      bool
	}{
		{99, "a", 0, true},
		{100, "a", 0, false},
		{39, "a", 1, true},
		{40, "a", 1, false},
		{99, "a", 1, false},
		{99, "b", 1, true},
		{150, "a", 1, false},
	} {
		if got := c.committed(tc.seq, tc.topic, tc.partition); got != tc.want {
			t.Errorf("committed(%d, %s[%d]) = %v, want %v", tc.seq, tc.topic, tc.partition, got, tc.want)
		}
	}
	if got := c.low(); got != 40 {
		t.Errorf("low = %d, want 40", got)
	}
	if got := (&Checkpoint{Next: 7}).low(); got != 7 {
		t.Errorf("low without deferred = %d, want 7", got)
	}
}

func FuzzDecodeCheckpoint(f *testing.F) {
	c := sampleCheckpoint()
	f.Add(c.encode())
	f.Add((&Checkpoint{}).encode())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeCheckpoint(b)
		if err != nil {
			return
		}
		// Whatever decodes encodes back to the same bytes: one value,
		// one encoding.
		if re := got.encode(); !bytes.Equal(re, b) {
			t.Fatalf("decode then encode changed the bytes:\n%x\n%x", b, re)
		}
	})
}

// TestFingerprintOfARecordInHand: the commit's fingerprint of the record
// the main stream passed last (or is at) comes from the read-ahead chunk
// it reads from, not from the WAL (a read would fail: the log is closed),
// and equals the fingerprint of the record itself; a hole's is 0. When
// the chunk goes back to the prefetcher, the fingerprint of the record
// passed last in it stays.
func TestFingerprintOfARecordInHand(t *testing.T) {
	l, _, err := wal.Open(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	ts := time.Unix(1700000000, 0)
	ents := []wal.Entry{
		{Seq: 5, Record: wal.Record{Topic: "t", Partition: 1, Key: []byte("k5"), Value: []byte("v5"), Timestamp: ts}},
		{Seq: 6, Record: wal.Record{Topic: "t", Partition: 2, Key: []byte("k6"), Value: []byte("v6"), Timestamp: ts}},
		{Seq: 7, Hole: true},
		{Seq: 8, Record: wal.Record{Topic: "u", Partition: 0, Value: []byte("v8"), Timestamp: ts}},
	}
	s := &Sender{wal: l, win: newWindow(7, 16), cur: chunk{ents: ents}, pending: ents, pfNext: 9, pf: newPrefetcher(l),
		lg: Config{}.withDefaults().Logger}
	<-s.pf.free // room for the chunk take hands back
	if e := s.peek(); e == nil || e.Seq != 7 {
		t.Fatalf("peek = %+v; want the entry at 7", e)
	}
	if got, want := s.fingerprintAt(6), fingerprint(&ents[1].Record); got != want || got == 0 {
		t.Fatalf("fingerprint of 6, passed last = %d; want %d", got, want)
	}
	if got := s.fingerprintAt(7); got != 0 {
		t.Fatalf("fingerprint of the hole at 7 = %d; want 0", got)
	}
	s.win.skip()
	if e := s.peek(); e == nil || e.Seq != 8 {
		t.Fatalf("peek = %+v; want the entry at 8", e)
	}
	if got, want := s.fingerprintAt(8), fingerprint(&ents[3].Record); got != want || got == 0 {
		t.Fatalf("fingerprint of 8, the one the stream is at = %d; want %d", got, want)
	}
	if s.inHand(4) != nil || s.inHand(9) != nil {
		t.Fatal("records outside the chunk reported in hand")
	}
	if got := s.fingerprintAt(9); got != 0 {
		t.Fatalf("fingerprint of 9, neither in hand nor readable = %d; want 0", got)
	}
	// The stream moves past 8 and on to the next chunk: the old one goes
	// back to the prefetcher, 8's fingerprint stays.
	s.tx = &txnState{}
	s.win.addTo(8, 10, 0, nil)
	want := fingerprint(&ents[3].Record)
	next := []wal.Entry{{Seq: 9, Record: wal.Record{Topic: "u", Value: []byte("v9"), Timestamp: ts}}}
	s.pfGen = 1
	s.take(readBatch{gen: 1, chunk: chunk{ents: next}})
	if s.inHand(8) != nil {
		t.Fatal("a record of the recycled chunk is still in hand")
	}
	if got := s.fingerprintAt(8); got != want {
		t.Fatalf("fingerprint of 8, passed in the chunk before = %d; want %d", got, want)
	}
}
