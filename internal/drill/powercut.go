package drill

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/kafkawal/kafkawal/internal/powercut"
)

// The power-cut drill (Config.PowerCuts) runs every child on a power-cut
// filesystem (package internal/powercut) mounted over the drill's
// directory; the child's WAL is its subdirectory walSubdir. Each run ends
// with a cut at a random instant or at a random operation of a chosen kind
// (a trigger, below): the filesystem forgets what was not durable, the
// child is SIGKILLed under the filesystem's lock (so it acknowledges
// nothing after the cut), the filesystem is unmounted and the next child
// opens what survived on a fresh mount. The drain child then runs on a
// mount that is unmounted cleanly, and the durable directory is read back
// with Kafka (see verifyPowerCuts).

// walSubdir is the WAL's directory inside the mount: a subdirectory, so
// that creating it is part of what must survive.
const walSubdir = "wal"

// segmentPath matches the mount-relative path of a WAL segment file.
var segmentPath = regexp.MustCompile(`^` + walSubdir + `/segments/[0-9]{20}$`)

func inSegments(p string) bool { return segmentPath.MatchString(p) }

// trigger kinds: the operations a cut aims at. "time" is a cut at a random
// instant; every other kind falls back to one when its operation does not
// come before the run's time is up.
type triggerKind struct {
	name   string
	weight int
	make   func(rng *mrand.Rand) powercut.Trigger
}

// trigger draws k's trigger; nil for "time".
func (k triggerKind) trigger(rng *mrand.Rand) (string, *powercut.Trigger) {
	if k.make == nil {
		return k.name, nil
	}
	t := k.make(rng)
	t.Name = k.name
	return k.name, &t
}

var triggerKinds = []triggerKind{
	{"time", 6, nil},
	{"append", 2, func(rng *mrand.Rand) powercut.Trigger {
		return powercut.Trigger{Skip: rng.IntN(200), After: rng.IntN(2) == 1,
			Match: func(op powercut.Op) bool { return op.Kind == powercut.OpWrite && inSegments(op.Path) }}
	}},
	{"group-commit", 3, func(rng *mrand.Rand) powercut.Trigger {
		return powercut.Trigger{Skip: rng.IntN(50), After: rng.IntN(2) == 1,
			Match: func(op powercut.Op) bool { return op.Kind == powercut.OpFsync && inSegments(op.Path) }}
	}},
	{"rotation", 2, func(rng *mrand.Rand) powercut.Trigger {
		return powercut.Trigger{After: rng.IntN(2) == 1, Match: func(op powercut.Op) bool {
			return op.Kind == powercut.OpCreate && inSegments(op.Path) ||
				op.Kind == powercut.OpFsyncDir && op.Path == walSubdir+"/segments"
		}}
	}},
	{"truncation", 2, func(rng *mrand.Rand) powercut.Trigger {
		return powercut.Trigger{After: rng.IntN(2) == 1,
			Match: func(op powercut.Op) bool { return op.Kind == powercut.OpUnlink && inSegments(op.Path) }}
	}},
	{"cursor", 2, func(rng *mrand.Rand) powercut.Trigger {
		return powercut.Trigger{Skip: rng.IntN(6), After: rng.IntN(2) == 1, Match: func(op powercut.Op) bool {
			return op.Kind != powercut.OpFsyncDir && strings.HasPrefix(op.Path, walSubdir+"/cursor.")
		}}
	}},
	{"dead-letter", 2, func(rng *mrand.Rand) powercut.Trigger {
		return powercut.Trigger{Skip: rng.IntN(2), After: rng.IntN(2) == 1,
			Match: func(op powercut.Op) bool { return op.Path == walSubdir+"/deadletter.log" }}
	}},
	{"repair", 2, func(rng *mrand.Rand) powercut.Trigger {
		return powercut.Trigger{Skip: rng.IntN(3), After: rng.IntN(2) == 1, Match: func(op powercut.Op) bool {
			return strings.HasPrefix(op.Path, walSubdir+"/quarantine") ||
				strings.HasSuffix(op.Path, ".repair") || strings.HasSuffix(op.To, ".repair") ||
				op.Kind == powercut.OpTruncate && inSegments(op.Path)
		}}
	}},
}

