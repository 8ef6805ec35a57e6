package sender

import "time"

// Why kafkawal's own metadata requests back off.
//
// Against a cluster that refuses connections, librdkafka's
// reconnect.backoff.ms / reconnect.backoff.max.ms do not slow its
// connection attempts down: with sparse connections, whatever needs a
// broker (a metadata request, the idempotent producer's PID request, the
// one-second "no cluster connection" timer) schedules a connection with a
// CONNECT op, and the broker thread takes that op as "expedite the next
// reconnect" and zeroes the backoff (rdkafka_broker.c, RD_KAFKA_OP_CONNECT,
// v2.11.1). A GetMetadata is worse: it waits up to metaTimeout for a
// broker, and every failed attempt in that time is a broker state change
// that schedules the next one at once. Failed requests used to be repeated
// every metaRetry, so the sender's own traffic multiplied librdkafka's
// attempts during an outage (figures in docs/brokers.md). So no request
// is made while librdkafka reports every broker down (route), one that
// fails then is asked again after metaRefresh, other failures back off
// from metaRetry doubling to metaRefresh, and the first delivery after an
// outage asks at once (retryMetaNow).

// metaBackoff returns the delay before asking again for a topic's
// metadata after a failed request, given the delay before it (0 after a
// success).
func metaBackoff(prev time.Duration, unreachable bool) time.Duration {
	if unreachable {
		return metaRefresh
	}
	return min(max(2*prev, metaRetry), metaRefresh)
}

// retryMetaNow makes every topic not being fetched ask for its metadata
// at its next record: Kafka is reachable again.
func (r *router) retryMetaNow() {
	for _, t := range r.topics {
		if !t.fetching {
			t.fetchAt, t.retry = time.Time{}, 0
		}
	}
}
