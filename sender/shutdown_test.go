package sender

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal/wal"
)

// A report that arrives while the sender closes its producer (closeProducer
// drains the producer's events so that its Close can finish) is settled
// without calling that producer again. Here it is the tripwire's case, a
// positional success whose offset does not rise: report answered it by
// entering draining, which purges the producer, the one another goroutine
// is closing (in librdkafka, rd_kafka_purge racing rd_kafka_destroy).
func TestLateReportDuringCloseTouchesNoProducer(t *testing.T) {
	s := positionalSender(t, 2)
	report(s, 10, nil) // record 1, at offset 10
	topic := "t"
	events := make(chan kafka.Event, 1)
	events <- &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: 9}}
	s.events = events
	s.meta = startMeta(s.p)
	s.closeProducer()
	if s.mode != normal {
		t.Fatalf("mode %v after a report during the producer's close: it purged the producer being closed", s.mode)
	}
	if s.stats.anomalies.Load() != 1 || s.win.low != 2 || s.win.at(2).state == done {
		t.Fatalf("anomalies %d, low %d, record 2 %v: want the misordered report counted and not believed",
			s.stats.anomalies.Load(), s.win.low, s.win.at(2).state)
	}
}

// A cursor that cannot be persisted is retried with a backoff, not every
// CursorSyncInterval, so that a failing disk is neither written nor
// logged ten times a second.
func TestPersistFailureBacksOff(t *testing.T) {
	var logs bytes.Buffer
	lg := zerolog.New(&logs)
	s := positionalSender(t, 2)
	s.lg, s.cfg = &lg, Config{CursorSyncInterval: time.Minute}.withDefaults()
	report(s, 10, nil)
	report(s, 11, nil)
	for _, name := range wal.CursorFiles { // every store fails
		os.Remove(filepath.Join(s.wal.Dir(), name)) // the slot Open stored
		if err := os.Mkdir(filepath.Join(s.wal.Dir(), name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 { // twenty ticks of the run loop
		s.persist()
	}
	if n := strings.Count(logs.String(), "cannot persist the cursor"); n != 1 {
		t.Fatalf("%d failures logged for 20 ticks within the backoff, want 1:\n%s", n, logs.String())
	}
	s.persistAt = time.Time{} // the backoff has passed
	s.persist()
	if n := strings.Count(logs.String(), "cannot persist the cursor"); n != 2 {
		t.Fatalf("after the backoff: %d failures logged, want 2", n)
	}
	for _, name := range wal.CursorFiles {
		if err := os.Remove(filepath.Join(s.wal.Dir(), name)); err != nil {
			t.Fatal(err)
		}
	}
	s.persistAt = time.Time{}
	s.persist()
	if c := s.wal.Cursor(); c != 2 || !strings.Contains(logs.String(), "cursor persisted again") {
		t.Fatalf("cursor %d once the disk works again, want 2 (and a log line saying so)", c)
	}
}
