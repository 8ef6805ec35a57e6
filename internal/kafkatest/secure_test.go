package kafkatest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// secureBrokers starts what it takes to reach every secure listener: one
// real broker that has them all, or one embedded broker per listener
// (kfake has one listener).
func secureBrokers(t *testing.T, ctx context.Context) map[Listener]Broker {
	t.Helper()
	m := make(map[Listener]Broker)
	if Kind() == "real" {
		b := startRealT(t, ctx, Options{Secure: true})
		for _, l := range SecureListeners {
			m[l] = b
		}
		return m
	}
	for _, l := range SecureListeners {
		m[l] = startEmbeddedT(t, Options{Secure: true, Listener: l})
	}
	return m
}

// TestSecureListeners: a librdkafka producer configured by ClientConfig
// delivers through every secure listener, as the user ACLs were granted
// to, and an independent client reads the records back.
func TestSecureListeners(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	brokers := secureBrokers(t, ctx)
	for _, l := range SecureListeners {
		t.Run(string(l), func(t *testing.T) {
			b := brokers[l]
			sec := b.Security()
			if sec == nil {
				t.Fatal("Security() = nil on a Secure broker")
			}
			topic := "secure-" + string(l)
			if err := b.CreateTopic(ctx, topic, 1, nil); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{sec.UserPrincipal, sec.ClientPrincipal} {
				if err := GrantProducer(ctx, b, p, topic); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := b.ClientConfig(l)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg["security.protocol"]; got != l.Protocol() {
				t.Fatalf("security.protocol = %v, want %s", got, l.Protocol())
			}
			produceConfluent(t, ctx, cfg, topic, 20)
			recs, err := ReadAllWith(ctx, b.AdminOpts(), []string{topic}, 20)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range recs {
				if string(r.Value) != strconv.Itoa(i) {
					t.Fatalf("record %d is %q, want %q", i, r.Value, strconv.Itoa(i))
				}
			}
			if len(recs) != 20 {
				t.Fatalf("read %d records, want 20", len(recs))
			}
		})
	}
}

// produceConfluent produces n records valued "0".."n-1" with librdkafka
// and fails t unless every one is delivered.
func produceConfluent(t *testing.T, ctx context.Context, cfg kafka.ConfigMap, topic string, n int) {
	t.Helper()
	c := kafka.ConfigMap{"enable.idempotence": true, "go.logs.channel.enable": true}
	for k, v := range cfg {
		c[k] = v
	}
	p, err := kafka.NewProducer(&c)
	if err != nil {
		t.Fatalf("NewProducer: %v", err)
	}
	defer p.Close()
	go func() {
		for range p.Logs() {
		}
	}()
	reports := make(chan kafka.Event, n)
	for i := range n {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0},
			Value:          []byte(strconv.Itoa(i)),
		}, reports)
		if err != nil {
			t.Fatalf("Produce: %v", err)
		}
	}
	var lastErr error
	for done := 0; done < n; {
		select {
		case ev := <-reports:
			m := ev.(*kafka.Message)
			if m.TopicPartition.Error != nil {
				t.Fatalf("delivery: %v", m.TopicPartition.Error)
			}
			done++
		case ev := <-p.Events():
			if e, ok := ev.(kafka.Error); ok {
				lastErr = e
			}
		case <-ctx.Done():
			t.Fatalf("%d records not delivered: %v (last error event: %v)", n, ctx.Err(), lastErr)
		}
	}
}

