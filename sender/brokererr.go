package sender

import (
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// repeatEvery bounds how often one broker failure, or one librdkafka log
// line, is logged while it keeps coming back. librdkafka reconnects every
// reconnect.backoff.max.ms (10 s) at most, reports every failure as an
// error event, logs most of them, and logs some TLS warnings on every
// attempt: an outage of hours must not write thousands of lines.
const repeatEvery = 5 * time.Minute

// limiter lets the first of a repeated event through, then one per every,
// and says how many it held back in between.
type limiter struct {
	every time.Duration
	last  time.Time
	held  int
}

func (l *limiter) allow(now time.Time) (ok bool, suppressed int) {
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.held++
		return false, 0
	}
	n := l.held
	l.last, l.held = now, 0
	return true, n
}

// limiters is a limiter per key.
type limiters struct {
	every time.Duration
	keys  map[string]*limiter
}

// maxLimiterKeys bounds the keys remembered; past it they are all
// forgotten, which at worst lets a repeat through early.
const maxLimiterKeys = 256

func newLimiters(every time.Duration) *limiters {
	return &limiters{every: every, keys: make(map[string]*limiter)}
}

func (ls *limiters) allow(key string, now time.Time) (bool, int) {
	l, ok := ls.keys[key]
	if !ok {
		if len(ls.keys) >= maxLimiterKeys {
			clear(ls.keys)
		}
		l = &limiter{every: ls.every}
		ls.keys[key] = l
	}
	return l.allow(now)
}

func (ls *limiters) forget(key string) { delete(ls.keys, key) }

// lineKey is what makes two librdkafka log lines "the same": facility and
// text with every number masked and librdkafka's own count of repeats cut
// out, so that "(after 12ms in state X, 3 identical error(s) suppressed)"
// repeats "(after 9ms in state X)".
func lineKey(tag, msg string) string {
	if i := strings.Index(msg, " identical error(s) suppressed"); i > 0 {
		if j := strings.LastIndex(msg[:i], ", "); j >= 0 {
			msg = msg[:j] + msg[i+len(" identical error(s) suppressed"):]
		}
	}
	var b strings.Builder
	b.Grow(len(tag) + 1 + len(msg))
	b.WriteString(tag)
	b.WriteByte(' ')
	digits := false
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c >= '0' && c <= '9' {
			if !digits {
				b.WriteByte('#')
			}
			digits = true
			continue
		}
		digits = false
		b.WriteByte(c)
	}
	return b.String()
}

// authFailure tells whether a librdkafka error means that the client and
// the cluster do not accept each other, which no retry fixes until an
// operator changes credentials, certificates or ACLs: SASL credentials
// refused, a TLS handshake that failed (the broker's certificate is not
// trusted or has expired; the client's own key or certificate is
// unusable), the broker refusing the client's certificate, or a principal
// that may not produce at all (no WRITE on any topic: the idempotent
// producer's InitProducerId fails fatally).
//
// Some of these come as transport failures, told apart by their text: the
// broker's TLS alert ("Receive failed: error:0A000412:SSL routines::sslv3
// alert bad certificate: SSL alert number 42"), a verification failure on
// a later attempt ("error:0A000086:SSL routines::certificate verify
// failed"), and a broker that closes the connection instead of answering
// a refused SASL authentication, as kfake does ("SASL authentication
// error: SaslAuthenticateRequest failed: Local: Broker transport
// failure"). A network failure in the middle of a SASL exchange reads the
// same: it is taken for an authentication failure until the next delivery,
// which costs one misleading line.
func authFailure(code kafka.ErrorCode, text string) bool {
	switch code {
	case kafka.ErrAuthentication, kafka.ErrSaslAuthenticationFailed, kafka.ErrSsl, kafka.ErrClusterAuthorizationFailed:
		return true
	case kafka.ErrTransport:
		return authFailureText(text)
	}
	return false
}

// authFailureText tells SASL and TLS failures by librdkafka's text.
func authFailureText(text string) bool {
	return strings.Contains(text, "SASL authentication error") ||
		strings.Contains(text, "SSL handshake failed") ||
		strings.Contains(text, "SSL routines::") ||
		strings.Contains(text, "SSL alert number")
}

// authFailureLine tells whether a librdkafka FAIL log line reports what
// authFailure classifies: librdkafka emits the same text as an error
// event, which the sender logs (once per repeatEvery) with its meaning.
func authFailureLine(msg string) bool { return authFailureText(msg) }

// outageGrace is how long the cluster must stay unreachable before the
// sender says so: librdkafka can report all brokers down a moment before
// the authentication failure that took them down, and that failure is
// what the operator must read.
const outageGrace = time.Second

// outageTick logs an outage that has lasted outageGrace, unless it is an
// authentication failure, which has been logged as that.
func (s *Sender) outageTick(now time.Time) {
	if !s.stats.unreachable.Load() || s.outageLogged || now.Sub(s.outageSince) < outageGrace {
		return
	}
	s.outageLogged = true
	if !s.stats.authFailed.Load() {
		st := s.wal.Stats()
		ev := s.lg.Warn().Str("err", s.outageErr).Uint64("backlog_records", s.backlogRecords(st.LastSeq)).
			Int64("backlog_bytes", st.BacklogBytes).Int64("disk_bytes", st.DiskBytes).Int64("max_disk_bytes", st.MaxDiskBytes)
		oldestField(ev, s.oldest(), now).Msg("sender: Kafka unreachable; records wait in the WAL")
	}
}

// authFailed records and logs an authentication failure: Stats says so
// until a record is delivered, and the log says it once per repeatEvery
// with the number of failures in between.
func (s *Sender) authFailed(e kafka.Error) {
	text := e.Error()
	s.stats.authFailed.Store(true)
	s.stats.authError.Store(&text)
	ok, held := s.authLog.allow(time.Now())
	if !ok {
		return
	}
	ev := s.lg.Error().Str("err", text).Uint64("backlog_records", s.backlogRecords(s.wal.Stats().LastSeq))
	if held > 0 {
		ev = ev.Int("suppressed", held)
	}
	ev.Msg("sender: authentication with Kafka failed; records wait in the WAL until credentials, certificates or ACLs are fixed")
}

// authRecovered clears the authentication failure once a record is
// delivered.
func (s *Sender) authRecovered() {
	if s.stats.authFailed.Swap(false) {
		s.stats.authError.Store(nil)
		s.authLog = limiter{every: repeatEvery}
	}
}

// Rebuild pacing: a producer that fails fatally again soon after it was
// built (a cluster that refuses the principal altogether) is rebuilt after
// a pause that doubles up to maxRebuildPause, instead of in a tight loop.
const (
	rebuildStable   = time.Minute
	minRebuildPause = time.Second
	maxRebuildPause = time.Minute
)

// rebuildPaced sets the pause before the next rebuild from how long the
// producer being replaced lived.
func (s *Sender) rebuildPaced(now time.Time) {
	if s.builtAt.IsZero() || now.Sub(s.builtAt) >= rebuildStable {
		s.rebuildPause = 0
	} else {
		s.rebuildPause = min(max(2*s.rebuildPause, minRebuildPause), maxRebuildPause)
	}
	s.rebuildNotBefore = s.builtAt.Add(s.rebuildPause)
}

// rebuildWake is when checkRebuild can next go ahead: when the purged
// records have reported (or their deadline passed), and not before the
// pause.
func (s *Sender) rebuildWake() time.Time {
	at := s.rebuildNotBefore
	if n, _ := s.inFlight(); n > 0 && s.rebuildBy.After(at) {
		at = s.rebuildBy
	}
	return at
}
