package kafkawal_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kafkawal/kafkawal"
	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// Under ExactlyOnce on a cluster that enforces ACLs, a missing grant
// (on the TransactionalID, on the checkpoint topic) stops delivery with an
// error that names it, in Stats and from Flush, and keeps every record;
// with the grants the README lists, everything is delivered once.
func TestExactlyOnceAuthorization(t *testing.T) {
	b := kafkatest.StartT(t, kafkatest.Options{Secure: true, Listener: kafkatest.SASLSSL})
	createTopic(t, b, "eos-acl", 1, nil)
	user := b.Security().UserPrincipal
	ctx := testCtx(t, 3*time.Minute)
	if err := kafkatest.GrantProducer(ctx, b, user, "eos-acl"); err != nil {
		t.Fatal(err)
	}
	refused := func(txnID string, want ...string) {
		t.Helper()
		cfg := secureConfig(t, b, kafkatest.SASLSSL, nil)
		cfg.Delivery, cfg.TransactionalID = kafkawal.ExactlyOnce, txnID
		p := openT(t, cfg)
		appendIDs(t, p, "eos-acl", 1, 1, 20)
		waitFor(t, time.Minute, "delivery to wait for an operator", func() bool { return p.Stats().ExactlyOnceError != "" })
		st := p.Stats()
		for _, w := range want {
			if !strings.Contains(st.ExactlyOnceError, w) {
				t.Fatalf("ExactlyOnceError %q does not say %q", st.ExactlyOnceError, w)
			}
		}
		if st.Delivered != 0 || st.BacklogRecords != 20 {
			t.Fatalf("delivered %d, backlog %d; want nothing delivered, the 20 records kept", st.Delivered, st.BacklogRecords)
		}
		if err := p.Flush(ctx); err == nil || !strings.Contains(err.Error(), want[0]) {
			t.Fatalf("Flush = %v, want the error", err)
		}
		t.Logf("refused as it should: %s", st.ExactlyOnceError)
		if err := p.Close(ctx); err == nil || !strings.Contains(err.Error(), want[0]) {
			t.Fatalf("Close = %v, want the error", err)
		}
	}

	refused("eos-acl-1", "TransactionalId", "eos-acl-1")

	if err := kafkatest.GrantTransactional(ctx, b, user, "eos-acl-2"); err != nil {
		t.Fatal(err)
	}
	refused("eos-acl-2", "kafkawal-checkpoints")

	if err := kafkatest.GrantTransactional(ctx, b, user, "eos-acl-3"); err != nil {
		t.Fatal(err)
	}
	if err := kafkatest.GrantCheckpoint(ctx, b, user, "kafkawal-checkpoints"); err != nil {
		t.Fatal(err)
	}
	cfg := secureConfig(t, b, kafkatest.SASLSSL, nil)
	cfg.Delivery, cfg.TransactionalID = kafkawal.ExactlyOnce, "eos-acl-3"
	p := openT(t, cfg)
	acked := appendIDs(t, p, "eos-acl", 1, 1000, 200)
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush with every grant: %v (stats %+v)", err, p.Stats())
	}
	closeT(t, p, 30*time.Second)
	recs, err := kafkatest.ReadCommittedWith(ctx, b.AdminOpts(), []string{"eos-acl"}, len(acked))
	if err != nil {
		t.Fatal(err)
	}
	rep := kafkatest.Verify(acked, recs, recordID, nil)
	if !rep.OK() || rep.Duplicates != 0 || rep.Delivered != len(acked) {
		t.Fatalf("read_committed: %v (want the 200 of the granted producer only)", rep)
	}
}