// TestSecurityMaterial: the files are 0600 in a 0700 directory, the
// certificates chain to the CA (the rogue client's to the rogue CA only),
// and the client key is PKCS#8 encrypted with ClientKeyPassword.
func TestSecurityMaterial(t *testing.T) {
	s, err := newSecurity(filepath.Join(t.TempDir(), "tls"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s mode %v, want 0700", s.Dir, fi.Mode().Perm())
	}
	for _, f := range []string{s.CAFile, s.ClientCertFile, s.ClientKeyFile, s.RogueCAFile, s.RogueClientCertFile, s.RogueClientKeyFile, s.brokerFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	pool := func(f string) *x509.CertPool {
		p := x509.NewCertPool()
		if !p.AppendCertsFromPEM(readFile(t, f)) {
			t.Fatalf("%s holds no certificate", f)
		}
		return p
	}
	cert := func(f string) *x509.Certificate {
		rest := readFile(t, f)
		var b *pem.Block
		for b, rest = pem.Decode(rest); b != nil && b.Type != "CERTIFICATE"; b, rest = pem.Decode(rest) {
		}
		if b == nil {
			t.Fatalf("%s holds no certificate", f)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	client := x509.VerifyOptions{Roots: pool(s.CAFile), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := cert(s.ClientCertFile).Verify(client); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	if _, err := cert(s.RogueClientCertFile).Verify(client); err == nil {
		t.Errorf("the rogue client certificate verifies against the CA")
	}
	server := x509.VerifyOptions{Roots: pool(s.CAFile), DNSName: "127.0.0.1"}
	if _, err := cert(s.brokerFile).Verify(server); err != nil {
		t.Errorf("broker certificate: %v", err)
	}
	if err := s.SetBrokerCert(true); err != nil {
		t.Fatal(err)
	}
	if _, err := cert(s.brokerFile).Verify(server); err == nil {
		t.Errorf("the expired broker certificate verifies")
	}

	key, err := decryptPKCS8(readFile(t, s.ClientKeyFile), s.ClientKeyPassword)
	if err != nil {
		t.Fatalf("decrypt client key: %v", err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(key); err != nil {
		t.Fatalf("decrypted client key: %v", err)
	}
	// A wrong password fails the padding check, except about once in 256
	// tries, when the garbage it decrypts to happens to end in a valid
	// pad; it never yields a key that parses.
	if k, err := decryptPKCS8(readFile(t, s.ClientKeyFile), "wrong"); err == nil {
		if _, err := x509.ParsePKCS8PrivateKey(k); err == nil {
			t.Fatalf("the client key decrypts with a wrong password")
		}
	}
	body, err := s.ClientKeyPEMBody()
	if err != nil || len(body) < 2 {
		t.Fatalf("ClientKeyPEMBody = %d lines, %v", len(body), err)
	}
}

func readFile(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decryptPKCS8 undoes encryptPKCS8, independently of it.
func decryptPKCS8(pemBytes []byte, password string) ([]byte, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || blk.Type != "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("not an encrypted PKCS#8 PEM block")
	}
	var info encryptedPrivateKeyInfo
	if _, err := asn1.Unmarshal(blk.Bytes, &info); err != nil {
		return nil, err
	}
	var params pbes2Params
	if _, err := asn1.Unmarshal(info.Algo.Parameters.FullBytes, &params); err != nil {
		return nil, err
	}
	var kdf pbkdf2Params
	if _, err := asn1.Unmarshal(params.KDF.Parameters.FullBytes, &kdf); err != nil {
		return nil, err
	}
	var iv []byte
	if _, err := asn1.Unmarshal(params.Enc.Parameters.FullBytes, &iv); err != nil {
		return nil, err
	}
	if !info.Algo.Algorithm.Equal(oidPBES2) || !params.KDF.Algorithm.Equal(oidPBKDF2) ||
		!params.Enc.Algorithm.Equal(oidAES256CBC) || !kdf.PRF.Algorithm.Equal(oidHMACWithSHA256) {
		return nil, fmt.Errorf("unexpected algorithms")
	}
	dk, err := pbkdf2.Key(sha256.New, password, kdf.Salt, kdf.Iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(dk)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(info.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, info.Data)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
		return nil, fmt.Errorf("bad padding (wrong password)")
	}
	return out[:len(out)-pad], nil
}
