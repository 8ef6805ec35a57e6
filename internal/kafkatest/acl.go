package kafkatest

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// GrantProducer gives principal ("User:name") what kafkawal's producer
// needs to produce to topics on a broker that enforces ACLs: ALLOW WRITE on
// each topic, from any host, and nothing else. WRITE implies DESCRIBE
// (metadata), and since Kafka 3.0 (KIP-679) WRITE on any topic also allows
// the idempotent producer's InitProducerId, which used to need
// IDEMPOTENT_WRITE on the cluster.
func GrantProducer(ctx context.Context, b Broker, principal string, topics ...string) error {
	return createACLs(ctx, b, kadm.NewACLs().Allow(principal).AllowHosts("*").
		Topics(topics...).ResourcePatternType(kadm.ACLPatternLiteral).
		Operations(kadm.OpWrite))
}

// GrantDescribe gives principal ALLOW DESCRIBE on topics only: it sees
// them in metadata and cannot write to them.
func GrantDescribe(ctx context.Context, b Broker, principal string, topics ...string) error {
	return createACLs(ctx, b, kadm.NewACLs().Allow(principal).AllowHosts("*").
		Topics(topics...).ResourcePatternType(kadm.ACLPatternLiteral).
		Operations(kadm.OpDescribe))
}

// GrantTransactional gives principal what a transactional producer (Delivery
// ExactlyOnce) needs on its transactional.id: ALLOW WRITE and DESCRIBE on
// the TransactionalId resource. Its topics need GrantProducer too.
func GrantTransactional(ctx context.Context, b Broker, principal string, transactionalIDs ...string) error {
	return createACLs(ctx, b, kadm.NewACLs().Allow(principal).AllowHosts("*").
		TransactionalIDs(transactionalIDs...).ResourcePatternType(kadm.ACLPatternLiteral).
		Operations(kadm.OpWrite, kadm.OpDescribe))
}

// GrantCheckpoint gives principal what kafkawal's exactly-once checkpoint
// needs on topic: CREATE (it is created if missing), DESCRIBE, READ (it is
// read at start) and WRITE.
func GrantCheckpoint(ctx context.Context, b Broker, principal, topic string) error {
	return createACLs(ctx, b, kadm.NewACLs().Allow(principal).AllowHosts("*").
		Topics(topic).ResourcePatternType(kadm.ACLPatternLiteral).
		Operations(kadm.OpCreate, kadm.OpDescribe, kadm.OpRead, kadm.OpWrite))
}

func createACLs(ctx context.Context, b Broker, acls *kadm.ACLBuilder) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	cl, err := kgo.NewClient(b.AdminOpts()...)
	if err != nil {
		return fmt.Errorf("kafkatest: create ACLs: %w", err)
	}
	defer cl.Close()
	res, err := kadm.NewClient(cl).CreateACLs(ctx, acls)
	if err != nil {
		return fmt.Errorf("kafkatest: create ACLs: %w", err)
	}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("kafkatest: create ACL %v %s on %s %q for %s: %w (%s)",
				r.Permission, r.Operation, r.Type, r.Name, r.Principal, r.Err, r.ErrMessage)
		}
	}
	return nil
}

// SetSCRAMPassword sets user's SCRAM-SHA-512 password on the broker, as an
// operator rotating credentials does (kafka-configs --alter
// --add-config 'SCRAM-SHA-512=[password=...]'). Connections authenticated
// before keep working until they reconnect.
func SetSCRAMPassword(ctx context.Context, b Broker, user, password string) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	cl, err := kgo.NewClient(b.AdminOpts()...)
	if err != nil {
		return fmt.Errorf("kafkatest: set SCRAM password of %s: %w", user, err)
	}
	defer cl.Close()
	res, err := kadm.NewClient(cl).AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{
		User: user, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: password,
	}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		return fmt.Errorf("kafkatest: set SCRAM password of %s: %w", user, err)
	}
	return nil
}
