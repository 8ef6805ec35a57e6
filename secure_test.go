package kafkawal_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// authFailedMsg is the one error line an authentication failure logs.
const authFailedMsg = "sender: authentication with Kafka failed; records wait in the WAL until credentials, certificates or ACLs are fixed"

// secureBrokers starts what it takes to reach every secure listener: one
// real broker that has them all, or one embedded broker per listener
// (kfake has one listener).
func secureBrokers(t *testing.T) map[kafkatest.Listener]kafkatest.Broker {
	t.Helper()
	m := make(map[kafkatest.Listener]kafkatest.Broker)
	if kafkatest.Kind() == "real" {
		b := kafkatest.StartT(t, kafkatest.Options{Secure: true, Listener: kafkatest.SASLSSL})
		for _, l := range kafkatest.SecureListeners {
			m[l] = b
		}
		return m
	}
	for _, l := range kafkatest.SecureListeners {
		m[l] = kafkatest.StartT(t, kafkatest.Options{Secure: true, Listener: l})
	}
	return m
}

// secureConfig is baseConfig for a client of listener l of b, as the
// default client identity, logging to lg.
func secureConfig(t *testing.T, b kafkatest.Broker, l kafkatest.Listener, lg *zerolog.Logger) kafkawal.Config {
	t.Helper()
	cfg := baseConfig(t, b)
	cm, err := b.ClientConfig(l)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range cm {
		cfg.Kafka[k] = v
	}
	if lg != nil {
		cfg.Logger = lg
	}
	return cfg
}

// grantAll lets the SASL user and the client certificate produce to topics.
func grantAll(t *testing.T, b kafkatest.Broker, topics ...string) {
	t.Helper()
	sec := b.Security()
	for _, p := range []string{sec.UserPrincipal, sec.ClientPrincipal} {
		if err := kafkatest.GrantProducer(testCtx(t, time.Minute), b, p, topics...); err != nil {
			t.Fatal(err)
		}
	}
}

// verifySecure is verify through the broker's admin client (the secure
// listeners need TLS or SASL to read back).
func verifySecure(t *testing.T, b kafkatest.Broker, topics []string, acked []uint64) kafkatest.Report {
	t.Helper()
	recs, err := kafkatest.ReadAllWith(testCtx(t, 3*time.Minute), b.AdminOpts(), topics, len(acked))
	if err != nil {
		t.Logf("read back: %v", err)
	}
	rep := kafkatest.Verify(acked, recs, recordID, nil)
	t.Logf("verify %s: %v", strings.Join(topics, ","), rep)
	if !rep.OK() {
		t.Fatalf("verify failed: %v", rep)
	}
	return rep
}

