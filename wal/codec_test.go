package wal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	hundred := make([]Header, 100)
	for i := range hundred {
		hundred[i] = Header{Key: strings.Repeat("k", i), Value: bytes.Repeat([]byte{byte(i)}, i)}
	}
	cases := []struct {
		name string
		rec  Record
	}{
		{"minimal", Record{Topic: "t"}},
		{"empty key", Record{Topic: "t", Key: []byte{}, Value: []byte("v")}},
		{"nil value", Record{Topic: "t", Key: []byte("k"), Value: nil}},
		{"empty value", Record{Topic: "t", Value: []byte{}}},
		{"100 headers", Record{Topic: "t", Headers: hundred}},
		{"header nil value", Record{Topic: "t", Headers: []Header{{Key: "a"}, {Key: "", Value: []byte{}}}}},
		{"1 MiB value", Record{Topic: "t", Value: bytes.Repeat([]byte("x"), 1<<20)}},
		{"unicode topic", Record{Topic: "заказы-订单-🧾", Value: []byte("v")}},
		{"partition any", Record{Topic: "t", Partition: PartitionAny}},
		{"partition max", Record{Topic: "t", Partition: 1<<31 - 1}},
		{"timestamp", Record{Topic: "t", Timestamp: time.Unix(1700000000, 123456789)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := Encode(&c.rec)
			if len(b) != EncodedLen(&c.rec) {
				t.Fatalf("EncodedLen %d, Encode wrote %d", EncodedLen(&c.rec), len(b))
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertRecordEqual(t, got, c.rec)
		})
	}
}

func assertRecordEqual(t *testing.T, got, want Record) {
	t.Helper()
	if got.Topic != want.Topic || got.Partition != want.Partition || !got.Timestamp.Equal(want.Timestamp) {
		t.Fatalf("got %q/%d/%v, want %q/%d/%v", got.Topic, got.Partition, got.Timestamp, want.Topic, want.Partition, want.Timestamp)
	}
	sameBytes(t, "key", got.Key, want.Key)
	sameBytes(t, "value", got.Value, want.Value)
	if len(got.Headers) != len(want.Headers) {
		t.Fatalf("%d headers, want %d", len(got.Headers), len(want.Headers))
	}
	for i := range got.Headers {
		if got.Headers[i].Key != want.Headers[i].Key {
			t.Fatalf("header %d key %q, want %q", i, got.Headers[i].Key, want.Headers[i].Key)
		}
		sameBytes(t, "header value", got.Headers[i].Value, want.Headers[i].Value)
	}
}

// sameBytes also distinguishes nil from empty: Kafka does.
func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if (got == nil) != (want == nil) || !bytes.Equal(got, want) {
		t.Fatalf("%s: got %q (nil=%v), want %q (nil=%v)", what, got, got == nil, want, want == nil)
	}
}

func TestCodecDetectsCorruption(t *testing.T) {
	rec := Record{Topic: "orders", Key: []byte("k"), Value: []byte("some value"), Headers: []Header{{Key: "h", Value: []byte("v")}}}
	good := Encode(&rec)
	for i := range good {
		for bit := 0; bit < 8; bit++ {
			b := bytes.Clone(good)
			b[i] ^= 1 << bit
			if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("flip byte %d bit %d: err %v, want ErrCorrupt", i, bit, err)
			}
		}
	}
	for n := 0; n < len(good); n++ {
		if _, err := Decode(good[:n]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix %d: err %v, want ErrCorrupt", n, err)
		}
	}
	if _, err := Decode(make([]byte, 16)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("16 zero bytes: err %v, want ErrCorrupt", err)
	}
	if _, err := Decode(nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("empty entry: err %v, want ErrCorrupt", err)
	}
}

// maxDecodeAlloc bounds what Decode may allocate for an entry of n bytes:
// the topic and header keys become strings (<= n bytes) and each header
// costs one 40-byte Header, at most n/2 of them. Nothing depends on a length
// field's claim.
func maxDecodeAlloc(n int) uint64 { return uint64(n + 20*n + 1024) }

