package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal"
)

// handlerConfig configures the HTTP handler. Zero fields but Topic take the
// defaults below.
type handlerConfig struct {
	// Topic receives every event. Required.
	Topic string
	// KeyField is the top-level event field whose value (a string or a
	// number) becomes the record key. Default "key".
	KeyField string
	// KeyHeader is the request header whose value keys every event of the
	// request that has no KeyField. Default "X-Kafka-Key".
	KeyHeader string
	// MaxBodyBytes limits a request body. Default 1 MiB.
	MaxBodyBytes int64
	// RetryAfter is what a 503 tells clients to wait (Retry-After, whole
	// seconds, at least 1). Default 5s.
	RetryAfter time.Duration
	// Logger receives errors clients cannot act on. Default: none.
	Logger *zerolog.Logger
	// ProducerName labels the producer's metrics on /metrics
	// (producer="..."). Default: the base name of the WAL directory.
	ProducerName string
}

const (
	defaultKeyField     = "key"
	defaultKeyHeader    = "X-Kafka-Key"
	defaultMaxBodyBytes = 1 << 20
	defaultRetryAfter   = 5 * time.Second
)

func (c handlerConfig) withDefaults() handlerConfig {
	if c.KeyField == "" {
		c.KeyField = defaultKeyField
	}
	if c.KeyHeader == "" {
		c.KeyHeader = defaultKeyHeader
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = defaultMaxBodyBytes
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = defaultRetryAfter
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	return c
}

// newHandler serves the ingest API in front of p:
//
//	POST /events   a JSON object or an array of them; 202 once durable
//	GET  /stats    p.Stats() as JSON
//	GET  /healthz  200 while the process serves, with Kafka's reachability
//	GET  /metrics  Prometheus metrics (package prom, Go runtime, process)
//
// The producer's FullPolicy decides what a full WAL does to a POST; run
// opens it with Reject (see there), so that a full WAL answers 503 at once.
func newHandler(p *kafkawal.Producer, cfg handlerConfig) http.Handler {
	h := &handler{p: p, cfg: cfg.withDefaults()}
	mux := http.NewServeMux()
	// Method patterns make the mux answer other methods with 405 and an
	// Allow header.
	mux.HandleFunc("POST /events", h.events)
	mux.HandleFunc("GET /stats", h.stats)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.Handle("GET /metrics", metricsHandler(p, h.cfg))
	return mux
}

type handler struct {
	p   *kafkawal.Producer
	cfg handlerConfig
}

// accepted is the body of a 202: the events got the WAL sequences
// FirstSeq..LastSeq, in request order.
type accepted struct {
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Count    int    `json:"count"`
}

func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > h.cfg.MaxBodyBytes {
		h.fail(w, http.StatusRequestEntityTooLarge, "body of %d bytes exceeds the limit of %d", r.ContentLength, h.cfg.MaxBodyBytes)
		return
	}
	// MaxBytesReader also covers chunked bodies and lying Content-Lengths,
	// and closes the connection after an oversize body.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.fail(w, http.StatusRequestEntityTooLarge, "body exceeds the limit of %d bytes", h.cfg.MaxBodyBytes)
			return
		}
		h.fail(w, http.StatusBadRequest, "reading the body: %v", err)
		return
	}
	recs, err := h.decode(body, r.Header.Get(h.cfg.KeyHeader))
	if err != nil {
		h.fail(w, http.StatusBadRequest, "%v", err)
		return
	}

	// AppendBatch: one fsync for the whole request, all events or none.
	first, err := h.p.AppendBatch(r.Context(), recs)
	switch {
	case err == nil:
		writeJSON(w, http.StatusAccepted, accepted{FirstSeq: first, LastSeq: first + uint64(len(recs)) - 1, Count: len(recs)})
	case errors.Is(err, kafkawal.ErrFull):
		// Kafka has been out long enough to fill the WAL: push back on
		// the client rather than drop or buffer in memory. Nothing was
		// written, so the client can safely send the same request again.
		h.unavailable(w, "event log full while Kafka catches up; retry later")
	case errors.Is(err, kafkawal.ErrClosed):
		h.unavailable(w, "shutting down; retry later")
	case errors.Is(err, kafkawal.ErrTooLarge):
		h.fail(w, http.StatusRequestEntityTooLarge, "%v", err)
	case errors.Is(err, kafkawal.ErrInvalidRecord):
		// decode sets a topic and PartitionAny, so this means a bug here;
		// still the client's request, never worth retrying.
		h.fail(w, http.StatusBadRequest, "%v", err)
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		h.fail(w, http.StatusServiceUnavailable, "request cancelled")
	default:
		h.cfg.Logger.Error().Err(err).Int("events", len(recs)).Msg("httpingest: append failed")
		h.fail(w, http.StatusInternalServerError, "append failed")
	}
}