// appendN appends n records with ids from first on to topic and returns
// their ids: each Append returned nil, so each is durable.
func appendN(t *testing.T, p *kafkawal.Producer, topic string, first uint64, n int) []uint64 {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	ids := make([]uint64, 0, n)
	for id := first; id < first+uint64(n); id++ {
		if _, err := p.Append(ctx, idRecord(topic, 0, id, value(100, id))); err != nil {
			t.Fatalf("Append %d: %v", id, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// logSink collects a producer's zerolog output (JSON lines).
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *logSink) logger(level zerolog.Level) *zerolog.Logger {
	l := zerolog.New(s).Level(level).With().Timestamp().Logger()
	return &l
}

// lines returns the lines logged so far that match.
func (s *logSink) lines(match func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			continue
		}
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

func atLevel(levels ...string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		for _, l := range levels {
			if m["level"] == l {
				return true
			}
		}
		return false
	}
}

// connectAttempts matches librdkafka's debug line for each connection
// attempt (with debug=broker, see watchConnects).
func connectAttempts(m map[string]any) bool {
	return m["source"] == "librdkafka" && m["tag"] == "CONNECT" && strings.Contains(fmt.Sprint(m["message"]), "Connecting to")
}

// watchConnects makes librdkafka log each connection attempt at debug
// level, so that a test can tell that failures repeated.
func watchConnects(cfg kafkawal.Config) kafkawal.Config {
	cfg.Kafka["debug"] = "broker"
	return cfg
}

// checkOneAuthLine: the failure was logged as one error line, and no line
// at warning or above twice (numbers aside), however often librdkafka
// failed meanwhile. With onlyAuth, nothing else was logged at error level
// and nothing called it an outage.
func checkOneAuthLine(t *testing.T, sink *logSink, onlyAuth bool) {
	t.Helper()
	auth := sink.lines(func(m map[string]any) bool { return m["message"] == authFailedMsg })
	if len(auth) != 1 || auth[0]["level"] != "error" {
		t.Errorf("want exactly one error line %q, got %d: %v", authFailedMsg, len(auth), auth)
	}
	if errs := sink.lines(atLevel("error", "fatal", "panic")); onlyAuth && len(errs) != 1 {
		t.Errorf("want only the authentication failure at error level, got %d lines: %v", len(errs), errs)
	}
	seen := make(map[string]bool)
	for _, m := range sink.lines(atLevel("warn", "error")) {
		key := fmt.Sprint(m["tag"], " ", maskNumbers(fmt.Sprint(m["message"])))
		if seen[key] {
			t.Errorf("logged twice at %v: %v", m["level"], m)
		}
		seen[key] = true
		if onlyAuth && m["message"] == "sender: Kafka unreachable; records wait in the WAL" {
			t.Errorf("an authentication failure was logged as an outage: %v", m)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", sink.String())
	}
}

// maskNumbers replaces every run of digits with #, and drops librdkafka's
// count of repeats it suppressed itself.
func maskNumbers(s string) string {
	s = regexp.MustCompile(`, \d+ identical error\(s\) suppressed`).ReplaceAllString(s, "")
	return regexp.MustCompile(`\d+`).ReplaceAllString(s, "#")
}

// waitAuthFailed waits until Stats says authentication failed with an
// error that contains text, and librdkafka has tried to connect at least
// four times (so that the log had repeats to hold back; the producer must
// log to sink at debug level, with watchConnects).
func waitAuthFailed(t *testing.T, p *kafkawal.Producer, sink *logSink, text string) kafkawal.Stats {
	t.Helper()
	waitFor(t, 60*time.Second, "Stats.BrokerAuthFailed", func() bool { return p.Stats().BrokerAuthFailed })
	waitFor(t, 60*time.Second, "four connection attempts", func() bool {
		return len(sink.lines(connectAttempts)) >= 4
	})
	st := p.Stats()
	if !strings.Contains(st.BrokerAuthError, text) {
		t.Errorf("Stats.BrokerAuthError = %q, want it to contain %q", st.BrokerAuthError, text)
	}
	if !st.BrokerAuthFailed || st.BrokerReachable {
		t.Errorf("Stats during the failure: auth failed %v, reachable %v; want true, false", st.BrokerAuthFailed, st.BrokerReachable)
	}
	return st
}

// TestSecureListenersDeliver: kafkawal produces through every secure
// listener with the settings a user would give (ClientConfig), as a
// principal granted WRITE only on its topic; nothing is lost.
func TestSecureListenersDeliver(t *testing.T) {
	brokers := secureBrokers(t)
	for _, l := range kafkatest.SecureListeners {
		t.Run(string(l), func(t *testing.T) {
			b := brokers[l]
			topic := "secure-" + string(l)
			createTopic(t, b, topic, 2, nil)
			grantAll(t, b, topic)
			p := openT(t, secureConfig(t, b, l, nil))
			acked := appendN(t, p, topic, 1, 300)
			if err := p.Flush(testCtx(t, time.Minute)); err != nil {
				t.Fatalf("Flush: %v (stats %+v)", err, p.Stats())
			}
			closeT(t, p, 10*time.Second)
			if rep := verifySecure(t, b, []string{topic}, acked); rep.Duplicates != 0 {
				t.Fatalf("%d duplicates without any failure", rep.Duplicates)
			}
		})
	}
}

// TestAuthenticationFailureKeepsRecords: with credentials or certificates
// the cluster and the client do not accept, Open succeeds, appends are
// durable, Stats says authentication failed (not "unreachable"), one
// error line says so however often librdkafka reconnects, and after a
// restart with the right Config everything is delivered.
func TestAuthenticationFailureKeepsRecords(t *testing.T) {
	brokers := secureBrokers(t)
	cases := []struct {
		name   string
		l      kafkatest.Listener
		breaks func(sec *kafkatest.Security, m kafka.ConfigMap)
		text   string // in Stats.BrokerAuthError
	}{
		{"wrong password", kafkatest.SASLSSL, func(_ *kafkatest.Security, m kafka.ConfigMap) {
			m["sasl.password"] = "not-the-password"
		}, "SASL authentication error"},
		{"unknown user", kafkatest.SASLSSL, func(_ *kafkatest.Security, m kafka.ConfigMap) {
			m["sasl.username"] = "nobody"
		}, "SASL authentication error"},
		{"wrong PLAIN password", kafkatest.SASLPlaintext, func(_ *kafkatest.Security, m kafka.ConfigMap) {
			m["sasl.password"] = "not-the-password"
		}, "SASL authentication error"},
		{"untrusted broker certificate", kafkatest.SSL, func(sec *kafkatest.Security, m kafka.ConfigMap) {
			m["ssl.ca.location"] = sec.RogueCAFile
		}, "certificate verify failed"},
		{"client certificate refused", kafkatest.MTLS, func(sec *kafkatest.Security, m kafka.ConfigMap) {
			m["ssl.certificate.location"] = sec.RogueClientCertFile
			m["ssl.key.location"] = sec.RogueClientKeyFile
			delete(m, "ssl.key.password")
		}, "SSL alert number"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := brokers[c.l]
			topic := fmt.Sprintf("auth-%d", i)
			createTopic(t, b, topic, 1, nil)
			grantAll(t, b, topic)

			sink := &logSink{}
			bad := watchConnects(secureConfig(t, b, c.l, sink.logger(zerolog.DebugLevel)))
			c.breaks(b.Security(), bad.Kafka)
			p, err := kafkawal.Open(bad)
			if err != nil {
				t.Fatalf("Open with refused credentials: %v; want it to succeed (appends stay durable)", err)
			}
			t.Cleanup(func() { p.Close(testCtx(t, 5*time.Second)) })
			acked := appendN(t, p, topic, 1, 100)
			st := waitAuthFailed(t, p, sink, c.text)
			if st.BacklogRecords != 100 || st.Delivered != 0 {
				t.Errorf("backlog %d records, %d delivered; want 100, 0", st.BacklogRecords, st.Delivered)
			}
			acked = append(acked, appendN(t, p, topic, 101, 100)...)
			checkOneAuthLine(t, sink, true)
			if err := p.Close(testCtx(t, 3*time.Second)); err == nil {
				t.Fatal("Close delivered everything while authentication failed")
			}

			good := secureConfig(t, b, c.l, nil)
			good.Dir = bad.Dir
			p = openT(t, good)
			if err := p.Flush(testCtx(t, time.Minute)); err != nil {
				t.Fatalf("Flush after the fix: %v (stats %+v)", err, p.Stats())
			}
			if st := p.Stats(); st.BrokerAuthFailed || st.BrokerAuthError != "" || st.Delivered != 200 {
				t.Errorf("Stats after the fix: auth failed %v %q, delivered %d; want false, \"\", 200", st.BrokerAuthFailed, st.BrokerAuthError, st.Delivered)
			}
			closeT(t, p, 10*time.Second)
			verifySecure(t, b, []string{topic}, acked)
		})
	}
}

// TestExpiredBrokerCertificate: a broker presenting an expired certificate
// is refused like an untrusted one; once the broker has a valid one again,
// the same producer delivers what waited, with no restart of its own.
func TestExpiredBrokerCertificate(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Secure: true, Listener: kafkatest.SSL})
	const topic = "expired"
	createTopic(t, b, topic, 1, nil)
	restartWithCert := func(expired bool) {
		t.Helper()
		if err := b.Security().SetBrokerCert(expired); err != nil {
			t.Fatal(err)
		}
		if err := b.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := b.Restart(testCtx(t, 2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	restartWithCert(true)

	sink := &logSink{}
	p := openT(t, watchConnects(secureConfig(t, b, kafkatest.SSL, sink.logger(zerolog.DebugLevel))))
	acked := appendN(t, p, topic, 1, 100)
	waitAuthFailed(t, p, sink, "certificate verify failed")
	checkOneAuthLine(t, sink, true)

	restartWithCert(false)
	if err := p.Flush(testCtx(t, time.Minute)); err != nil {
		t.Fatalf("Flush once the broker's certificate is valid: %v (stats %+v)", err, p.Stats())
	}
	if st := p.Stats(); st.BrokerAuthFailed || !st.BrokerReachable {
		t.Errorf("Stats after the fix: auth failed %v, reachable %v; want false, true", st.BrokerAuthFailed, st.BrokerReachable)
	}
	closeT(t, p, 10*time.Second)
	verifySecure(t, b, []string{topic}, acked)
}

// TestCredentialsRotatedWhileRunning: the SCRAM password changes on the
// broker. The producer's authenticated connections keep working; once it
// must reconnect (here: a broker restart) the old password fails, the
// records wait, and SetSASLCredentials with the new password lets them
// through without a restart of the producer.
func TestCredentialsRotatedWhileRunning(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Secure: true, Listener: kafkatest.SASLSSL})
	const topic = "rotate"
	createTopic(t, b, topic, 1, nil)
	grantAll(t, b, topic)
	sec := b.Security()
	sink := &logSink{}
	p := openT(t, watchConnects(secureConfig(t, b, kafkatest.SASLSSL, sink.logger(zerolog.DebugLevel))))
	ctx := testCtx(t, 3*time.Minute)

	acked := appendN(t, p, topic, 1, 100)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush before the rotation: %v", err)
	}
	const newPassword = "rotated-0f9e8d7c6b5a"
	if err := kafkatest.SetSCRAMPassword(ctx, b, sec.User, newPassword); err != nil {
		t.Fatal(err)
	}
	acked = append(acked, appendN(t, p, topic, 101, 100)...)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush on the connection authenticated before the rotation: %v", err)
	}

	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := b.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	acked = append(acked, appendN(t, p, topic, 201, 100)...)
	waitAuthFailed(t, p, sink, "SASL authentication error")
	checkOneAuthLine(t, sink, false) // the broker restart was an outage too

	if err := p.SetSASLCredentials(sec.User, newPassword); err != nil {
		t.Fatalf("SetSASLCredentials: %v", err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush after SetSASLCredentials: %v (stats %+v)", err, p.Stats())
	}
	if st := p.Stats(); st.BrokerAuthFailed || st.Delivered != 300 {
		t.Errorf("Stats after the new credentials: auth failed %v, delivered %d; want false, 300", st.BrokerAuthFailed, st.Delivered)
	}
	if strings.Contains(sink.String(), newPassword) {
		t.Error("the new password is in the log")
	}
	closeT(t, p, 10*time.Second)
	if err := p.SetSASLCredentials(sec.User, newPassword); err == nil {
		t.Error("SetSASLCredentials after Close succeeded")
	}
	verifySecure(t, b, []string{topic}, acked)
}

