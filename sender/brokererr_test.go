package sender

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"
)

func TestLimiterLetsOnePerInterval(t *testing.T) {
	l := limiter{every: time.Minute}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{0, true, 0},
		{time.Second, false, 0},
		{30 * time.Second, false, 0},
		{59 * time.Second, false, 0},
		{61 * time.Second, true, 3},
		{62 * time.Second, false, 0},
		{3 * time.Minute, true, 1},
		{5 * time.Minute, true, 0},
	}
	for _, s := range steps {
		ok, n := l.allow(t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Fatalf("at %v: allow = %v, %d; want %v, %d", s.at, ok, n, s.ok, s.suppressed)
		}
	}
}

func TestLimitersAreIndependentPerKeyAndBounded(t *testing.T) {
	ls := newLimiters(time.Minute)
	now := time.Unix(1000, 0)
	if ok, _ := ls.allow("a", now); !ok {
		t.Fatal("first a held back")
	}
	if ok, _ := ls.allow("b", now); !ok {
		t.Fatal("first b held back by a")
	}
	if ok, _ := ls.allow("a", now.Add(time.Second)); ok {
		t.Fatal("second a let through")
	}
	for i := range maxLimiterKeys {
		ls.allow(string(rune('A'+i%26))+string(rune(i)), now)
	}
	if len(ls.keys) > maxLimiterKeys {
		t.Fatalf("%d keys remembered, want at most %d", len(ls.keys), maxLimiterKeys)
	}
}

// TestLineKeyMasksNumbers: librdkafka's repeats differ in durations, ports
// of the moment and counts of suppressed errors; they are one line.
func TestLineKeyMasksNumbers(t *testing.T) {
	a := lineKey("FAIL", "sasl_ssl://127.0.0.1:45655/bootstrap: Connect failed (after 339ms in state CONNECT)")
	b := lineKey("FAIL", "sasl_ssl://127.0.0.1:45655/bootstrap: Connect failed (after 12ms in state CONNECT, 5 identical error(s) suppressed)")
	c := lineKey("FAIL", "sasl_ssl://127.0.0.1:45655/bootstrap: Connect failed (after 7ms in state CONNECT)")
	if a != c {
		t.Errorf("lineKey differs by a duration: %q vs %q", a, c)
	}
	if a != b {
		t.Errorf("lineKey differs by librdkafka's count of suppressed repeats: %q vs %q", a, b)
	}
	if d := lineKey("FAIL", "sasl_ssl://127.0.0.1:45655/bootstrap: Connect failed: Connection refused"); d == a {
		t.Errorf("lineKey ignores the text: %q", d)
	}
	if lineKey("SSL", "x") == lineKey("FAIL", "x") {
		t.Error("lineKey ignores the facility")
	}
}

// TestAuthFailure: the errors librdkafka 2.11 gave on Kafka 4.4 for each
// failure of the secure-cluster tests, and neighbours that are not one.
func TestAuthFailure(t *testing.T) {
	cases := []struct {
		name string
		code kafka.ErrorCode
		text string
		want bool
	}{
		{"wrong password", kafka.ErrAuthentication, "sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 339ms in state AUTH_REQ)", true},
		{"untrusted broker certificate", kafka.ErrSsl, "ssl://127.0.0.1:1/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified (after 93ms in state SSL_HANDSHAKE)", true},
		{"client certificate refused", kafka.ErrTransport, "ssl://127.0.0.1:1/bootstrap: Receive failed: error:0A000412:SSL routines::sslv3 alert bad certificate: SSL alert number 42 (after 6ms in state APIVERSION_QUERY)", true},
		{"refused SASL, connection closed (kfake)", kafka.ErrTransport, "sasl_ssl://127.0.0.1:1/bootstrap: SASL authentication error: SaslAuthenticateRequest failed: Local: Broker transport failure (after 0ms in state DOWN)", true},
		{"untrusted broker certificate, second attempt", kafka.ErrTransport, "ssl://127.0.0.1:1/bootstrap: error:0A000086:SSL routines::certificate verify failed (after 2ms in state SSL_HANDSHAKE)", true},
		{"no WRITE anywhere", kafka.ErrClusterAuthorizationFailed, "Fatal error: Failed to acquire idempotence PID from broker sasl_ssl://127.0.0.1:1/1: Broker: Cluster authorization failed", true},
		{"connection refused", kafka.ErrTransport, "ssl://127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)", false},
		{"connection refused, SASL_SSL", kafka.ErrTransport, "sasl_ssl://127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)", false},
		{"disconnected", kafka.ErrTransport, "127.0.0.1:1/1: Disconnected (after 5000ms in state UP)", false},
		{"all brokers down", kafka.ErrAllBrokersDown, "1/1 brokers are down", false},
		{"topic not authorized", kafka.ErrTopicAuthorizationFailed, "Broker: Topic authorization failed", false},
	}
	for _, c := range cases {
		if got := authFailure(c.code, c.text); got != c.want {
			t.Errorf("%s: authFailure = %v, want %v", c.name, got, c.want)
		}
		if c.code != kafka.ErrClusterAuthorizationFailed && c.code != kafka.ErrAllBrokersDown && c.code != kafka.ErrTopicAuthorizationFailed {
			if got := authFailureLine(c.text); got != c.want {
				t.Errorf("%s: authFailureLine = %v, want %v", c.name, got, c.want)
			}
		}
	}
}

