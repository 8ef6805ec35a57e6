package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/kafkawal/kafkawal/recovery"
	"github.com/kafkawal/kafkawal/wal"
)

const dumpHelp = `
Dump prints records as JSON lines, oldest first, read straight from the
segment files (no lock taken, nothing changed):

  {"seq":7,"topic":"orders","partition":"any","key":"k7","value":"{...}",
   "headers":[{"key":"trace","value":"abc"}],"timestamp":"2024-05-01T03:12:00.5Z"}

  key, value, header values: a string when the bytes are valid UTF-8, else
      key_b64 / value_b64 (standard base64) instead; null for a null key or
      value. partition is a number, or "any" for a record appended with
      PartitionAny: the partitioner chooses when it is sent, and the WAL
      does not record where it went. timestamp is RFC 3339 UTC, null when
      unset.
  {"seq":8,"hole":true}: a record lost in an earlier repair (see
      quarantine/).
  {"seq":9,"corrupt":true,"error":"..."}: a record that fails its checksum;
      dump goes on and exits 1.

With --dead it prints dead letters instead, each with the record's fields
plus "time" (when it was dead-lettered), "error" (Kafka's reason) and
"code" (its librdkafka error code: Kafka's protocol code, or librdkafka's
negative local one; 0 when not kept, in dead letters written by older
versions); "partition" is the one Kafka refused the record in when known.

  --from SEQ   start at sequence SEQ (default: the first one on disk;
               'kafkawal inspect' shows the cursor). Past the next
               record to be appended (the last + 1): an error (exit 2);
               the last + 1 itself prints nothing and a note on stderr.
               Below the first record on disk (those before it were
               delivered and deleted): a note on stderr, and the dump
               starts at the first.
  --limit N    print at most N lines (default 0: no limit)
  --dead       dump the dead-letter log

exit status: 0 ok; 1 damage found (records that could not be read are
reported on stderr with segment and offset); 2 bad usage or I/O error.
`

// jsonRecord is one dump line. Key and Value are raw JSON so that a null
// key ("key":null) and a binary one (only "key_b64") both have a shape.
type jsonRecord struct {
	Seq       uint64          `json:"seq"`
	Time      *time.Time      `json:"time,omitempty"`  // --dead only
	Error     *string         `json:"error,omitempty"` // --dead only
	Code      *int32          `json:"code,omitempty"`  // --dead only
	Topic     string          `json:"topic"`
	Partition partition       `json:"partition"`
	Key       json.RawMessage `json:"key,omitempty"`
	KeyB64    string          `json:"key_b64,omitempty"`
	Value     json.RawMessage `json:"value,omitempty"`
	ValueB64  string          `json:"value_b64,omitempty"`
	Headers   []jsonHeader    `json:"headers"`
	Timestamp *time.Time      `json:"timestamp"`
}

type jsonHeader struct {
	Key      string          `json:"key"`
	Value    json.RawMessage `json:"value,omitempty"`
	ValueB64 string          `json:"value_b64,omitempty"`
}

type jsonHole struct {
	Seq  uint64 `json:"seq"`
	Hole bool   `json:"hole"`
}

type jsonCorrupt struct {
	Seq     uint64 `json:"seq"`
	Corrupt bool   `json:"corrupt"`
	Error   string `json:"error"`
}