// TestSetSASLCredentialsNeedsSASL: on a configuration without SASL (or
// with a mechanism that takes no password) the call fails, naming the
// setting, and changes nothing. (No broker needed: nothing is sent.)
func TestSetSASLCredentialsNeedsSASL(t *testing.T) {
	cfg := kafkawal.Config{Dir: t.TempDir(), Kafka: kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}}
	p := openT(t, cfg)
	err := p.SetSASLCredentials("u", "p")
	if err == nil || !strings.Contains(err.Error(), "security.protocol") {
		t.Fatalf("SetSASLCredentials on PLAINTEXT: %v, want an error naming security.protocol", err)
	}
	cfg = kafkawal.Config{Dir: t.TempDir(), Kafka: kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"}}
	cfg.Kafka["security.protocol"] = "SASL_PLAINTEXT"
	cfg.Kafka["sasl.mechanism"] = "OAUTHBEARER"
	q := openT(t, cfg)
	if err := q.SetSASLCredentials("u", "p"); err == nil || !strings.Contains(err.Error(), "sasl.mechanism") {
		t.Fatalf("SetSASLCredentials with OAUTHBEARER: %v, want an error naming sasl.mechanism", err)
	}
}

// TestTopicAuthorizationDeadLetters: the principal may write to one topic,
// may only describe another and has no ACL at all on a third. Records for
// the two it cannot write go to the dead-letter log with
// TOPIC_AUTHORIZATION_FAILED, each once; the allowed topic's records all
// arrive, in order; Flush returns, so nothing is retried for ever.
func TestTopicAuthorizationDeadLetters(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Secure: true, Listener: kafkatest.SASLSSL})
	sec := b.Security()
	topics := []string{"allowed", "describe-only", "no-acl"}
	for _, tp := range topics {
		createTopic(t, b, tp, 1, nil)
	}
	grantAll(t, b, "allowed")
	if err := kafkatest.GrantDescribe(testCtx(t, time.Minute), b, sec.UserPrincipal, "describe-only"); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	dead := make(map[string]int)
	cfg := secureConfig(t, b, kafkatest.SASLSSL, nil)
	cfg.OnDeadLetter = func(d kafkawal.DeadLetter) {
		mu.Lock()
		defer mu.Unlock()
		if !strings.Contains(d.Err, "Topic authorization failed") || kafka.ErrorCode(d.Code) != kafka.ErrTopicAuthorizationFailed {
			t.Errorf("dead letter %d on %s: %q (code %d), want TOPIC_AUTHORIZATION_FAILED", d.Seq, d.Record.Topic, d.Err, d.Code)
		}
		dead[d.Record.Topic]++
	}
	p := openT(t, cfg)
	ctx := testCtx(t, 2*time.Minute)
	var acked []uint64
	const perTopic = 50
	for i := range perTopic {
		for j, tp := range topics {
			id := uint64(i*len(topics) + j + 1)
			if _, err := p.Append(ctx, idRecord(tp, 0, id, value(100, id))); err != nil {
				t.Fatal(err)
			}
			if tp == "allowed" {
				acked = append(acked, id)
			}
		}
	}
	// Flush returns once every record is delivered or dead-lettered, and
	// says how many were dead-lettered.
	var dle *kafkawal.DeadLetterError
	if err := p.Flush(ctx); !errors.As(err, &dle) || dle.Count != 2*perTopic {
		t.Fatalf("Flush: %v, want a DeadLetterError for %d records (stats %+v)", err, 2*perTopic, p.Stats())
	}
	st := p.Stats()
	mu.Lock()
	if dead["describe-only"] != perTopic || dead["no-acl"] != perTopic || dead["allowed"] != 0 {
		t.Errorf("dead letters per topic %v, want %d for describe-only and no-acl, 0 for allowed", dead, perTopic)
	}
	mu.Unlock()
	if st.DeadLettered != 2*perTopic || st.Delivered != perTopic || st.BrokerAuthFailed {
		t.Errorf("stats: dead-lettered %d, delivered %d, auth failed %v; want %d, %d, false", st.DeadLettered, st.Delivered, st.BrokerAuthFailed, 2*perTopic, perTopic)
	}
	closeT(t, p, 10*time.Second)
	verifySecure(t, b, []string{"allowed"}, acked)
}

