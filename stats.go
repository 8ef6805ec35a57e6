package kafkawal

import (
	"time"

	"github.com/kafkawal/kafkawal/sender"
)

// PartitionStatus is a partition whose records wait while the others are
// delivered: stalled (no delivery for PartitionStallTimeout), or accepting
// again and delivering what waited. Partition is PartitionAny for a
// topic's keyless records while none of its partitions accepts them.
// ParkedBytes is the size of its park log on disk (see ParkAfter).
type PartitionStatus = sender.PartitionStatus

// Stats is a snapshot of a Producer's counters. Counters count since Open.
type Stats struct {
	// Appended counts records whose Append or AppendBatch returned nil, or
	// whose AppendAsync callback got no error.
	Appended uint64 `json:"appended"`
	// Delivered counts delivery reports of success.
	Delivered uint64 `json:"delivered"`
	// DeadLettered counts records Kafka refused for good (see DeadLetter).
	DeadLettered uint64 `json:"dead_lettered"`
	// Resent counts records produced again (after a transient failure, a
	// producer rebuild or a restart): each may be a duplicate in Kafka.
	Resent uint64 `json:"resent"`
	// Replayed is the number of records after the cursor found at Open;
	// they were sent again and up to CursorSyncInterval's worth may be
	// duplicates.
	Replayed uint64 `json:"replayed"`
	// Lost counts records lost to corruption since Open: those the repair
	// at Open counted (OpenReport().Recovery.LostRecords, logged by
	// recovery as lost_records), plus holes left by an earlier repair that
	// the sender skipped since. Damage at or below the cursor costs
	// nothing (the records are in Kafka) and is not counted. Zero unless
	// the disk lied.
	Lost uint64 `json:"lost"`
	// Repairs counts torn tails repaired at Open.
	Repairs uint64 `json:"repairs"`
	// ProducerRebuilds counts librdkafka producers replaced after a fatal
	// error.
	ProducerRebuilds uint64 `json:"producer_rebuilds"`
	// ReportAnomalies counts delivery reports that broke the
	// per-partition report order kafkawal relies on to attribute reports
	// without an Opaque; each is logged and answered by re-sending what
	// was unacknowledged (and by going back to Opaque). Zero unless
	// librdkafka changes.
	ReportAnomalies uint64 `json:"report_anomalies"`
	// PartitionsDeferred counts the times a partition that did not keep up
	// (its oldest record in flight waiting several times as long as records
	// usually wait, and at least a second) was handed to a lane of its own,
	// which reads its records back from the WAL while the others go on: a
	// partial outage, a hot partition on a slow broker. Rising on a
	// healthy cluster, it says the sender reads the WAL more than once.
	PartitionsDeferred uint64 `json:"partitions_deferred"`

	// BacklogRecords is LastSeq - Cursor: records not yet acknowledged.
	BacklogRecords uint64 `json:"backlog_records"`
	// BacklogBytes is their size in the WAL's files: exact for whole
	// segments, prorated by record count in the segment holding the oldest
	// (off by at most part of one segment when record sizes vary), plus
	// the park logs of stalled partitions (ParkedBytes).
	BacklogBytes int64 `json:"backlog_bytes"`
	// ParkedBytes is the size of the park logs (see Config.ParkAfter);
	// DiskBytes counts them too.
	ParkedBytes int64 `json:"parked_bytes"`
	// DiskBytes is the size of the WAL's segment files and park logs;
	// MaxDiskBytes its cap.
	DiskBytes    int64 `json:"disk_bytes"`
	MaxDiskBytes int64 `json:"max_disk_bytes"`
	// FullErrors counts appends answered with an error matching ErrFull
	// since Open: refused at MaxDiskBytes (Reject), given up waiting for
	// room (Block), or failed for lack of disk space. The log says when
	// the WAL became full and when it had room again.
	FullErrors uint64 `json:"full_errors"`
	// Cursor: every sequence <= Cursor is delivered or dead-lettered (in
	// memory; persisted every CursorSyncInterval).
	Cursor uint64 `json:"cursor"`
	// PersistedCursor is the cursor as last persisted: a restart resumes
	// after it, so LastSeq - PersistedCursor bounds what a crash now would
	// send again.
	PersistedCursor uint64 `json:"persisted_cursor"`
	// LastSeq is the last sequence appended.
	LastSeq uint64 `json:"last_seq"`
	// InFlight counts records handed to librdkafka without a report yet.
	InFlight int `json:"in_flight"`
	// OldestBacklogAge is how long the oldest record not yet acknowledged
	// has waited since it was appended (its Timestamp), whether it is in
	// flight or still only in the WAL; 0 when the backlog is empty (and,
	// briefly, before the sender has read it after Open). It is what
	// `kafkawal inspect` shows as the oldest backlog record. In JSON:
	// nanoseconds.
	OldestBacklogAge time.Duration `json:"oldest_backlog_age_ns"`
	// OldestInFlightAge is the same for records handed to librdkafka
	// only; 0 when nothing is in flight.
	OldestInFlightAge time.Duration `json:"oldest_in_flight_age_ns"`
	// OldestUnacknowledgedAge is OldestInFlightAge, under its old name.
	//
	// Deprecated: its name suggested the whole backlog; use
	// OldestInFlightAge, or OldestBacklogAge for the backlog.
	OldestUnacknowledgedAge time.Duration `json:"oldest_unacknowledged_age_ns"`
	// Transactions counts transactions committed under ExactlyOnce;
	// TransactionsAborted those aborted (a record failed in them, or
	// an outage outlasted them): their records were produced again, and
	// read_uncommitted consumers see the aborted copies.
	Transactions        uint64 `json:"transactions"`
	TransactionsAborted uint64 `json:"transactions_aborted"`
	// CommitLatencyP50 and CommitLatencyP99 are percentiles of the time
	// CommitTransaction took over the last 1024 commits, under
	// ExactlyOnce. In JSON: nanoseconds.
	CommitLatencyP50 time.Duration `json:"commit_latency_p50_ns"`
	CommitLatencyP99 time.Duration `json:"commit_latency_p99_ns"`
	// Fenced is true once another producer with the same TransactionalID
	// has taken over: this one stopped delivering for good (ErrFenced).
	Fenced bool `json:"fenced"`
	// ExactlyOnceError says why delivery waits for an operator under
	// ExactlyOnce: no authorization (on the TransactionalID or the
	// CheckpointTopic), or a checkpoint that cannot be trusted (another WAL
	// directory's, missing though this directory committed, ending on a
	// record this directory does not hold); "" otherwise. The records stay
	// in the WAL; kafkawal tries again every 30 s.
	ExactlyOnceError string `json:"exactly_once_error,omitempty"`

	// BrokerReachable is false while librdkafka reports all brokers down.
	// librdkafka notices a silent network only after its socket timeouts
	// (socket.timeout.ms, 60s by default, twice); OldestBacklogAge shows
	// a stall sooner.
	BrokerReachable bool `json:"broker_reachable"`
	// BrokerAuthFailed is true from an authentication failure until the
	// next delivery: the brokers refused the SASL credentials, a TLS
	// handshake failed (the broker's certificate untrusted or expired, or
	// the client's certificate refused by the broker), or the principal
	// may not produce at all (no WRITE on any topic). Nothing is lost:
	// records wait in the WAL. librdkafka keeps reconnecting, so a fix on
	// the broker's side is picked up by itself; a fix on the client's
	// side needs a restart with the new Config, or SetSASLCredentials.
	// BrokerReachable is false meanwhile.
	BrokerAuthFailed bool `json:"broker_auth_failed"`
	// BrokerAuthError is librdkafka's description of the last
	// authentication failure (which broker, SASL or TLS, why), "" when
	// BrokerAuthFailed is false. It holds no secret.
	BrokerAuthError string `json:"broker_auth_error,omitempty"`
	// StalledPartitions lists the partitions that stalled while the
	// others went on, until they have delivered what waited (updated
	// every CursorSyncInterval). Empty when healthy.
	StalledPartitions []PartitionStatus `json:"stalled_partitions,omitempty"`
}

