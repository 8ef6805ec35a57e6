package sender

import (
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// metaFetcher asks the cluster for topics' partitions on its own
// goroutine (GetMetadata blocks), one topic at a time, for the router.
// It uses the sender's producer, so it is stopped, and waited for, before
// that producer is closed.
type metaFetcher struct {
	req  chan string
	out  chan metaAnswer
	stop chan struct{}
	done chan struct{}
}

type metaAnswer struct {
	topic string
	md    *kafka.TopicMetadata
	err   error
}

func startMeta(p *kafka.Producer) *metaFetcher {
	f := &metaFetcher{
		req:  make(chan string, 64),
		out:  make(chan metaAnswer, 64),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go f.run(p)
	return f
}

func (f *metaFetcher) run(p *kafka.Producer) {
	defer close(f.done)
	for {
		select {
		case <-f.stop:
			return
		case topic := <-f.req:
			a := metaAnswer{topic: topic}
			md, err := p.GetMetadata(&topic, false, int(metaTimeout.Milliseconds()))
			if err != nil {
				a.err = err
			} else if tm, ok := md.Topics[topic]; ok {
				a.md = &tm
			}
			select {
			case f.out <- a:
			case <-f.stop:
				return
			}
		}
	}
}

// ask requests topic's metadata; false if the request queue is full.
func (f *metaFetcher) ask(topic string) bool {
	select {
	case f.req <- topic:
		return true
	default:
		return false
	}
}

// close stops the goroutine and waits for it (at most one GetMetadata,
// bounded by metaTimeout). A second close does nothing: a rebuild whose
// new producer could not be created closes the old one again.
func (f *metaFetcher) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}
