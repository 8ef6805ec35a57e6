package kafkawal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/rs/zerolog"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// envSecretsChild names the variable that makes the test binary run
// secretsChild (TestSecretsChildProcess) with the JSON file it names.
const envSecretsChild = "KAFKAWAL_SECRETS_CHILD"

// secretsScenario is what one child process does, at every log level.
type secretsScenario struct {
	Name  string         `json:"name"`
	Dir   string         `json:"dir"`
	Kafka map[string]any `json:"kafka"`
	// Allowed is a topic the principal may write; Denied one it may not
	// (dead letters), "" for none.
	Allowed string `json:"allowed,omitempty"`
	Denied  string `json:"denied,omitempty"`
	// AuthFails: the configured credentials are refused; the child waits
	// for Stats to say so, then sets FixUser/FixPassword. At the last
	// level it uses the refused ones again and leaves its records in the
	// WAL, for `kafkawal ship`.
	AuthFails   bool   `json:"auth_fails,omitempty"`
	FixUser     string `json:"fix_user,omitempty"`
	FixPassword string `json:"fix_password,omitempty"`
	OpenFails   bool   `json:"open_fails,omitempty"`
}

// TestSecretsNeverWritten runs secure scenarios (SASL_SSL with SCRAM,
// SASL_PLAINTEXT with PLAIN, mutual TLS with an encrypted key, refused
// credentials fixed with SetSASLCredentials, an unusable key password) in
// child processes with librdkafka's debug=all, each at every log level,
// and captures everything they write: stdout and stderr (kafkawal's and
// librdkafka's log, Stats and OpenReport as JSON, errors, dead letters as
// OnDeadLetter sees them), every file in the WAL directory, and the
// output of `kafkawal inspect`, `verify` and `dump` (records and dead
// letters) on it. The password, the key password and the body of the
// private key's PEM file appear nowhere.
func TestSecretsNeverWritten(t *testing.T) {
	ctx := testCtx(t, 10*time.Minute)
	cli := filepath.Join(t.TempDir(), "kafkawal")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", cli, "./cmd/kafkawal").CombinedOutput(); err != nil {
		t.Fatalf("build the CLI: %v\n%s", err, out)
	}
	brokers := secureBrokers(t)
	const allowed, denied = "secrets-allowed", "secrets-denied"
	for _, b := range uniqueBrokers(brokers) {
		createTopic(t, b, allowed, 1, nil)
		createTopic(t, b, denied, 1, nil)
		grantAll(t, b, allowed)
	}
	const wrongPassword = "wrong-9c1e5b7a3d2f4e6a8b0c"
	const wrongKeyPassword = "wrongkey-4a6c8e0b2d1f3a5c"

	type scenario struct {
		secretsScenario
		l kafkatest.Listener
	}
	scenarios := []scenario{
		{secretsScenario{Name: "sasl_ssl scram", Allowed: allowed, Denied: denied}, kafkatest.SASLSSL},
		{secretsScenario{Name: "sasl_plaintext plain", Allowed: allowed, Denied: denied}, kafkatest.SASLPlaintext},
		{secretsScenario{Name: "mtls encrypted key", Allowed: allowed, Denied: denied}, kafkatest.MTLS},
		{secretsScenario{Name: "sasl_ssl refused then SetSASLCredentials", Allowed: allowed, AuthFails: true}, kafkatest.SASLSSL},
		{secretsScenario{Name: "mtls wrong key password", Allowed: allowed, OpenFails: true}, kafkatest.MTLS},
	}
	var scanned, debugLines, redacted int
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			b := brokers[sc.l]
			sec := b.Security()
			cm, err := b.ClientConfig(sc.l)
			if err != nil {
				t.Fatal(err)
			}
			sc.Kafka = map[string]any{"debug": "all", "reconnect.backoff.max.ms": 1000}
			for k, v := range cm {
				sc.Kafka[k] = v
			}
			switch {
			case sc.AuthFails:
				sc.Kafka["sasl.password"] = wrongPassword
				sc.FixUser, sc.FixPassword = sec.User, sec.Password
			case sc.OpenFails:
				sc.Kafka["ssl.key.password"] = wrongKeyPassword
			}
			sc.Dir = filepath.Join(t.TempDir(), "wal")
			cfgFile := filepath.Join(t.TempDir(), "scenario.json")
			js, err := json.Marshal(sc.secretsScenario)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(cfgFile, js, 0o600); err != nil {
				t.Fatal(err)
			}

			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestSecretsChildProcess$", "-test.v")
			cmd.Env = append(os.Environ(), envSecretsChild+"="+cfgFile)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Fatalf("child: %v\n%s", err, tail(out.String(), 60))
			}
			captured := map[string][]byte{"child stdout+stderr": out.Bytes()}
			if !strings.Contains(out.String(), "SECRETS-CHILD-DONE") {
				t.Fatalf("the child did not finish:\n%s", tail(out.String(), 60))
			}
			if sc.AuthFails {
				// The child left records behind, with the refused
				// password: ship them with it (refused, NOT COMPLETE),
				// then with the right one.
				ship := func(password string, want int, timeout string) {
					args := []string{"ship", sc.Dir, "-v", "--timeout", timeout}
					for k, v := range sc.Kafka {
						if k == "sasl.password" {
							v = password
						}
						args = append(args, "-X", fmt.Sprintf("%s=%v", k, v))
					}
					cmd := exec.CommandContext(ctx, cli, args...)
					o, _ := cmd.CombinedOutput()
					captured[fmt.Sprintf("kafkawal ship (exit %d)", cmd.ProcessState.ExitCode())] = o
					if got := cmd.ProcessState.ExitCode(); got != want {
						t.Errorf("kafkawal ship: exit %d, want %d:\n%s", got, want, tail(string(o), 20))
					}
				}
				ship(wrongPassword, 1, "5s")
				ship(sec.Password, 0, "1m")
				for what, o := range captured {
					if strings.HasPrefix(what, "kafkawal ship (exit 1)") {
						t.Logf("%s:\n%s", what, tail(string(o), 4))
					}
					if strings.HasPrefix(what, "kafkawal ship (exit 1)") && !strings.Contains(string(o), "authentication with Kafka failed") {
						t.Errorf("%s does not say authentication failed:\n%s", what, tail(string(o), 20))
					}
				}
			}
			if !sc.OpenFails {
				for _, args := range [][]string{{"inspect", "--json", sc.Dir}, {"verify", sc.Dir}, {"dump", sc.Dir}, {"dump", "--dead", sc.Dir}} {
					o, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
					if err != nil {
						t.Errorf("kafkawal %s: %v\n%s", strings.Join(args, " "), err, o)
					}
					captured["kafkawal "+strings.Join(args, " ")] = o
				}
			}
			err = filepath.Walk(sc.Dir, func(path string, fi os.FileInfo, err error) error {
				if err != nil || fi.IsDir() {
					return err
				}
				b, err := os.ReadFile(path)
				captured[path] = b
				return err
			})
			if err != nil && !sc.OpenFails {
				t.Fatal(err)
			}

			secrets := map[string]string{
				"sasl.password":          sec.Password,
				"wrong sasl.password":    wrongPassword,
				"ssl.key.password":       sec.ClientKeyPassword,
				"wrong ssl.key.password": wrongKeyPassword,
			}
			body, err := sec.ClientKeyPEMBody()
			if err != nil {
				t.Fatal(err)
			}
			for i, line := range body {
				if len(line) >= 16 {
					secrets[fmt.Sprintf("private key PEM line %d", i+1)] = line
				}
			}
			for what, data := range captured {
				scanned += len(data)
				for name, secret := range secrets {
					if bytes.Contains(data, []byte(secret)) {
						t.Errorf("%s holds the %s", what, name)
					}
				}
			}
			o := out.String()
			debugLines += strings.Count(o, `"source":"librdkafka"`)
			redacted += strings.Count(o, "[redacted]")
			// debug=all really printed the configuration (librdkafka's
			// conf context), with the secrets replaced. (A producer that
			// librdkafka refuses to create logs nothing.)
			dumped := strings.Contains(o, `"tag":"CONF"`) &&
				(strings.Contains(o, "sasl.password = [redacted]") || strings.Contains(o, "ssl.key.password = [redacted]"))
			if !sc.OpenFails && !dumped {
				t.Errorf("no redacted configuration dump in the child's output: debug=all did not reach the log")
			}
		})
	}
	t.Logf("scanned %d bytes (%d librdkafka lines, %d [redacted] values), secrets found: %v", scanned, debugLines, redacted, t.Failed())
}