// decode turns a body holding one JSON object or an array of them into
// records: the value is the event's compacted JSON, the key its KeyField, or
// else headerKey.
func (h *handler) decode(body []byte, headerKey string) ([]kafkawal.Record, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, errors.New("empty body: send a JSON object or an array of objects")
	}
	var raws []json.RawMessage
	if body[0] == '[' {
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		if len(raws) == 0 {
			return nil, errors.New("empty array: send at least one event")
		}
	} else {
		if err := json.Unmarshal(body, new(json.RawMessage)); err != nil {
			return nil, fmt.Errorf("invalid JSON: %v", err)
		}
		raws = []json.RawMessage{body}
	}
	recs := make([]kafkawal.Record, len(raws))
	for i, raw := range raws {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
			return nil, fmt.Errorf("event %d: not a JSON object", i)
		}
		key, err := h.key(fields[h.cfg.KeyField], headerKey)
		if err != nil {
			return nil, fmt.Errorf("event %d: %v", i, err)
		}
		var value bytes.Buffer
		if err := json.Compact(&value, raw); err != nil {
			return nil, fmt.Errorf("event %d: invalid JSON: %v", i, err)
		}
		recs[i] = kafkawal.Record{
			Topic:     h.cfg.Topic,
			Partition: kafkawal.PartitionAny, // hash the key
			Key:       key,
			Value:     value.Bytes(),
		}
	}
	return recs, nil
}

// key returns the record key from the event's key field (a string or a
// number), else from the header; nil when neither is set.
func (h *handler) key(field json.RawMessage, headerKey string) ([]byte, error) {
	if len(field) == 0 || string(field) == "null" {
		if headerKey == "" {
			return nil, nil
		}
		return []byte(headerKey), nil
	}
	var s string
	if err := json.Unmarshal(field, &s); err == nil {
		return []byte(s), nil
	}
	var n json.Number
	if err := json.Unmarshal(field, &n); err == nil {
		return []byte(n), nil
	}
	return nil, fmt.Errorf("field %q must be a string or a number to be a key", h.cfg.KeyField)
}

func (h *handler) stats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.p.Stats())
}

// health is the body of /healthz.
type health struct {
	Status         string `json:"status"`
	KafkaReachable bool   `json:"kafka_reachable"`
	BacklogRecords uint64 `json:"backlog_records"`
	WALFullPercent int    `json:"wal_full_percent"`
}

// healthz answers 200 even while Kafka is down: the service still accepts
// events into the WAL, so restarting it would not help. A full WAL shows in
// the POST answers (503) and in wal_full_percent.
func (h *handler) healthz(w http.ResponseWriter, r *http.Request) {
	st := h.p.Stats()
	hl := health{Status: "ok", KafkaReachable: st.BrokerReachable, BacklogRecords: st.BacklogRecords}
	if st.MaxDiskBytes > 0 {
		hl.WALFullPercent = int(100 * st.DiskBytes / st.MaxDiskBytes)
	}
	writeJSON(w, http.StatusOK, hl)
}

// unavailable answers 503 with Retry-After.
func (h *handler) unavailable(w http.ResponseWriter, msg string) {
	secs := int64(math.Ceil(h.cfg.RetryAfter.Seconds()))
	w.Header().Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
	h.fail(w, http.StatusServiceUnavailable, "%s", msg)
}

// errorBody is the body of every error answer.
type errorBody struct {
	Error string `json:"error"`
}

func (h *handler) fail(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, errorBody{Error: fmt.Sprintf(format, args...)})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
