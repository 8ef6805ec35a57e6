package kafkatest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// quietPeriod is how long ReadAll keeps listening, once it has what it
// wanted and has reached the end of every partition, for records still on
// their way (late duplicates, above all).
const quietPeriod = 500 * time.Millisecond

// topicPartition names one partition's stream of records.
type topicPartition struct {
	topic     string
	partition int32
}

// ReadAll reads topics back from the start of every partition with its own
// kgo client (no consumer group, nothing committed), with isolation level
// read_uncommitted (kgo's default, and the Java client's): records of
// aborted and still open transactions are returned too. It returns once it
// holds at least want records, has reached the end offsets that every
// partition had at that moment, and then saw no new record for a quiet
// period; so it also returns what lies beyond want, such as duplicates.
// Records come in offset order within each partition. Transaction control
// records are not returned.
//
// If ctx ends first, ReadAll returns what it read with an error that wraps
// ctx's error and says how many records it had.
func ReadAll(ctx context.Context, bootstrap string, topics []string, want int) ([]*kgo.Record, error) {
	return ReadAllWith(ctx, []kgo.Opt{kgo.SeedBrokers(Seeds(bootstrap)...)}, topics, want)
}

// ReadCommitted is ReadAll with isolation level read_committed
// (librdkafka's default): only records of committed transactions, and
// records written outside transactions, are returned. A partition is read
// up to its last stable offset, so ReadCommitted waits for transactions
// still open below the end offsets it took (until they commit, abort, or
// time out on the broker) before it returns.
func ReadCommitted(ctx context.Context, bootstrap string, topics []string, want int) ([]*kgo.Record, error) {
	return ReadCommittedWith(ctx, []kgo.Opt{kgo.SeedBrokers(Seeds(bootstrap)...)}, topics, want)
}

// ReadCommittedWith is ReadCommitted through a client made of opts, as
// ReadAllWith.
func ReadCommittedWith(ctx context.Context, opts []kgo.Opt, topics []string, want int) ([]*kgo.Record, error) {
	return ReadAllWith(ctx, append(append([]kgo.Opt(nil), opts...), kgo.FetchIsolationLevel(kgo.ReadCommitted())), topics, want)
}

// ReadAllWith is ReadAll through a client made of opts, such as a broker's
// AdminOpts (a secure broker's listeners need TLS or SASL settings). opts
// may set the isolation level (ReadCommittedWith does); the default is
// read_uncommitted.
func ReadAllWith(ctx context.Context, opts []kgo.Opt, topics []string, want int) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Control records count in the end offsets; seeing them lets
		// us tell when a partition is fully read.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(quietPeriod/2),
	)...)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: read back %v: %w", topics, err)
	}
	defer cl.Close()

	var (
		recs    []*kgo.Record
		next    = make(map[topicPartition]int64) // offset after the last one read
		ends    map[topicPartition]int64         // end offsets once want was reached
		lastErr error
	)
	caughtUp := func() bool {
		for p, end := range ends {
			if next[p] < end {
				return false
			}
		}
		return true
	}
	fail := func(err error) ([]*kgo.Record, error) {
		if lastErr != nil {
			err = fmt.Errorf("%w (last fetch error: %v)", err, lastErr)
		}
		return recs, fmt.Errorf("kafkatest: read %d of %d records from %v: %w", len(recs), want, topics, err)
	}

	for {
		if ends == nil && len(recs) >= want {
			if ends, err = endOffsets(ctx, cl, topics); err != nil {
				return fail(err)
			}
		}
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		quiet := ends != nil && caughtUp()
		if quiet {
			pollCtx, cancel = context.WithTimeout(ctx, quietPeriod)
		}
		fetches := cl.PollFetches(pollCtx)
		cancel()
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		n := 0
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				lastErr = fmt.Errorf("%s[%d]: %w", t, p, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			next[topicPartition{r.Topic, r.Partition}] = r.Offset + 1
			if !r.Attrs.IsControl() {
				recs = append(recs, r)
				n++
			}
		})
		if quiet && n == 0 {
			return recs, nil
		}
	}
}

// endOffsets lists the high watermark of every partition of topics.
func endOffsets(ctx context.Context, cl *kgo.Client, topics []string) (map[topicPartition]int64, error) {
	offs, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	if err := offs.Error(); err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	ends := make(map[topicPartition]int64)
	offs.Each(func(o kadm.ListedOffset) {
		ends[topicPartition{o.Topic, o.Partition}] = o.Offset
	})
	return ends, nil
}

// CreateTopics creates topics on the cluster at bootstrap, each with
// partitions partitions (replication factor 1) and configs such as
// max.message.bytes, and waits until every partition of every topic has a
// leader in metadata, so that produces to them succeed.
func CreateTopics(ctx context.Context, bootstrap string, partitions int32, configs map[string]string, topics ...string) error {
	return createTopics(ctx, []kgo.Opt{kgo.SeedBrokers(Seeds(bootstrap)...)}, partitions, configs, topics...)
}

func createTopics(ctx context.Context, opts []kgo.Opt, partitions int32, configs map[string]string, topics ...string) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafkatest: create topics %v: %w", topics, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()

	cfgs := make(map[string]*string, len(configs))
	for k, v := range configs {
		cfgs[k] = kadm.StringPtr(v)
	}
	resps, err := adm.CreateTopics(ctx, partitions, 1, cfgs, topics...)
	if err != nil {
		return fmt.Errorf("kafkatest: create topics %v: %w", topics, err)
	}
	for _, r := range resps.Sorted() {
		if r.Err != nil {
			return fmt.Errorf("kafkatest: create topic %q: %w (%s)", r.Topic, r.Err, r.ErrMessage)
		}
	}

	err = poll(ctx, func() (bool, error) {
		details, err := adm.ListTopics(ctx, topics...)
		if err != nil {
			return false, err
		}
		for _, t := range topics {
			d, ok := details[t]
			switch {
			case !ok:
				return false, fmt.Errorf("topic %q not in metadata", t)
			case d.Err != nil:
				return false, fmt.Errorf("topic %q: %w", t, d.Err)
			case len(d.Partitions) != int(partitions):
				return false, fmt.Errorf("topic %q has %d of %d partitions", t, len(d.Partitions), partitions)
			}
			for _, p := range d.Partitions {
				if p.Err != nil || p.Leader < 0 {
					return false, fmt.Errorf("topic %q partition %d has no leader (%v)", t, p.Partition, p.Err)
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("kafkatest: wait for topics %v: %w", topics, err)
	}
	return nil
}
