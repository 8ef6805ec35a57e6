package wal

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// logLines collects a log's events, decoded.
type logLines struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *logLines) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logLines) find(msgPrefix string) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(b.buf.String(), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(l), &ev) == nil && strings.HasPrefix(ev["message"].(string), msgPrefix) {
			out = append(out, ev)
		}
	}
	return out
}

// An episode at the cap is one warning with the disk figures and the
// oldest record's age, however many appends are refused, and one line
// when an append fits again, with how long it lasted and how many were
// refused; Stats counts every ErrFull answer.
func TestFullEpisodeIsLoggedOnce(t *testing.T) {
	seg := int64(64 << 10)
	val := make([]byte, 2000)
	for _, policy := range []FullPolicy{Reject, Block} {
		t.Run(map[FullPolicy]string{Reject: "reject", Block: "block"}[policy], func(t *testing.T) {
			logs := &logLines{}
			lg := zerolog.New(logs)
			l := openT(t, t.TempDir(), Options{SegmentBytes: seg, MaxDiskBytes: 4 * seg, FullPolicy: policy, Logger: &lg})
			defer l.Close()
			appendOnce := func() error {
				ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
				defer cancel()
				_, err := l.AppendAt(ctx, []Record{{Topic: "t", Value: val}}, time.Now())
				return err
			}
			var err error
			for err == nil {
				err = appendOnce()
			}
			if !errors.Is(err, ErrFull) {
				t.Fatalf("err %v, want ErrFull", err)
			}
			for range 5 {
				if err := appendOnce(); !errors.Is(err, ErrFull) {
					t.Fatalf("append at the cap: %v, want ErrFull", err)
				}
			}
			if n := l.Stats().FullAnswers; n != 6 {
				t.Fatalf("Stats.FullAnswers %d, want 6", n)
			}
			full := logs.find("wal: full at MaxDiskBytes")
			if len(full) != 1 {
				t.Fatalf("%d 'full' lines for one episode, want 1", len(full))
			}
			ev := full[0]
			want := map[FullPolicy]string{Reject: "refused with ErrFull", Block: "wait for room"}[policy]
			if ev["level"] != "warn" || !strings.Contains(ev["message"].(string), want) ||
				ev["max_disk_bytes"] != float64(4*seg) || ev["disk_bytes"].(float64) <= 0 ||
				ev["backlog_records"].(float64) != float64(l.LastSeq()) || ev["oldest_record_age_seconds"] == nil {
				t.Fatalf("full line %v", ev)
			}
			if len(logs.find("wal: room again")) != 0 {
				t.Fatal("room logged while still full")
			}
			if err := l.SetCursor(l.LastSeq()); err != nil {
				t.Fatal(err)
			}
			l.askTruncate()
			waitFor(t, 5*time.Second, "room after truncation", func() bool { return appendOnce() == nil })
			room := logs.find("wal: room again")
			if len(room) != 1 || room[0]["level"] != "info" || room[0]["full_seconds"] == nil {
				t.Fatalf("room lines %v, want one", room)
			}
			// Each retry that found no room yet is counted too.
			if refused, total := room[0]["refused"].(float64), l.Stats().FullAnswers; refused < 6 || uint64(refused) != total {
				t.Fatalf("room line says %v refused, Stats %d; want the same, at least 6", refused, total)
			}
		})
	}
}
