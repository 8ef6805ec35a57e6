package sender

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kafkawal/kafkawal/wal"
)

// credsReq asks the sender goroutine, which owns the producer, to replace
// the SASL credentials.
type credsReq struct {
	user, pass string
	done       chan error
}

// SetSASLCredentials replaces the SASL username and password that the
// producer authenticates with, from its next connection to each broker on,
// and in every producer a rebuild creates. Connections already
// authenticated stay as they are. This is the hook for rotating SCRAM or
// PLAIN credentials without a restart (librdkafka's
// rd_kafka_sasl_set_credentials). It fails with wal.ErrClosed after Close,
// and when the configuration does not use SASL with PLAIN or SCRAM.
func (s *Sender) SetSASLCredentials(username, password string) error {
	if err := s.saslWithPassword(); err != nil {
		return err
	}
	if username == "" {
		return errors.New("kafkawal: SetSASLCredentials: empty username")
	}
	r := credsReq{user: username, pass: password, done: make(chan error, 1)}
	select {
	case s.credsCh <- r:
	case <-s.done:
		return fmt.Errorf("kafkawal: SetSASLCredentials: %w", wal.ErrClosed)
	}
	return <-r.done
}

// saslWithPassword checks that the configuration authenticates with a
// username and password.
func (s *Sender) saslWithPassword() error {
	proto := strings.ToUpper(fmt.Sprint(s.kcfg["security.protocol"]))
	if proto != "SASL_SSL" && proto != "SASL_PLAINTEXT" {
		return errors.New("kafkawal: SetSASLCredentials: Kafka[security.protocol] is not SASL_SSL or SASL_PLAINTEXT")
	}
	mech := strings.ToUpper(fmt.Sprint(saslMechanism(s.kcfg)))
	if mech != "PLAIN" && !strings.HasPrefix(mech, "SCRAM-") {
		return errors.New("kafkawal: SetSASLCredentials: Kafka[sasl.mechanism] is not PLAIN or SCRAM-SHA-256/512")
	}
	return nil
}

// setCredentials runs on the sender goroutine. Between the close of a
// producer and a rebuild that could not make the next one there is none:
// the next one gets the credentials from kcfg.
func (s *Sender) setCredentials(r credsReq) {
	if s.p != nil {
		if err := s.p.SetSaslCredentials(r.user, r.pass); err != nil {
			r.done <- fmt.Errorf("kafkawal: SetSASLCredentials: %w", err)
			return
		}
	}
	s.kcfg["sasl.username"], s.kcfg["sasl.password"] = r.user, r.pass
	s.lg.Info().Msg("sender: SASL credentials replaced; used from the next connection on")
	r.done <- nil
}