// TestNoWriteAnywhere: a principal that may describe its topic but write
// to none cannot even get an idempotent producer id
// (CLUSTER_AUTHORIZATION_FAILED, a fatal error). kafkawal keeps the
// records (this is the principal's problem, not the records'), says so in
// Stats and one line, and rebuilds the producer at a slowing pace instead
// of in a loop; once the ACL is granted the records go through without a
// restart. (Without DESCRIBE either, the topic's metadata already refuses
// the records with TOPIC_AUTHORIZATION_FAILED: dead-lettered, as in
// TestTopicAuthorizationDeadLetters.)
func TestNoWriteAnywhere(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Secure: true, Listener: kafkatest.SASLSSL})
	const topic = "later"
	createTopic(t, b, topic, 1, nil)
	if err := kafkatest.GrantDescribe(testCtx(t, time.Minute), b, b.Security().UserPrincipal, topic); err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	p := openT(t, secureConfig(t, b, kafkatest.SASLSSL, sink.logger(zerolog.InfoLevel)))
	acked := appendN(t, p, topic, 1, 100)
	waitFor(t, time.Minute, "Stats.BrokerAuthFailed", func() bool { return p.Stats().BrokerAuthFailed })
	// The pace itself is TestRebuildPacing's (package sender); here: the
	// rebuilds go on, and the log says it once.
	waitFor(t, time.Minute, "two producer rebuilds", func() bool { return p.Stats().ProducerRebuilds >= 2 })
	st := p.Stats()
	if !strings.Contains(st.BrokerAuthError, "Cluster authorization failed") || st.Delivered != 0 || st.DeadLettered != 0 {
		t.Errorf("stats: %q, delivered %d, dead-lettered %d; want Cluster authorization failed, 0, 0", st.BrokerAuthError, st.Delivered, st.DeadLettered)
	}
	errs := sink.lines(atLevel("error"))
	count := map[string]int{}
	for _, m := range errs {
		count[fmt.Sprint(m["source"], m["message"])]++
	}
	for k, n := range count {
		if n > 1 {
			t.Errorf("logged %d times at error level: %s", n, k)
		}
	}

	grantAll(t, b, topic)
	if err := p.Flush(testCtx(t, 2*time.Minute)); err != nil {
		t.Fatalf("Flush after the grant: %v (stats %+v)", err, p.Stats())
	}
	closeT(t, p, 10*time.Second)
	verifySecure(t, b, []string{topic}, acked)
	if t.Failed() {
		t.Logf("log:\n%s", sink.String())
	}
}

