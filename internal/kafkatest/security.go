package kafkatest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Listener names a kind of listener a client connects through.
type Listener string

// The listeners a broker can have. Plaintext is every broker's; the others
// come with Options.Secure.
const (
	// Plaintext is PLAINTEXT: no TLS, no authentication.
	Plaintext Listener = "plaintext"
	// SSL is TLS with a server certificate only. Clients are anonymous
	// (User:ANONYMOUS, a super user on the real broker).
	SSL Listener = "ssl"
	// MTLS is TLS with a client certificate required; the principal is
	// Security.ClientPrincipal.
	MTLS Listener = "mtls"
	// SASLSSL is SASL_SSL with SCRAM-SHA-512 as Security.User.
	SASLSSL Listener = "sasl_ssl"
	// SASLPlaintext is SASL_PLAINTEXT with PLAIN (and SCRAM-SHA-512) as
	// Security.User.
	SASLPlaintext Listener = "sasl_plaintext"
)

// SecureListeners are the listeners of a Secure broker besides Plaintext.
var SecureListeners = []Listener{SSL, MTLS, SASLSSL, SASLPlaintext}

// ParseListener returns the Listener named s.
func ParseListener(s string) (Listener, error) {
	for _, l := range append([]Listener{Plaintext}, SecureListeners...) {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("kafkatest: unknown listener %q (want plaintext, ssl, mtls, sasl_ssl or sasl_plaintext)", s)
}

// Protocol is the listener's security.protocol.
func (l Listener) Protocol() string {
	switch l {
	case SSL, MTLS:
		return "SSL"
	case SASLSSL:
		return "SASL_SSL"
	case SASLPlaintext:
		return "SASL_PLAINTEXT"
	}
	return "PLAINTEXT"
}

func (l Listener) tls() bool  { return l == SSL || l == MTLS || l == SASLSSL }
func (l Listener) sasl() bool { return l == SASLSSL || l == SASLPlaintext }

// Mechanism is the SASL mechanism ClientConfig uses on the listener, "" for
// none.
func (l Listener) Mechanism() string {
	switch l {
	case SASLSSL:
		return "SCRAM-SHA-512"
	case SASLPlaintext:
		return "PLAIN"
	}
	return ""
}

// Security is the TLS material and the SASL users of a Secure broker,
// generated when it starts (ECDSA P-256 keys, crypto/x509) in a 0700
// directory that Close removes. Files are PEM.
type Security struct {
	// Dir holds the files below.
	Dir string
	// CAFile is the CA that signed the broker's and the client's
	// certificates: ssl.ca.location.
	CAFile string
	// ClientCertFile and ClientKeyFile are the client's certificate
	// (CN=kafkawal-client) and its PKCS#8 key, encrypted with
	// ClientKeyPassword: ssl.certificate.location, ssl.key.location,
	// ssl.key.password.
	ClientCertFile, ClientKeyFile string
	ClientKeyPassword             string
	// ClientPrincipal is the client certificate's principal on MTLS:
	// "User:CN=kafkawal-client".
	ClientPrincipal string
	// User and Password are the SASL user (SCRAM-SHA-512 credential and
	// PLAIN user), not a super user: grant it ACLs (GrantProducer).
	User, Password string
	// UserPrincipal is "User:" + User.
	UserPrincipal string

	// RogueCAFile is a CA that signed nothing the broker uses: given as
	// ssl.ca.location it makes the broker's certificate untrusted.
	RogueCAFile string
	// RogueClientCertFile and RogueClientKeyFile (unencrypted) are a client
	// certificate signed by the rogue CA: the broker rejects it.
	RogueClientCertFile, RogueClientKeyFile string

	adminUser, adminPassword string // a super user (embedded broker only)

	mu         sync.Mutex
	ca         *certAuthority
	brokerCert tls.Certificate // what the broker presents
	brokerFile string          // broker.pem: PKCS#8 key then certificate
}

// ClientName is the common name of the client certificate.
const ClientName = "kafkawal-client"

// newSecurity generates the material into dir (created 0700).
func newSecurity(dir string) (*Security, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("kafkatest: security dir: %w", err)
	}
	s := &Security{
		Dir:                 dir,
		CAFile:              filepath.Join(dir, "ca.pem"),
		ClientCertFile:      filepath.Join(dir, "client.pem"),
		ClientKeyFile:       filepath.Join(dir, "client.key"),
		ClientKeyPassword:   randomSecret(),
		ClientPrincipal:     "User:CN=" + ClientName,
		User:                "kafkawal",
		Password:            randomSecret(),
		RogueCAFile:         filepath.Join(dir, "rogue-ca.pem"),
		RogueClientCertFile: filepath.Join(dir, "rogue-client.pem"),
		RogueClientKeyFile:  filepath.Join(dir, "rogue-client.key"),
		adminUser:           "admin",
		adminPassword:       randomSecret(),
		brokerFile:          filepath.Join(dir, "broker.pem"),
	}
	s.UserPrincipal = "User:" + s.User
	if err := s.generate(); err != nil {
		return nil, fmt.Errorf("kafkatest: generate TLS material: %w", err)
	}
	return s, nil
}

