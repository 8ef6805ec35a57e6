package kafkatest

import (
	"context"
	"os"
	"testing"
)

// Start starts the broker kind selected by KAFKAWAL_BROKER (see Kind).
func Start(ctx context.Context, opts Options) (Broker, error) {
	if Kind() == "real" {
		return StartReal(ctx, opts)
	}
	return StartEmbedded(ctx, opts)
}

// StartT starts a broker for t, as Start does, and closes it when t ends. A
// broker that cannot start fails t: a scenario without its broker has not
// been tested, so it must not pass as skipped.
func StartT(t testing.TB, opts Options) Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	b, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("kafkatest: start %s broker (%s=%q): %v", Kind(), EnvBroker, os.Getenv(EnvBroker), err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("kafkatest: close %s broker: %v", b.Kind(), err)
		}
	})
	return b
}
