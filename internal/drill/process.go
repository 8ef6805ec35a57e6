package drill

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// childExitTimeout bounds the wait for a child to exit after SIGKILL and
// for its ledger pipe to reach EOF.
const childExitTimeout = 30 * time.Second

// child is one running load generator.
type child struct {
	run   int
	cmd   *exec.Cmd
	start time.Time
	tail  *tailBuffer

	done    chan struct{} // closed when Wait returned
	waitErr error         // set before done is closed

	ledgerDone chan struct{} // closed when the ledger reached EOF
	ledger     *runLedger    // set before ledgerDone is closed

	killed atomic.Bool // we sent SIGKILL (maybe from a power cut's callback)
}

// startChild starts command(args) with the ledger pipe as its fd 3.
func startChild(run int, command func([]string) *exec.Cmd, args []string, tee io.Writer) (*child, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("drill: ledger pipe: %w", err)
	}
	cmd := command(args)
	if len(cmd.ExtraFiles) > 0 {
		pr.Close()
		pw.Close()
		return nil, errors.New("drill: Command must leave ExtraFiles to the drill (fd 3 is the ledger)")
	}
	cmd.ExtraFiles = []*os.File{pw}
	c := &child{run: run, cmd: cmd, tail: newTailBuffer(16 << 10), done: make(chan struct{}), ledgerDone: make(chan struct{})}
	var out io.Writer = c.tail
	if tee != nil {
		out = io.MultiWriter(c.tail, tee)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	setChildAttrs(cmd)
	c.start = time.Now()
	err = cmd.Start()
	pw.Close() // the child's copy is the only writer left: EOF when it dies
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("drill: start child %d (%s): %w", run, cmd.Path, err)
	}
	go func() {
		c.ledger = readLedger(pr, time.Now)
		pr.Close()
		close(c.ledgerDone)
	}()
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// kill sends SIGKILL unless the child has already exited.
func (c *child) kill() error {
	select {
	case <-c.done:
		return nil
	default:
	}
	c.killed.Store(true)
	if err := c.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("drill: kill child %d (pid %d): %w", c.run, c.pid(), err)
	}
	return nil
}

// wait waits until the child has exited and its ledger is read, or
// timeout or ctx ends; on timeout or ctx it kills the child first and
// still waits (bounded) so that nothing outlives the drill.
func (c *child) wait(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	var err error
	select {
	case <-c.done:
	case <-ctx.Done():
		err = ctx.Err()
	case <-t.C:
		err = fmt.Errorf("drill: child %d (pid %d) still running after %v", c.run, c.pid(), timeout)
	}
	if err != nil {
		if kerr := c.kill(); kerr != nil {
			return errors.Join(err, kerr)
		}
		if werr := c.waitExited(childExitTimeout); werr != nil {
			return errors.Join(err, werr)
		}
		return err
	}
	return c.waitExited(childExitTimeout)
}

// waitExited waits for exit and EOF on the ledger.
func (c *child) waitExited(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		return fmt.Errorf("drill: child %d (pid %d) did not exit within %v of SIGKILL", c.run, c.pid(), timeout)
	}
	select {
	case <-c.ledgerDone:
		return nil
	case <-t.C:
		return fmt.Errorf("drill: ledger of child %d (pid %d) still open %v after it exited (a grandchild holds it?)", c.run, c.pid(), timeout)
	}
}

// exited reports whether Wait has returned.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// diedOfKill reports whether the child ended by the SIGKILL we sent.
func (c *child) diedOfKill() bool {
	if !c.killed.Load() || c.cmd.ProcessState == nil {
		return false
	}
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// status describes how the child ended.
func (c *child) status() string {
	if c.cmd.ProcessState == nil {
		return "running"
	}
	return c.cmd.ProcessState.String()
}

// tailBuffer keeps the last n bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	n   int
	buf []byte
}

func newTailBuffer(n int) *tailBuffer { return &tailBuffer{n: n} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.n; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