// Stats returns the current counters. It is cheap and safe to call often.
func (p *Producer) Stats() Stats {
	ws := p.log.Stats()
	ss := p.snd.Stats()
	st := Stats{
		Appended:           ws.Appended,
		Delivered:          ss.Delivered,
		DeadLettered:       ss.DeadLettered,
		Resent:             ss.Resent,
		Replayed:           p.opened.Replay,
		Lost:               uint64(p.opened.Recovery.LostRecords) + p.lostLater.Load(),
		Repairs:            uint64(p.opened.Recovery.TornTailRepairs),
		ProducerRebuilds:   ss.Rebuilds,
		ReportAnomalies:    ss.ReportAnomalies,
		PartitionsDeferred: ss.PartitionsDeferred,
		DiskBytes:          ws.DiskBytes,
		MaxDiskBytes:       ws.MaxDiskBytes,
		FullErrors:         ws.FullAnswers,
		Cursor:             ss.Acked,
		PersistedCursor:    ws.Cursor,
		LastSeq:            ws.LastSeq,
		InFlight:           ss.InFlight,
		BrokerReachable:    ss.BrokerReachable,
		BrokerAuthFailed:   ss.BrokerAuthFailed,
		BrokerAuthError:    ss.BrokerAuthError,

		StalledPartitions: ss.StalledPartitions,

		Transactions:        ss.Transactions,
		TransactionsAborted: ss.TransactionsAborted,
		CommitLatencyP50:    ss.CommitP50,
		CommitLatencyP99:    ss.CommitP99,
		Fenced:              ss.Fenced,
		ExactlyOnceError:    ss.ExactlyOnceError,
	}
	st.ParkedBytes = p.log.ParkedBytes()
	if st.LastSeq > st.Cursor {
		st.BacklogRecords = st.LastSeq - st.Cursor
		st.BacklogBytes = p.log.BytesAfter(max(st.Cursor, ws.Cursor)) + st.ParkedBytes
	}
	now := time.Now()
	if !ss.OldestUnacked.IsZero() {
		st.OldestInFlightAge = now.Sub(ss.OldestUnacked)
		st.OldestUnacknowledgedAge = st.OldestInFlightAge
	}
	if !ss.OldestBacklog.IsZero() && st.BacklogRecords > 0 {
		st.OldestBacklogAge = now.Sub(ss.OldestBacklog)
	}
	return st
}