func (s *Security) generate() error {
	ca, err := newCA("kafkawal test CA")
	if err != nil {
		return err
	}
	s.ca = ca
	client, err := ca.issue(ClientName, false, false)
	if err != nil {
		return err
	}
	clientKey, err := encryptPKCS8(client.keyDER, s.ClientKeyPassword)
	if err != nil {
		return err
	}
	rogue, err := newCA("kafkawal rogue CA")
	if err != nil {
		return err
	}
	rogueClient, err := rogue.issue(ClientName, false, false)
	if err != nil {
		return err
	}
	files := []struct {
		path string
		data []byte
	}{
		{s.CAFile, ca.pem},
		{s.ClientCertFile, client.certPEM},
		{s.ClientKeyFile, clientKey},
		{s.RogueCAFile, rogue.pem},
		{s.RogueClientCertFile, rogueClient.certPEM},
		{s.RogueClientKeyFile, pemBlock("PRIVATE KEY", rogueClient.keyDER)},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return err
		}
	}
	return s.SetBrokerCert(false)
}

// SetBrokerCert issues the broker a new certificate from the trusted CA,
// one that expired an hour ago if expired. The real broker presents it
// from its next start (Kill and Restart it); the embedded broker on its
// next TLS handshake.
func (s *Security) SetBrokerCert(expired bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.ca.issue("localhost", true, expired)
	if err != nil {
		return err
	}
	// Kafka's PEM key store: the unencrypted PKCS#8 key, then the chain.
	pemFile := append(pemBlock("PRIVATE KEY", c.keyDER), c.certPEM...)
	if err := os.WriteFile(s.brokerFile, pemFile, 0o600); err != nil {
		return err
	}
	s.brokerCert = tls.Certificate{Certificate: [][]byte{c.der}, PrivateKey: c.key}
	return nil
}

// ClientKeyPEMBody returns the base64 lines of the client's private key
// file: what must never appear in anything a producer writes.
func (s *Security) ClientKeyPEMBody() ([]string, error) {
	b, err := os.ReadFile(s.ClientKeyFile)
	if err != nil {
		return nil, err
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && l[0] != '-' {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// clientConfig returns librdkafka settings for l at bootstrap as the
// default client identity.
func (s *Security) clientConfig(l Listener, bootstrap string) kafka.ConfigMap {
	m := kafka.ConfigMap{"bootstrap.servers": bootstrap}
	if l == Plaintext {
		return m
	}
	m["security.protocol"] = l.Protocol()
	if l.tls() {
		m["ssl.ca.location"] = s.CAFile
	}
	if l == MTLS {
		m["ssl.certificate.location"] = s.ClientCertFile
		m["ssl.key.location"] = s.ClientKeyFile
		m["ssl.key.password"] = s.ClientKeyPassword
	}
	if l.sasl() {
		m["sasl.mechanism"] = l.Mechanism()
		m["sasl.username"] = s.User
		m["sasl.password"] = s.Password
	}
	return m
}

// serverTLS is the embedded broker's TLS configuration for l.
func (s *Security) serverTLS(l Listener) (*tls.Config, error) {
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.cert)
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			c := s.brokerCert
			return &c, nil
		},
	}
	if l == MTLS {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = pool
	}
	return c, nil
}

// adminTLS is the TLS configuration of kafkatest's own clients on l: they
// trust the CA, whatever the broker certificate's validity period (a test
// may give the broker an expired one, SetBrokerCert, and still needs to
// reach it), and on MTLS present a client certificate of their own.
func (s *Security) adminTLS(l Listener) (*tls.Config, error) {
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.cert)
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below, at a time inside the certificate's validity.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("kafkatest: broker sent no certificate")
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "127.0.0.1", CurrentTime: leaf.NotBefore.Add(time.Minute)})
			return err
		},
	}
	if l == MTLS {
		admin, err := s.ca.issue("kafkatest-admin", false, false)
		if err != nil {
			return nil, err
		}
		c.Certificates = []tls.Certificate{{Certificate: [][]byte{admin.der}, PrivateKey: admin.key}}
	}
	return c, nil
}

// randomSecret is a password for test material: 32 hex digits, so that a
// scan for it finds nothing by chance.
func randomSecret() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

var errNotSecure = errors.New("kafkatest: broker was started without Options.Secure")
