package sender

import (
	"context"
	"errors"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The transactional calls of librdkafka block (InitTransactions,
// CommitTransaction, AbortTransaction flush or wait for the coordinator),
// and while they do, the producer's events must still be drained. So each
// runs on a goroutine of its own, one at a time, and sends its result to
// the sender goroutine, which goes on draining events meanwhile.

type txnOp uint8

const (
	opInit   txnOp = iota // InitTransactions
	opRead                // make sure the checkpoint topic exists, read the checkpoint
	opCommit              // CommitTransaction
	opAbort               // AbortTransaction
)

func (o txnOp) String() string {
	return [...]string{"InitTransactions", "read checkpoint", "CommitTransaction", "AbortTransaction"}[o]
}

type txnResult struct {
	op    txnOp
	err   error
	took  time.Duration
	ckpt  Checkpoint // opRead
	found bool       // opRead
}

// txnCallTimeout bounds one call into librdkafka: on timeout it returns a
// retriable error and the call goes on in the background; calling again
// resumes waiting. Short, so that shutdown is never held longer than this
// by a call it cannot interrupt.
const txnCallTimeout = time.Second

// txnRetryPause paces retries of a retriable error that was not a timeout
// (a coordinator not available yet), and of checkpoint reads that failed
// for a reason that may pass (a broker down).
const txnRetryPause = 100 * time.Millisecond

// checkpointRetry paces new attempts to read a checkpoint found unusable
// (no authorization, another directory's): an operator may fix it.
const checkpointRetry = 30 * time.Second

// call runs fn on a goroutine; its result arrives on t.results.
func (t *txnState) call(op txnOp, fn func(ctx context.Context) txnResult) {
	t.calling = true
	ctx := t.ctx
	go func() {
		start := time.Now()
		r := fn(ctx)
		r.op, r.took = op, time.Since(start)
		t.results <- r
	}()
}

// retrying calls f until it returns nil, a non-retriable error, or ctx
// ends.
func retrying(ctx context.Context, f func(context.Context) error) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, txnCallTimeout)
		err := f(cctx)
		cancel()
		if classifyTxn(err) != txnRetry {
			return err
		}
		var ke kafka.Error
		if errors.As(err, &ke) && ke.IsTimeout() {
			if ctx.Err() != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(txnRetryPause):
		}
	}
}

func initCall(p *kafka.Producer) func(context.Context) txnResult {
	return func(ctx context.Context) txnResult {
		return txnResult{err: retrying(ctx, p.InitTransactions)}
	}
}

func commitCall(p *kafka.Producer) func(context.Context) txnResult {
	return func(ctx context.Context) txnResult {
		return txnResult{err: retrying(ctx, p.CommitTransaction)}
	}
}

func abortCall(p *kafka.Producer) func(context.Context) txnResult {
	return func(ctx context.Context) txnResult {
		return txnResult{err: retrying(ctx, p.AbortTransaction)}
	}
}

// readCall makes sure the checkpoint topic exists and reads the
// checkpoint, through an admin client and a consumer of their own (the
// admin client shares p's connections). Errors that may pass are retried
// here; it returns the checkpoint, an unusable-checkpoint error, or ctx's
// error.
func readCall(p *kafka.Producer, cs *checkpointStore, readTimeout time.Duration) func(context.Context) txnResult {
	return func(ctx context.Context) txnResult {
		adm, err := kafka.NewAdminClientFromProducer(p)
		if err != nil {
			return txnResult{err: err}
		}
		defer adm.Close()
		var last error
		for {
			if err := ctx.Err(); err != nil {
				if last != nil {
					err = errors.Join(err, last)
				}
				return txnResult{err: err}
			}
			rctx, cancel := context.WithTimeout(ctx, readTimeout)
			var r txnResult
			if r.err = cs.ensure(rctx, adm); r.err == nil {
				r.ckpt, r.found, r.err = cs.read(rctx, adm)
			}
			cancel()
			if r.err == nil || errors.Is(r.err, errNeedsOperator) {
				return r
			}
			if last == nil || last.Error() != r.err.Error() {
				cs.lg.Warn().Err(r.err).Msg("sender: cannot read the exactly-once checkpoint yet; retrying")
			}
			last = r.err
			select {
			case <-ctx.Done():
			case <-time.After(txnRetryPause):
			}
		}
	}
}