// TestSecureConfigErrors: a secure configuration librdkafka cannot use
// fails Open with an error that names the setting and holds no secret,
// and leaves the directory free for the next Open. Open connects to no
// broker, so the embedded one (for its TLS material) serves both tiers.
func TestSecureConfigErrors(t *testing.T) {
	b, err := kafkatest.StartEmbedded(testCtx(t, time.Minute), kafkatest.Options{Secure: true, Listener: kafkatest.MTLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	sec := b.Security()
	garbage := filepath.Join(t.TempDir(), "garbage.key")
	if err := os.WriteFile(garbage, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		change  func(m kafka.ConfigMap)
		setting string
	}{
		{"SASL without a mechanism", func(m kafka.ConfigMap) {
			m["security.protocol"] = "SASL_SSL"
			m["sasl.username"], m["sasl.password"] = sec.User, sec.Password
		}, "Kafka[sasl.mechanism]"},
		{"missing CA file", func(m kafka.ConfigMap) {
			m["ssl.ca.location"] = "/nonexistent/ca.pem"
		}, "Kafka[ssl.ca.location]"},
		{"missing key file", func(m kafka.ConfigMap) {
			m["ssl.key.location"] = "/nonexistent/client.key"
		}, "Kafka[ssl.key.location]"},
		{"key file that is no key", func(m kafka.ConfigMap) {
			m["ssl.key.location"] = garbage
		}, "Kafka[ssl.key.location]"},
		{"wrong key password", func(m kafka.ConfigMap) {
			m["ssl.key.password"] = "not-the-key-password"
		}, "Kafka[ssl.key.location]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := secureConfig(t, b, kafkatest.MTLS, nil)
			c.change(cfg.Kafka)
			p, err := kafkawal.Open(cfg)
			if err == nil {
				p.Close(testCtx(t, 5*time.Second))
				t.Fatal("Open accepted the configuration")
			}
			t.Logf("Open: %v", err)
			if !strings.Contains(err.Error(), c.setting) {
				t.Errorf("error %q does not name %s", err, c.setting)
			}
			for _, secret := range []string{sec.Password, sec.ClientKeyPassword, "not-the-key-password"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q holds a secret", err)
				}
			}
			// Nothing stays open: the directory is free.
			good := secureConfig(t, b, kafkatest.MTLS, nil)
			good.Dir = cfg.Dir
			q, err := kafkawal.Open(good)
			if err != nil {
				t.Fatalf("Open after the failed one: %v", err)
			}
			closeT(t, q, 5*time.Second)
		})
	}
}
