package drill

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/kafkawal/kafkawal/internal/kafkatest"
)

// Fault kinds.
const (
	faultBrokerRestart = "broker-restart"
	faultNetCut        = "net-cut"
	faultStall         = "stall-partition"
)

// plannedFault is a fault due at offset At into the kill phase.
type plannedFault struct {
	Kind string
	At   time.Duration
}

// planFaults spreads restarts broker restarts, cuts network cuts and
// stalls partition stalls uniformly over [0, span), in time order.
func planFaults(rng *rand.Rand, restarts, cuts, stalls int, span time.Duration) []plannedFault {
	var plan []plannedFault
	add := func(kind string, n int) {
		for range n {
			plan = append(plan, plannedFault{kind, time.Duration(rng.Int64N(int64(max(span, 1))))})
		}
	}
	add(faultBrokerRestart, restarts)
	add(faultNetCut, cuts)
	add(faultStall, stalls)
	slices.SortStableFunc(plan, func(a, b plannedFault) int { return cmp.Compare(a.At, b.At) })
	return plan
}

// FaultReport is one fault as injected. Times are milliseconds since the
// drill started.
type FaultReport struct {
	Kind    string  `json:"kind"`
	StartMS float64 `json:"start_ms"`
	EndMS   float64 `json:"end_ms"`
}

// faultRunner injects planned faults, one at a time, on its own goroutine.
type faultRunner struct {
	broker     kafkatest.Broker
	plan       []plannedFault
	cutFor     time.Duration
	brokerDown time.Duration
	// stallTopics: partition 0 of each stalls. On a real cluster cutting
	// off the first topic's leader stalls every topic's partitions it
	// leads; the embedded broker stalls partitions one by one, so there it
	// is every topic's (the keyed PartitionAny records of the second topic
	// must stall too, as they do on Apache Kafka).
	stallTopics []string
	stallFor    time.Duration
	t0          time.Time // the drill's start, for FaultReport times
	log         io.Writer

	finish chan struct{} // closed when the kill phase ends: run the rest now
	done   chan struct{} // closed when run returns
	faults []FaultReport // valid after done
	err    error         // valid after done
}

func newFaultRunner(b kafkatest.Broker, plan []plannedFault, cfg Config, t0 time.Time) *faultRunner {
	return &faultRunner{broker: b, plan: plan, cutFor: cfg.CutFor, brokerDown: cfg.BrokerDown,
		stallTopics: stallTopics(cfg), stallFor: cfg.StallFor, t0: t0, log: cfg.Log,
		finish: make(chan struct{}), done: make(chan struct{})}
}

// run injects every planned fault at its offset from phaseStart, or at
// once after finish is closed, until ctx ends or a fault fails. Whatever
// happens, it leaves the network healed and tries to leave the broker up.
func (f *faultRunner) run(ctx context.Context, phaseStart time.Time) {
	defer close(f.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	finish := f.finish
	for _, pf := range f.plan {
		timer.Reset(time.Until(phaseStart.Add(pf.At)))
		select {
		case <-ctx.Done():
			f.err = ctx.Err()
			return
		case <-timer.C:
		case <-finish:
			finish = nil // the rest run back to back
		}
		start := time.Now()
		var err error
		switch pf.Kind {
		case faultBrokerRestart:
			err = f.restartBroker(ctx)
		case faultNetCut:
			err = f.cutNetwork(ctx)
		case faultStall:
			err = f.stallPartition(ctx)
		}
		f.faults = append(f.faults, FaultReport{pf.Kind, ms(start.Sub(f.t0)), ms(time.Since(f.t0))})
		if err != nil {
			f.err = fmt.Errorf("drill: %s at %v: %w", pf.Kind, start.Sub(f.t0).Round(time.Millisecond), err)
			return
		}
		fmt.Fprintf(f.log, "drill: %s done (%v)\n", pf.Kind, time.Since(start).Round(time.Millisecond))
	}
}

func (f *faultRunner) restartBroker(ctx context.Context) error {
	fmt.Fprintf(f.log, "drill: killing the broker for %v\n", f.brokerDown)
	if err := f.broker.Kill(); err != nil {
		return err
	}
	t := time.NewTimer(f.brokerDown)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	// Restart even when ctx ended: the drill may still need the broker
	// to clean up, and Close works either way.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if err := f.broker.Restart(rctx); err != nil {
		return err
	}
	return ctx.Err()
}

func (f *faultRunner) cutNetwork(ctx context.Context) error {
	proxies := f.broker.Proxies()
	if len(proxies) == 0 {
		return fmt.Errorf("no fault proxy in front of the %s broker", f.broker.Kind())
	}
	fmt.Fprintf(f.log, "drill: blackholing the network for %v\n", f.cutFor)
	for _, p := range proxies {
		p.Blackhole()
		defer p.Heal()
	}
	t := time.NewTimer(f.cutFor)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// stallPartition makes partition 0 of the first topic stop accepting
// records for stallFor (see kafkatest.Broker.StallPartition).
func (f *faultRunner) stallPartition(ctx context.Context) error {
	var heals []func() error
	defer func() {
		for _, h := range heals {
			h()
		}
	}()
	for _, topic := range f.stallTopics {
		stalled, heal, err := f.broker.StallPartition(ctx, topic, 0)
		if err != nil {
			return err
		}
		heals = append(heals, heal)
		fmt.Fprintf(f.log, "drill: stalling %s partitions %v for %v\n", topic, stalled, f.stallFor)
	}
	t := time.NewTimer(f.stallFor)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	for _, h := range heals {
		if err := h(); err != nil {
			return err
		}
	}
	heals = nil
	return ctx.Err()
}

func stallTopics(cfg Config) []string {
	if cfg.Broker == "real" {
		return cfg.Topics[:1]
	}
	return cfg.Topics
}