// pickTrigger draws a trigger kind; nil for "time". After a cut that may
// have left part of a segment's unsynced writes on disk the next Open may
// have something to repair, and a third of the time the repair is what the
// next cut aims at (it would rarely come up otherwise).
func pickTrigger(rng *mrand.Rand, repairDue bool) (string, *powercut.Trigger) {
	total := 0
	for _, k := range triggerKinds {
		total += k.weight
	}
	n := rng.IntN(total)
	if repairDue && rng.IntN(3) == 0 {
		n = -1
	}
	for _, k := range triggerKinds {
		if n < 0 && k.name != "repair" {
			continue
		}
		if n < k.weight {
			return k.trigger(rng)
		}
		n -= k.weight
	}
	panic("unreachable")
}

// aimAt makes a trigger of the named kind (nil for "time").
func aimAt(rng *mrand.Rand, name string) (string, *powercut.Trigger) {
	for _, k := range triggerKinds {
		if k.name == name {
			return k.trigger(rng)
		}
	}
	panic("drill: no trigger kind " + name)
}

// killer SIGKILLs the running child when the power is cut: OnCut runs
// under the filesystem's lock, so no operation of the child's after the cut
// reaches the filesystem, and the child dies before it can acknowledge an
// append the cut made fail.
type killer struct {
	begun chan struct{} // closed when onCut starts
	named chan struct{} // closed by set or abandon
	mu    sync.Mutex
	c     *child
	cut   bool
}

func newKiller() *killer {
	return &killer{begun: make(chan struct{}), named: make(chan struct{})}
}

// onCut kills the child. The child can reach the mount before the drill
// has named it: cmd.Start returns only after the exec, and on a loaded
// machine the drill's goroutine may next run after the child's Open is
// under way (CI saw a cut fire on Open's directory sync, and the child
// exit on the EIO before anyone killed it). So the operation that cut the
// power waits here, under the filesystem's lock, until the child is named;
// the child never sees the cut's error. The bound only matters if the
// drill never names a child (it failed to start one).
func (k *killer) onCut() {
	close(k.begun) // the filesystem cuts once
	select {
	case <-k.named:
	case <-time.After(childExitTimeout):
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cut = true
	if k.c != nil {
		_ = k.c.kill()
	}
}

// set names the child to kill; a cut that came first kills it now.
func (k *killer) set(c *child) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.c = c
	close(k.named)
	if k.cut {
		_ = c.kill()
	}
}

// abandon says no child will be named (starting it failed).
func (k *killer) abandon() {
	k.mu.Lock()
	defer k.mu.Unlock()
	close(k.named)
}

// mount mounts the power-cut filesystem over the drill's directory for
// run; OnCut kills that run's child.
func (d *drill) mount(run int, k *killer) (*powercut.FS, error) {
	meta, err := powercut.ParseMetadata(d.cfg.Metadata)
	if err != nil {
		return nil, err
	}
	f, err := powercut.Mount(powercut.Options{
		Backing: d.cfg.Dir, Mountpoint: d.mnt, Metadata: meta,
		Seed: d.cfg.Seed*1_000_003 + uint64(run), OnCut: k.onCut,
	})
	if err != nil {
		return nil, fmt.Errorf("drill: run %d: %w", run, err)
	}
	d.fs = f
	return f, nil
}

// unmount unmounts the run's filesystem (cleanly when it was not cut).
func (d *drill) unmount() error {
	f := d.fs
	if f == nil {
		return nil
	}
	d.fs = nil
	if err := f.Unmount(); err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	return nil
}