// TestRebuildPacing: a producer that fails again soon after it was built
// waits a doubling pause, up to a minute; one that lived a while does not.
func TestRebuildPacing(t *testing.T) {
	s := &Sender{}
	t0 := time.Unix(1000, 0)
	s.builtAt = t0
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	for i, w := range want {
		s.rebuildPaced(s.builtAt.Add(time.Second))
		if s.rebuildPause != w || !s.rebuildNotBefore.Equal(s.builtAt.Add(w)) {
			t.Fatalf("rebuild %d: pause %v until %v, want %v", i, s.rebuildPause, s.rebuildNotBefore, w)
		}
		s.builtAt = s.rebuildNotBefore
	}
	for range 10 {
		s.rebuildPaced(s.builtAt.Add(time.Second))
		s.builtAt = s.rebuildNotBefore
	}
	if s.rebuildPause != maxRebuildPause {
		t.Fatalf("pause %v after many quick failures, want %v", s.rebuildPause, maxRebuildPause)
	}
	s.rebuildPaced(s.builtAt.Add(2 * rebuildStable))
	if s.rebuildPause != 0 {
		t.Fatalf("pause %v after a producer that lived %v, want 0", s.rebuildPause, 2*rebuildStable)
	}
}

// TestFatalReportAndEventLogOneRebuild: librdkafka fails the records it
// holds with a bare ERR__FATAL ("Local: Fatal error") and raises an error
// event with the cause. Whichever reaches the sender first, the rebuild
// names the cause, and a second rebuild for the same cause is not logged
// again (TestNoWriteAnywhere saw two lines when a report came first once
// and the event the next time: two error codes, two causes to the
// limiter).
func TestFatalReportAndEventLogOneRebuild(t *testing.T) {
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1", "enable.idempotence": true, "log_level": 0})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.TestFatalError(kafka.ErrClusterAuthorizationFailed, "Failed to acquire idempotence PID: no")
	event := p.GetFatalError()
	report := kafka.NewError(kafka.ErrFatal, "Local: Fatal error", false)

	var logged bytes.Buffer
	lg := zerolog.New(&logged)
	s := &Sender{p: p, lg: &lg, rebuildLog: newLimiters(repeatEvery), win: newWindow(1, 16), mode: normal}
	var cause kafka.Error
	if got := s.fatalCause(report); !errors.As(got, &cause) || cause.Code() != kafka.ErrClusterAuthorizationFailed || !cause.IsFatal() {
		t.Fatalf("the cause of a report's %q is %q; want the producer's %q", report, got, event)
	}
	if other := kafka.NewError(kafka.ErrUnknownProducerID, "x", false); s.fatalCause(other) != error(other) {
		t.Fatalf("an error other than ERR__FATAL was replaced: %v", s.fatalCause(other))
	}
	s.fatalError(report)
	s.mode = normal // rebuilt
	s.fatalError(event)
	if n := strings.Count(logged.String(), "fatal producer error; rebuilding"); n != 1 {
		t.Fatalf("the rebuild was logged %d times; want once:\n%s", n, logged.String())
	}
	if !strings.Contains(logged.String(), "Failed to acquire idempotence PID") {
		t.Fatalf("the rebuild's line does not name the cause:\n%s", logged.String())
	}
}
