package kafkawal

import (
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestDefaultsAdapt: a field left at zero fits what was set; values set
// that contradict each other fail Validate naming them.
func TestDefaultsAdapt(t *testing.T) {
	const MiB = 1 << 20
	kafkaWith := func(kv ...any) kafka.ConfigMap {
		m := kafka.ConfigMap{"bootstrap.servers": "localhost:9092"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	type effective struct {
		segment, maxDisk, inFlightBytes int64
		maxRecord, inFlight             int
		minInFlight, minInFlightBytes   int64         // the adaptive window's floor
		cursorEvery                     time.Duration // 0: the sender's default
	}
	cases := []struct {
		name string
		cfg  Config
		want effective // zero fields are not checked
		err  string    // non-empty: Validate must fail with it
	}{
		{name: "small cap: segments fit it", cfg: Config{MaxDiskBytes: 16 * MiB},
			want: effective{segment: 2 * MiB, maxDisk: 16 * MiB, maxRecord: 1000000}},
		{name: "tiny cap: smallest segments", cfg: Config{MaxDiskBytes: 300 << 10},
			want: effective{segment: 64 << 10, maxRecord: 300 << 10 / 4}},
		{name: "cap under 4 smallest segments", cfg: Config{MaxDiskBytes: 100 << 10},
			err: "MaxDiskBytes: 102400 is below 4 x SegmentBytes (65536)"},
		{name: "large cap keeps 8 MiB segments", cfg: Config{MaxDiskBytes: 10 << 30},
			want: effective{segment: 8 * MiB}},
		{name: "both set and contradicting", cfg: Config{MaxDiskBytes: 16 * MiB, SegmentBytes: 8 * MiB},
			err: "MaxDiskBytes: 16777216 is below 4 x SegmentBytes (8388608)"},
		{name: "large segments: the cap grows", cfg: Config{SegmentBytes: 512 * MiB},
			want: effective{maxDisk: 2 << 30}},
		{name: "large records: the cap and the window grow", cfg: Config{MaxRecordBytes: 300 * MiB, Kafka: kafkaWith("message.max.bytes", 300*MiB)},
			want: effective{maxDisk: 1200 * MiB, maxRecord: 300 * MiB, inFlightBytes: 1200 * MiB}},
		{name: "message.max.bytes sizes the window", cfg: Config{Kafka: kafkaWith("message.max.bytes", "10000000")},
			want: effective{maxRecord: 10000000, minInFlightBytes: 40000000, inFlightBytes: 128 * MiB}},
		{name: "librdkafka's queue bounds the window", cfg: Config{Kafka: kafkaWith("queue.buffering.max.messages", 1000, "queue.buffering.max.kbytes", 1024)},
			want: effective{inFlight: 1000, minInFlight: 1000, inFlightBytes: MiB, minInFlightBytes: MiB}},
		{name: "window above librdkafka's queue", cfg: Config{MaxInFlight: 5000, Kafka: kafkaWith("queue.buffering.max.messages", 1000)},
			err: "MaxInFlight: 5000 is above Kafka[queue.buffering.max.messages] (1000)"},
		{name: "window bytes above librdkafka's queue", cfg: Config{MaxInFlightBytes: 32 * MiB, Kafka: kafkaWith("queue.buffering.max.kbytes", "1024")},
			err: "MaxInFlightBytes: 33554432 is above Kafka[queue.buffering.max.kbytes] (1024 KiB)"},
		{name: "records above message.max.bytes", cfg: Config{MaxRecordBytes: 600000, Kafka: kafkaWith("message.max.bytes", 500000)},
			err: "MaxRecordBytes: 600000 is above Kafka[message.max.bytes] (500000)"},
		{name: "SyncPeriodic every second: the cursor too", cfg: Config{Durability: SyncPeriodic, SyncInterval: time.Second},
			want: effective{cursorEvery: time.Second}},
		{name: "SyncPeriodic more often: the cursor's default", cfg: Config{Durability: SyncPeriodic, SyncInterval: 10 * time.Millisecond},
			want: effective{cursorEvery: 100 * time.Millisecond}},
		{name: "a cursor interval set is kept", cfg: Config{Durability: SyncPeriodic, SyncInterval: time.Second, CursorSyncInterval: 50 * time.Millisecond},
			want: effective{cursorEvery: 50 * time.Millisecond}},
		{name: "defaults", cfg: Config{},
			want: effective{maxDisk: 1 << 30, maxRecord: 1000000, inFlight: 524288, minInFlight: 32768,
				inFlightBytes: 128 * MiB, minInFlightBytes: 32 * MiB}}, // SegmentBytes: wal's default
		{name: "a window set does not adapt", cfg: Config{MaxInFlight: 5000, MaxInFlightBytes: 8 * MiB},
			want: effective{inFlight: 5000, inFlightBytes: 8 * MiB}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Dir = t.TempDir()
			if cfg.Kafka == nil {
				cfg.Kafka = kafkaWith()
			}
			err := cfg.Validate()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Validate: %v, want an error with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Validate: %v", err)
			}
			o, s := cfg.walOptions(), cfg.senderConfig()
			got := effective{segment: o.SegmentBytes, maxDisk: o.MaxDiskBytes, maxRecord: o.MaxRecordBytes,
				inFlight: s.MaxInFlight, inFlightBytes: s.MaxInFlightBytes, cursorEvery: s.CursorSyncInterval,
				minInFlight: int64(s.MinInFlight), minInFlightBytes: s.MinInFlightBytes}
			check := func(what string, got, want int64) {
				if want != 0 && got != want {
					t.Errorf("%s = %d, want %d", what, got, want)
				}
			}
			check("SegmentBytes", got.segment, c.want.segment)
			check("MaxDiskBytes", got.maxDisk, c.want.maxDisk)
			check("MaxRecordBytes", int64(got.maxRecord), int64(c.want.maxRecord))
			check("MaxInFlight", int64(got.inFlight), int64(c.want.inFlight))
			check("MaxInFlightBytes", got.inFlightBytes, c.want.inFlightBytes)
			check("MinInFlight", got.minInFlight, c.want.minInFlight)
			check("MinInFlightBytes", got.minInFlightBytes, c.want.minInFlightBytes)
			if c.cfg.MaxInFlight != 0 && (got.minInFlight != 0 || got.minInFlightBytes != 0) {
				t.Errorf("a window set adapts: MinInFlight %d, MinInFlightBytes %d", got.minInFlight, got.minInFlightBytes)
			}
			if c.want.cursorEvery != 0 && got.cursorEvery != c.want.cursorEvery && !(got.cursorEvery == 0 && c.want.cursorEvery == 100*time.Millisecond) {
				t.Errorf("CursorSyncInterval = %v, want %v", got.cursorEvery, c.want.cursorEvery)
			}
		})
	}
}