// cutPhase runs cfg.PowerCuts children, each ended by a power cut.
func (d *drill) cutPhase(ctx context.Context, rng *mrand.Rand, delays []time.Duration) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	repairDue := false
	for i, delay := range delays {
		run := i + 1
		k := newKiller()
		f, err := d.mount(run, k)
		if err != nil {
			return err
		}
		kind, trig := pickTrigger(rng, repairDue)
		if d.cfg.aim != "" {
			kind, trig = aimAt(rng, d.cfg.aim)
		}
		if trig != nil {
			f.Arm(*trig)
		}
		c, err := d.startChild(run, false)
		if err != nil {
			k.abandon()
			return err
		}
		if d.cfg.beforeNaming != nil {
			d.cfg.beforeNaming(run, k.begun)
		}
		k.set(c)
		timer.Reset(delay)
		early := false // the child exited before any cut
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.Done():
		case <-timer.C:
			if _, err := f.Cut(powercut.Random); err != nil {
				return fmt.Errorf("drill: run %d: %w", run, err)
			}
		case <-c.done:
			early = true
		}
		timer.Stop()
		if early {
			// Cut all the same, so that the next run starts from what
			// survived, and let the report say how this one ended.
			if _, err := f.Cut(powercut.Random); err != nil {
				return fmt.Errorf("drill: run %d: %w", run, err)
			}
		}
		if err := c.waitExited(childExitTimeout); err != nil {
			return err
		}
		if err := d.unmount(); err != nil {
			return err
		}
		cr := f.Report()
		d.finishRun(c, delay, false)
		d.addCut(run, kind, cr)
		repairDue = false
		for _, fc := range cr.Files {
			seg := false
			for _, p := range fc.Durable {
				seg = seg || inSegments(p)
			}
			repairDue = repairDue || seg && fc.DirtyPages > 0 && cr.Variant != powercut.Plain
		}
		if !c.diedOfKill() {
			d.rep.fail("run %d: child exited before the power cut: %s\n%s", run, c.status(), indent(strings.TrimRight(c.tail.String(), "\n")))
			return nil // the drain and the read-back still say what was lost
		}
	}
	return nil
}

// addCut records one cut in the report.
func (d *drill) addCut(run int, kind string, cr *powercut.CutReport) {
	pc := d.rep.PowerCut
	cs := CutSummary{Run: run, Aim: kind, Trigger: cr.Trigger, Op: cr.Op, After: cr.After,
		AtMS: ms(cr.At.Sub(d.t0)), Variant: cr.VariantName,
		MetaPrefix: cr.MetaPrefix, MetaPersisted: cr.MetaPersisted, MetaLost: cr.MetaLost}
	var synced time.Time
	for _, fc := range cr.Files {
		durable := false
		for _, p := range fc.Durable {
			durable = durable || inSegments(p)
		}
		if durable && fc.LastSync.After(synced) {
			synced = fc.LastSync
		}
		if fc.PersistedPages > 0 {
			cs.PersistedPages += fc.PersistedPages
		}
		if fc.DirtyPages > 0 {
			cs.DirtyFiles++
		}
	}
	if !synced.IsZero() {
		v := ms(synced.Sub(d.t0))
		cs.SyncedAtMS = &v
	}
	pc.Cuts = append(pc.Cuts, cs)
	pc.cutAt[run] = cr.At
	pc.syncedAt[run] = synced
	pc.Variants[cr.VariantName]++
	pc.Aims[kind]++
	if cr.Trigger != "" {
		pc.TriggersFired[cr.Trigger]++
	}
	d.logf("run %d: power cut (%s, %s%s) %s", run, kind, cr.VariantName, meta(cr), cr.Op)
}

func meta(cr *powercut.CutReport) string {
	if !cr.MetaPrefix {
		return ""
	}
	return fmt.Sprintf(", namespace prefix %d/%d", cr.MetaPersisted, cr.MetaPersisted+cr.MetaLost)
}

// setUpPowerCuts makes the mount point and the report's power-cut part.
func (d *drill) setUpPowerCuts() error {
	if err := powercut.Available(); err != nil {
		return fmt.Errorf("drill: --power-cuts: %w", err)
	}
	mnt, err := os.MkdirTemp("", "kafkawal-powercut-mnt-")
	if err != nil {
		return fmt.Errorf("drill: mount point: %w", err)
	}
	d.mnt = mnt
	d.rep.PowerCut = &PowerCutReport{
		Requested: d.cfg.PowerCuts, Metadata: d.cfg.Metadata, SegmentBytes: d.cfg.SegmentBytes,
		DeadLetterEvery: d.cfg.DeadLetterEvery, WAL: filepath.Join(d.cfg.Dir, walSubdir),
		Variants: map[string]int{}, Aims: map[string]int{}, TriggersFired: map[string]int{},
		cutAt: map[int]time.Time{}, syncedAt: map[int]time.Time{},
	}
	return nil
}

// tearDownPowerCuts unmounts whatever is mounted and removes the mount
// point.
func (d *drill) tearDownPowerCuts() error {
	if d.mnt == "" {
		return nil
	}
	err := d.unmount()
	if rerr := os.Remove(d.mnt); rerr != nil && err == nil {
		err = fmt.Errorf("drill: remove mount point: %w", rerr)
	}
	return err
}