// decodeMeasured is Decode(b) with the bytes it allocates. TotalAlloc counts the
// whole process, and under -fuzz the worker's other goroutines allocate
// while the target runs (5,800 bytes counted for a 24-byte seed), so it
// takes the least of a few calls: others' allocations only ever add, and
// Decode allocates the same each time (and returns the same).
func decodeMeasured(b []byte) (rec Record, alloc uint64, err error) {
	alloc = math.MaxUint64
	for range 5 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		rec, err = Decode(b)
		runtime.ReadMemStats(&after)
		alloc = min(alloc, after.TotalAlloc-before.TotalAlloc)
	}
	return rec, alloc, err
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(&Record{Topic: "t", Key: []byte("k"), Value: []byte("v")}))
	f.Add(Encode(&Record{Topic: "t", Headers: []Header{{Key: "a", Value: []byte("b")}}}))
	f.Add(Encode(&Record{Topic: "t", Partition: PartitionAny, Value: make([]byte, 300)}))
	f.Add(EncodeHole())
	f.Add(make([]byte, 16))
	f.Add([]byte{0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Fix up the checksum half the time so the parser behind it is reached.
		if len(b) > 4 && b[len(b)-1]&1 == 0 {
			fixCRC(b)
		}
		rec, alloc, err := decodeMeasured(b)
		if alloc > maxDecodeAlloc(len(b)) {
			t.Fatalf("Decode of %d bytes allocated %d", len(b), alloc)
		}
		// Plausible is the filter before the checksum: it must pass
		// whatever Decode or IsHole accepts.
		if (err == nil || IsHole(b)) && !Plausible(b) {
			t.Fatalf("Plausible rejects an entry that decodes: %x", b)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		// Whatever decodes must survive a round trip unchanged.
		again, err := Decode(Encode(&rec))
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		assertRecordEqual(t, again, rec)
	})
}

func fixCRC(b []byte) {
	sum := crc32.Checksum(b[4:], castagnoli)
	b[0], b[1], b[2], b[3] = byte(sum>>24), byte(sum>>16), byte(sum>>8), byte(sum)
}

func TestHoleIsNotARecord(t *testing.T) {
	h := EncodeHole()
	if !IsHole(h) {
		t.Fatal("IsHole(EncodeHole()) = false")
	}
	if _, err := Decode(h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Decode(hole) = %v, want ErrCorrupt", err)
	}
	if IsHole(Encode(&Record{Topic: "t"})) {
		t.Fatal("a record is a hole")
	}
	h[4] ^= 1
	if IsHole(h) {
		t.Fatal("a damaged hole is a hole")
	}
}

// Plausible passes every entry of every codec version Decode reads: each
// version byte is tried on a record's layout (checksum fixed), and where
// Decode takes it, Plausible must too. A codec version 2 that Decode
// learns and Plausible does not fails here (and in FuzzDecode's seeds,
// which Encode writes in the current version), so recovery's
// resynchronisation, which trusts Plausible, keeps finding intact entries
// after damage.
func TestPlausibleFollowsDecode(t *testing.T) {
	for _, r := range []Record{
		{Topic: "t"},
		{Topic: "orders", Partition: PartitionAny, Key: []byte("k"), Value: make([]byte, 200)},
		{Topic: "x", Partition: 1 << 30, Headers: []Header{{Key: "h", Value: nil}}},
	} {
		for v := range 256 {
			b := Encode(&r)
			b[4] = byte(v)
			fixCRC(b)
			if _, err := Decode(b); err == nil && !Plausible(b) {
				t.Errorf("version %d: Decode accepts %x, Plausible does not", v, b)
			}
			if v == codecVersion && !Plausible(b) {
				t.Errorf("Plausible rejects the current version: %x", b)
			}
		}
	}
	if !Plausible(EncodeHole()) {
		t.Error("Plausible rejects a hole")
	}
	// Entries already on disk stay readable, and plausible, whatever the
	// current version: a version 1 record as this package wrote it.
	v1, _ := hex.DecodeString("ab590f990117979cfe362a000000000002066f7264657273036b310376310101680278")
	if r, err := Decode(v1); err != nil || r.Topic != "orders" || string(r.Value) != "v1" || !Plausible(v1) {
		t.Errorf("a version 1 record: Decode %+v, %v; Plausible %v", r, err, Plausible(v1))
	}
}