// bytesField returns b as a JSON string when it is UTF-8, else as base64
// for the _b64 field; null for nil.
func bytesField(b []byte) (text json.RawMessage, b64 string) {
	if b == nil {
		return json.RawMessage("null"), ""
	}
	if utf8.Valid(b) {
		return jsonString(b), ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}

// jsonString quotes b as a JSON string, leaving <, > and & as they are
// (json.Marshal would write \u003c): dump output is read by people.
func jsonString(b []byte) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(string(b)) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func toJSON(seq uint64, r *wal.Record) jsonRecord {
	j := jsonRecord{Seq: seq, Topic: r.Topic, Partition: partition(r.Partition), Headers: []jsonHeader{}}
	j.Key, j.KeyB64 = bytesField(r.Key)
	j.Value, j.ValueB64 = bytesField(r.Value)
	for _, h := range r.Headers {
		jh := jsonHeader{Key: h.Key}
		jh.Value, jh.ValueB64 = bytesField(h.Value)
		j.Headers = append(j.Headers, jh)
	}
	if !r.Timestamp.IsZero() {
		ts := r.Timestamp.UTC()
		j.Timestamp = &ts
	}
	return j
}

func runDump(args []string, stdout, stderr io.Writer) int {
	const synopsis = "dump DIR [--from SEQ] [--limit N] [--dead]"
	flags := newFlagSet("dump")
	from := flags.Uint64("from", 0, "first sequence")
	limit := flags.Int64("limit", 0, "most lines")
	dead := flags.Bool("dead", false, "dump dead letters")
	pos, status, ok := parseArgs(flags, args, 1, synopsis, dumpHelp, stdout, stderr)
	if !ok {
		return status
	}
	if *limit < 0 {
		fmt.Fprintf(stderr, "kafkawal dump: --limit %d is negative; usage: kafkawal %s\n", *limit, synopsis)
		return exitUsage
	}
	dir := pos[0]
	if err := checkDir(dir); err != nil {
		return fail(stderr, "dump", err, exitUsage)
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	d := &dumper{enc: enc, limit: *limit, stderr: stderr}
	var err error
	if *dead {
		err = d.deadLetters(dir, *from)
	} else {
		err = d.log(dir, *from)
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	switch {
	case err != nil:
		return fail(stderr, "dump", err, exitUsage)
	case d.damaged:
		return exitProblem
	}
	return exitOK
}

type dumper struct {
	enc     *json.Encoder
	limit   int64 // 0: none
	printed int64
	stderr  io.Writer
	damaged bool
}

// errLimit stops a walk once --limit lines are out.
var errLimit = errors.New("limit reached")

func (d *dumper) emit(v any) error {
	if err := d.enc.Encode(v); err != nil {
		return err
	}
	d.printed++
	if d.limit > 0 && d.printed >= d.limit {
		return errLimit
	}
	return nil
}

func (d *dumper) log(dir string, from uint64) error {
	segs, err := wal.ListSegments(dir)
	if err != nil {
		return err
	}
	if len(segs) > 0 && from > 0 && from < segs[0].First {
		fmt.Fprintf(d.stderr, "kafkawal dump: note: records before seq %d were delivered and deleted; starting there\n", segs[0].First)
	}
	err = walkLog(segs, from, func(seq uint64, e []byte) (bool, error) {
		if wal.IsHole(e) {
			return true, d.emit(jsonHole{Seq: seq, Hole: true})
		}
		r, err := wal.Decode(e)
		if err != nil {
			d.damaged = true
			return true, d.emit(jsonCorrupt{Seq: seq, Corrupt: true, Error: err.Error()})
		}
		return true, d.emit(toJSON(seq, &r))
	}, func(dm damage) {
		if dm.Tail {
			fmt.Fprintf(d.stderr, "kafkawal dump: note: incomplete last record at segment %s offset %d (being written, or torn by a crash): not printed\n", dm.Segment, dm.Offset)
			return
		}
		d.damaged = true
		fmt.Fprintf(d.stderr, "kafkawal dump: CORRUPT: %v; records up to the next segment are skipped (run 'kafkawal verify')\n", dm)
	})
	if errors.Is(err, errLimit) {
		return nil
	}
	if err != nil || d.printed > 0 || d.damaged {
		return err
	}
	return checkFrom(dir, segs, from, d.stderr)
}

// checkFrom explains a dump that printed nothing: --from past the last
// record is an error; below the first record on disk, a note.
func checkFrom(dir string, segs []wal.SegmentFile, from uint64, stderr io.Writer) error {
	if len(segs) == 0 {
		if from > 0 {
			return fmt.Errorf("--from %d: the log holds no records", from)
		}
		return nil
	}
	rep, err := recovery.Scan(dir, recovery.ScanOptions{TailOnly: true})
	if err != nil && !errors.Is(err, wal.ErrCorrupt) {
		return err
	}
	if rep.LastSeq < rep.FirstSeq {
		if from > 0 {
			return fmt.Errorf("--from %d: the log holds no records", from)
		}
		return nil
	}
	switch {
	case from > rep.LastSeq+1:
		return fmt.Errorf("--from %d is past the last record (seq %d)", from, rep.LastSeq)
	case from == rep.LastSeq+1:
		// The next record to be appended: a script polling for new records
		// asks for it.
		fmt.Fprintf(stderr, "kafkawal dump: note: nothing at or after seq %d yet (the last record is seq %d)\n", from, rep.LastSeq)
	}
	return nil
}

func (d *dumper) deadLetters(dir string, from uint64) error {
	err := wal.ReadDeadLetters(dir, func(dl wal.DeadLetter) error {
		if dl.Seq < from {
			return nil
		}
		j := toJSON(dl.Seq, &dl.Record)
		t := dl.Time.UTC()
		j.Time, j.Error, j.Code = &t, &dl.Err, &dl.Code
		if dl.SentToPartition >= 0 {
			j.Partition = partition(dl.SentToPartition)
		}
		return d.emit(j)
	})
	if errors.Is(err, errLimit) {
		return nil
	}
	return err
}