// uniqueBrokers lists the distinct brokers of m.
func uniqueBrokers(m map[kafkatest.Listener]kafkatest.Broker) []kafkatest.Broker {
	var out []kafkatest.Broker
	seen := make(map[kafkatest.Broker]bool)
	for _, l := range kafkatest.SecureListeners {
		if b := m[l]; !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestSecretsChildProcess is TestSecretsNeverWritten's child process; on
// its own it does nothing.
func TestSecretsChildProcess(t *testing.T) {
	file := os.Getenv(envSecretsChild)
	if file == "" {
		t.Skip("the child process of TestSecretsNeverWritten; runs only from it")
	}
	if err := secretsChild(file, os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
	fmt.Println("SECRETS-CHILD-DONE")
}

// secretsChild runs a scenario once per log level, printing to stdout
// what an application would: errors, Stats, OpenReport, dead letters.
func secretsChild(file string, stdout, stderr io.Writer) error {
	js, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var sc secretsScenario
	if err := json.Unmarshal(js, &sc); err != nil {
		return err
	}
	levels := []zerolog.Level{zerolog.TraceLevel, zerolog.DebugLevel, zerolog.InfoLevel, zerolog.WarnLevel, zerolog.ErrorLevel}
	refused := sc.Kafka["sasl.password"]
	id := uint64(0)
	for _, level := range levels {
		fmt.Fprintf(stdout, "=== %s at %s\n", sc.Name, level)
		lg := zerolog.New(stderr).Level(level).With().Timestamp().Logger()
		cfg := kafkawal.Config{Dir: sc.Dir, Kafka: kafka.ConfigMap{}, Logger: &lg,
			OnDeadLetter: func(d kafkawal.DeadLetter) {
				b, _ := json.Marshal(d)
				fmt.Fprintf(stdout, "dead letter: %s\n", b)
			},
		}
		for k, v := range sc.Kafka {
			if f, ok := v.(float64); ok {
				v = int(f)
			}
			cfg.Kafka[k] = v
		}
		p, err := kafkawal.Open(cfg)
		if err != nil {
			fmt.Fprintf(stdout, "open error: %v\n", err)
			if !sc.OpenFails {
				return err
			}
			continue
		}
		if sc.OpenFails {
			p.Close(context.Background())
			return fmt.Errorf("Open accepted the scenario's configuration")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		for _, topic := range []string{sc.Allowed, sc.Denied} {
			if topic == "" {
				continue
			}
			for range 10 {
				id++
				if _, err := p.Append(ctx, idRecord(topic, 0, id, value(50, id))); err != nil {
					cancel()
					return err
				}
			}
		}
		if sc.AuthFails && level == levels[len(levels)-1] {
			// Refused again, and closed with the records in the WAL.
			for !p.Stats().BrokerAuthFailed {
				if ctx.Err() != nil {
					cancel()
					return fmt.Errorf("authentication did not fail")
				}
				time.Sleep(10 * time.Millisecond)
			}
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			fmt.Fprintf(stdout, "close while refused: %v\n", p.Close(cctx))
			ccancel()
			cancel()
			continue
		}
		if sc.AuthFails && level == levels[0] {
			for !p.Stats().BrokerAuthFailed {
				if ctx.Err() != nil {
					cancel()
					return fmt.Errorf("authentication did not fail")
				}
				time.Sleep(10 * time.Millisecond)
			}
			st, _ := json.Marshal(p.Stats())
			fmt.Fprintf(stdout, "stats while refused: %s\n", st)
			if err := p.SetSASLCredentials(sc.FixUser, sc.FixPassword); err != nil {
				fmt.Fprintf(stdout, "SetSASLCredentials: %v\n", err)
			}
		}
		if err := p.Flush(ctx); err != nil {
			fmt.Fprintf(stdout, "flush error: %v\n", err)
		}
		st, _ := json.Marshal(p.Stats())
		rep, _ := json.Marshal(p.OpenReport())
		fmt.Fprintf(stdout, "stats: %s\nopen report: %s\n", st, rep)
		if err := p.Close(ctx); err != nil {
			fmt.Fprintf(stdout, "close error: %v\n", err)
		}
		cancel()
		// The next level reopens the directory: with refused credentials
		// fixed only by SetSASLCredentials, it would be refused again.
		if sc.AuthFails {
			if level == levels[len(levels)-2] {
				sc.Kafka["sasl.password"] = refused
			} else {
				sc.Kafka["sasl.password"] = sc.FixPassword
			}
		}
	}
	return nil
}
