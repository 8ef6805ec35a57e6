package kafkatest

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// deleteTopic deletes name and waits until metadata no longer lists it.
func deleteTopic(ctx context.Context, opts []kgo.Opt, name string) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafkatest: delete topic %q: %w", name, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	resp, err := adm.DeleteTopic(ctx, name)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("kafkatest: delete topic %q: %w", name, err)
	}
	return poll(ctx, func() (bool, error) {
		details, err := adm.ListTopics(ctx, name)
		if err != nil {
			return false, err
		}
		d, ok := details[name]
		return !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition), nil
	})
}

// addPartitions grows name to total partitions and waits until every one
// has a leader.
func addPartitions(ctx context.Context, opts []kgo.Opt, name string, total int32) error {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafkatest: add partitions to %q: %w", name, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	resps, err := adm.UpdatePartitions(ctx, int(total), name)
	if err == nil {
		var r kadm.CreatePartitionsResponse
		if r, err = resps.On(name, nil); err == nil {
			err = r.Err
		}
	}
	if err != nil {
		return fmt.Errorf("kafkatest: add partitions to %q: %w", name, err)
	}
	return poll(ctx, func() (bool, error) {
		details, err := adm.ListTopics(ctx, name)
		if err != nil {
			return false, err
		}
		d := details[name]
		if len(d.Partitions) != int(total) {
			return false, fmt.Errorf("%d of %d partitions", len(d.Partitions), total)
		}
		for _, p := range d.Partitions {
			if p.Leader < 0 {
				return false, fmt.Errorf("partition %d has no leader", p.Partition)
			}
		}
		return true, nil
	})
}

// StallPartition answers the partition's produce requests with
// NOT_ENOUGH_REPLICAS, a retriable error, until heal. With several brokers
// the partition first moves to the last broker, alone of its topic there,
// as a partition on a failing broker would be.
func (e *embedded) StallPartition(ctx context.Context, topic string, partition int32) ([]int32, func() error, error) {
	e.mu.Lock()
	c := e.cluster
	e.mu.Unlock()
	if c == nil {
		return nil, nil, errors.New("kafkatest: stall partition: the embedded broker is not running")
	}
	if c.LeaderFor(topic, partition) < 0 {
		return nil, nil, fmt.Errorf("kafkatest: stall partition: %s/%d does not exist", topic, partition)
	}
	if n := int32(len(e.addrs)); n > 1 {
		last := n - 1
		for p := int32(0); c.LeaderFor(topic, p) >= 0; p++ {
			target := int32(p % last)
			if p == partition {
				target = last
			}
			if c.LeaderFor(topic, p) != target {
				if err := c.MoveTopicPartition(topic, p, target); err != nil {
					return nil, nil, fmt.Errorf("kafkatest: stall partition: move %s/%d: %w", topic, p, err)
				}
			}
		}
	}
	h := c.Fault(kfake.Fault{
		Keys:       []kmsg.Key{kmsg.Produce},
		Topic:      topic,
		Partitions: []int32{partition},
		Err:        kerr.NotEnoughReplicas,
		Count:      -1,
	})
	return []int32{partition}, func() error { h.Remove(); return nil }, nil
}
