package drill

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// The ledger is a line protocol from a child to the parent over a pipe
// (the child's fd 3). Each line is written with one write(2), which a pipe
// makes atomic up to PIPE_BUF (4096 bytes), so a kill never leaves half a
// line; the reader ignores a last line without its newline all the same.
//
//	open {json OpenLine}       the child's Open returned; what it repaired and replays
//	try FIRST COUNT            AppendBatch is called for ids FIRST .. FIRST+COUNT-1
//	ack FIRST COUNT            AppendBatch returned nil for ids FIRST .. FIRST+COUNT-1
//	cursor SEQ                 the persisted cursor moved to SEQ (a cursor store completed)
//	delivered UNIXNANO         the child's first delivery report (OnDeliveryResult)
//	drained {json DrainLine}   the drain run's Flush and Close returned nil
//
// Every other line is garbage: the parent reports it and the drill fails,
// because a ledger it cannot parse is a ledger it cannot trust.
const (
	lineOpen      = "open"
	lineTry       = "try"
	lineAck       = "ack"
	lineCursor    = "cursor"
	lineDelivered = "delivered"
	lineDrained   = "drained"
)

// OpenLine is what a child's Open found and did (kafkawal.OpenReport).
type OpenLine struct {
	// Repairs counts torn tails cut off the WAL (0 or 1).
	Repairs int `json:"repairs"`
	// Replay is the number of records after the durable cursor (the
	// parked ones included).
	Replay uint64 `json:"replay"`
	// Parked is the number of records found in park logs: partitions
	// that were stalled when the previous run died.
	Parked uint64 `json:"parked"`
	// LostRecords counts records mid-log corruption destroyed (must be 0).
	LostRecords int64 `json:"wal_lost_records"`
	// QuarantinedBytes is what the repair kept in quarantine/.
	QuarantinedBytes int64 `json:"quarantined_bytes"`
	// CursorClamped: the cursor was beyond the last record on disk.
	CursorClamped bool `json:"cursor_clamped"`
	// CursorFound is the cursor the WAL's files held; Cursor the one Open
	// resumed from (lower when clamped); LastSeq the last record on disk.
	CursorFound uint64 `json:"cursor_found"`
	Cursor      uint64 `json:"cursor"`
	LastSeq     uint64 `json:"last_seq"`
	// OpenMS is how long Open took, in milliseconds.
	OpenMS float64 `json:"open_ms"`
}

// DrainLine is the drain run's Stats after Flush, and how long Flush and
// Close took.
type DrainLine struct {
	Appended     uint64  `json:"appended"`
	Delivered    uint64  `json:"delivered"`
	Resent       uint64  `json:"resent"`
	DeadLettered uint64  `json:"dead_lettered"`
	Cursor       uint64  `json:"cursor"`
	LastSeq      uint64  `json:"last_seq"`
	FlushMS      float64 `json:"flush_ms"`
	CloseMS      float64 `json:"close_ms"`
}

// ledgerWriter is the child's end: one Write per line, safe for the
// appender and the sender goroutine (OnDeliveryResult) at once. After the first
// failed write (the parent is gone) it keeps returning that error.
type ledgerWriter struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

func (l *ledgerWriter) line(kind string, fields ...any) error {
	b := []byte(kind)
	for _, f := range fields {
		b = append(b, ' ')
		switch v := f.(type) {
		case uint64:
			b = strconv.AppendUint(b, v, 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		default:
			j, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("drill: ledger %s line: %w", kind, err)
			}
			b = append(b, j...)
		}
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if _, err := l.w.Write(b); err != nil {
		l.err = fmt.Errorf("drill: write ledger: %w", err)
	}
	return l.err
}

// idRange is ids First .. First+Count-1.
type idRange struct {
	First, Count uint64
}

// ackRange is an acknowledged idRange and when the parent read it.
type ackRange struct {
	idRange
	At time.Time
}

// runLedger is what the parent read from one child.
type runLedger struct {
	Acked []idRange
	// AckedAt holds the same ranges with the parent's time of reading.
	AckedAt []ackRange
	// Tried lists the ranges the child passed to AppendBatch.
	Tried []idRange
	// Cursor is the last persisted cursor the child reported (0: none).
	Cursor uint64
	// Open is nil if the child died before its Open returned.
	Open   *OpenLine
	OpenAt time.Time // parent's clock
	// FirstDelivery is when the parent read the delivered line; zero if
	// the child saw no delivery.
	FirstDelivery time.Time
	Drained       *DrainLine
	// Torn is set when the stream ended inside a line.
	Torn bool
	// Garbage holds lines that do not parse (at most a few).
	Garbage []string
	// ReadErr is a read error other than EOF.
	ReadErr error
}

func (l *runLedger) ackedCount() uint64 {
	var n uint64
	for _, r := range l.Acked {
		n += r.Count
	}
	return n
}

const maxGarbage = 5

// readLedger reads a child's ledger until EOF. now stamps lines whose
// arrival time matters (the parent's clock, so no clocks are compared).
func readLedger(r io.Reader, now func() time.Time) *runLedger {
	l := &runLedger{}
	br := bufio.NewReader(r)
	for {
		b, err := br.ReadBytes('\n')
		if err != nil {
			if len(b) > 0 {
				l.Torn = true
			}
			if err != io.EOF {
				l.ReadErr = err
			}
			return l
		}
		if perr := l.parse(bytes.TrimSuffix(b, []byte("\n")), now); perr != nil && len(l.Garbage) < maxGarbage {
			l.Garbage = append(l.Garbage, fmt.Sprintf("%q: %v", b, perr))
		}
	}
}

func (l *runLedger) parse(b []byte, now func() time.Time) error {
	kind, rest, _ := bytes.Cut(b, []byte(" "))
	switch string(kind) {
	case lineAck, lineTry:
		f, n, ok := bytes.Cut(rest, []byte(" "))
		if !ok {
			return fmt.Errorf("want %s FIRST COUNT", kind)
		}
		first, err1 := strconv.ParseUint(string(f), 10, 64)
		count, err2 := strconv.ParseUint(string(n), 10, 64)
		if err1 != nil || err2 != nil || count == 0 {
			return fmt.Errorf("want %s FIRST COUNT", kind)
		}
		r := idRange{first, count}
		if string(kind) == lineTry {
			l.Tried = append(l.Tried, r)
			break
		}
		l.Acked = append(l.Acked, r)
		l.AckedAt = append(l.AckedAt, ackRange{r, now()})
	case lineCursor:
		c, err := strconv.ParseUint(string(rest), 10, 64)
		if err != nil {
			return fmt.Errorf("want %s SEQ", lineCursor)
		}
		l.Cursor = c
	case lineOpen:
		var o OpenLine
		if err := json.Unmarshal(rest, &o); err != nil {
			return err
		}
		l.Open, l.OpenAt = &o, now()
	case lineDelivered:
		if _, err := strconv.ParseInt(string(rest), 10, 64); err != nil {
			return err
		}
		if l.FirstDelivery.IsZero() {
			l.FirstDelivery = now()
		}
	case lineDrained:
		var d DrainLine
		if err := json.Unmarshal(rest, &d); err != nil {
			return err
		}
		l.Drained = &d
	default:
		return fmt.Errorf("unknown line kind %q", kind)
	}
	return nil
}
