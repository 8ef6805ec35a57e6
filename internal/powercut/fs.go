package powercut

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Metadata is the model of when namespace changes become durable.
type Metadata int

const (
	// StrictMetadata: a directory's entries (create, rename, unlink,
	// mkdir, rmdir) are durable once that directory is fsync'd; a
	// truncation once the file is. The POSIX minimum. Default.
	StrictMetadata Metadata = iota
	// ImmediateMetadata: namespace changes and truncations are durable at
	// once, as ext4's journal makes them in practice. Data still waits for
	// an fsync.
	ImmediateMetadata
)

func (m Metadata) String() string {
	switch m {
	case StrictMetadata:
		return "strict"
	case ImmediateMetadata:
		return "immediate"
	}
	return fmt.Sprintf("Metadata(%d)", int(m))
}

// ParseMetadata reads "strict" or "immediate".
func ParseMetadata(s string) (Metadata, error) {
	for _, m := range []Metadata{StrictMetadata, ImmediateMetadata} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("powercut: metadata model %q is neither strict nor immediate", s)
}

// Variant is what of the unsynced state a cut lets reach the disk (see the
// package documentation).
type Variant int

const (
	// Random picks one of the others at each cut.
	Random Variant = iota
	Plain
	Reorder
	Torn
	ZeroFill
)

var variantNames = [...]string{"random", "plain", "reorder", "torn", "zero-fill"}

func (v Variant) String() string {
	if v >= 0 && int(v) < len(variantNames) {
		return variantNames[v]
	}
	return fmt.Sprintf("Variant(%d)", int(v))
}

// Prefix says what a cut under StrictMetadata does with the namespace
// changes no directory fsync made durable.
type Prefix int

const (
	// PrefixRandom decides at each cut between the two others.
	PrefixRandom Prefix = iota
	// PrefixNever loses them all: the POSIX minimum.
	PrefixNever
	// PrefixAlways keeps the ones made up to a random point (maybe none,
	// maybe all), in order, as a journal commits them.
	PrefixAlways
)

// OpKind names a filesystem operation a Trigger can match.
type OpKind string

// The operations a Trigger sees.
const (
	OpWrite    OpKind = "write"
	OpFsync    OpKind = "fsync" // fsync or fdatasync of a file
	OpFsyncDir OpKind = "fsyncdir"
	OpCreate   OpKind = "create"
	OpMkdir    OpKind = "mkdir"
	OpUnlink   OpKind = "unlink"
	OpRmdir    OpKind = "rmdir"
	OpRename   OpKind = "rename"
	OpTruncate OpKind = "truncate"
)

// Op is one operation, as a Trigger sees it. Paths are relative to the
// mount point, with '/' separators.
type Op struct {
	Kind OpKind
	Path string
	// To is the new path of a rename.
	To string
	// Off and Len: the range of a write; Off is the new size of a
	// truncation.
	Off, Len int64
}

func (o Op) String() string {
	switch o.Kind {
	case OpRename:
		return fmt.Sprintf("%s %s -> %s", o.Kind, o.Path, o.To)
	case OpWrite:
		return fmt.Sprintf("%s %s [%d,+%d)", o.Kind, o.Path, o.Off, o.Len)
	case OpTruncate:
		return fmt.Sprintf("%s %s to %d", o.Kind, o.Path, o.Off)
	}
	return fmt.Sprintf("%s %s", o.Kind, o.Path)
}

// Trigger cuts the power at an operation instead of at a moment.
type Trigger struct {
	// Name says what the trigger aims at, for CutReport.
	Name string
	// Match selects the operation. It runs under the filesystem's lock:
	// it must be quick and must not touch the mount.
	Match func(Op) bool
	// Skip lets that many matching operations pass first.
	Skip int
	// After cuts once the operation took effect (an fsync completed, and
	// its caller is told so); otherwise the operation fails with EIO and
	// the power is cut before it.
	After bool
	// Variant of the cut. Default Random.
	Variant Variant
}

// Options configures Mount.
type Options struct {
	// Backing is the real directory holding the durable state; created
	// 0700 if missing. Required.
	Backing string
	// Mountpoint is an existing empty directory. Required.
	Mountpoint string
	// Metadata is the durability model of namespace changes. Default
	// StrictMetadata.
	Metadata Metadata
	// Prefix says whether, under StrictMetadata, a cut may keep a prefix
	// of the unsynced namespace changes. Default PrefixRandom.
	Prefix Prefix
	// Seed seeds the random choices of cuts. Default: from the clock.
	Seed uint64
	// OnCut, if set, runs under the filesystem's lock as soon as the power
	// is cut, before the durable state is written out: the place to
	// SIGKILL the processes using the mount. It must not touch the mount.
	OnCut func()
}

// CutReport says how one cut went.
type CutReport struct {
	At      time.Time `json:"at"`
	Variant Variant   `json:"-"`
	// VariantName is Variant as text.
	VariantName string `json:"variant"`
	// Trigger names the armed trigger that fired; "" for Cut.
	Trigger string `json:"trigger,omitempty"`
	// Op is the operation the trigger cut at, and After whether it had
	// taken effect.
	Op    string `json:"op,omitempty"`
	After bool   `json:"after,omitempty"`
	// MetaPrefix (StrictMetadata): a prefix of the unsynced namespace
	// changes reached the disk; MetaPersisted and MetaLost count them.
	MetaPrefix    bool `json:"meta_prefix,omitempty"`
	MetaPersisted int  `json:"meta_persisted"`
	MetaLost      int  `json:"meta_lost"`
	// Files lists every regular file the mount knew: what it held, what
	// survived.
	Files []FileCut `json:"files"`
}

// FileCut is one file at a cut.
type FileCut struct {
	// Path is where processes saw it ("" if unlinked); Durable lists the
	// paths it has after the cut (none: it is gone).
	Path    string   `json:"path"`
	Durable []string `json:"durable,omitempty"`
	// Size is the size processes saw; SyncedSize the durable size before
	// the cut and KeptSize after it.
	Size       int64 `json:"size"`
	SyncedSize int64 `json:"synced_size"`
	KeptSize   int64 `json:"kept_size"`
	// DirtyPages were unsynced; PersistedPages of them reached the disk
	// (a torn one counts).
	DirtyPages     int `json:"dirty_pages"`
	PersistedPages int `json:"persisted_pages"`
	// LastSync is when the last completed fsync of the file started (zero:
	// none during this mount).
	LastSync time.Time `json:"last_sync"`
}

// Stats counts the operations the filesystem served.
type Stats struct {
	Writes, Fsyncs, DirFsyncs, Creates, Mkdirs, Unlinks, Rmdirs, Renames, Truncates int
	WrittenBytes                                                                    int64
}

// FS is one mount of a backing directory.
type FS struct {
	opts      Options
	storeDir  string
	mu        sync.Mutex
	m         model
	rng       *mrand.Rand
	frozen    bool
	trigger   *Trigger
	cut       *CutReport
	cutCh     chan struct{} // closed by the cut
	stats     Stats
	dirs      map[uint64][]fuse.DirEntry // open directory handles
	nextFh    uint64
	writeOut  error // error writing the durable state out, if any
	unmounted bool

	srv      *fuse.Server
	conn     uint32        // the connection's number in fusectl
	served   chan struct{} // closed when Serve returns
	watchdog *exec.Cmd
	wdPipe   *os.File
}

// storeDirName is the directory in the backing directory that holds the
// stores while mounted. It is hidden from the mount.
const storeDirName = ".powercut"

func (o Options) validate() (Options, error) {
	if o.Backing == "" || o.Mountpoint == "" {
		return o, errors.New("powercut: Options.Backing and Options.Mountpoint are required")
	}
	if o.Metadata != StrictMetadata && o.Metadata != ImmediateMetadata {
		return o, fmt.Errorf("powercut: Options.Metadata: unknown model %d", o.Metadata)
	}
	if o.Prefix < PrefixRandom || o.Prefix > PrefixAlways {
		return o, fmt.Errorf("powercut: Options.Prefix: unknown mode %d", o.Prefix)
	}
	var err error
	if o.Backing, err = filepath.Abs(o.Backing); err != nil {
		return o, err
	}
	if o.Mountpoint, err = filepath.Abs(o.Mountpoint); err != nil {
		return o, err
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	return o, nil
}

// Cut cuts the power now with variant v (Random: one at random) and
// returns what happened. A second Cut returns the first one's report.
func (f *FS) Cut(v Variant) (*CutReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.frozen {
		f.cutLocked(v, nil, nil, false)
	}
	return f.cut, f.writeOut
}

// Arm makes the next operation t matches cut the power (replacing any
// armed trigger). Done tells when it fired.
func (f *FS) Arm(t Trigger) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trigger = &t
}

// Done is closed when the power was cut (by Cut or a trigger), or by
// Unmount.
func (f *FS) Done() <-chan struct{} { return f.cutCh }

// Report returns the cut's report, or nil before a cut.
func (f *FS) Report() *CutReport {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cut
}

// Stats returns the operations served so far.
func (f *FS) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}

// Mountpoint returns where the filesystem is mounted.
func (f *FS) Mountpoint() string { return f.opts.Mountpoint }

// checkOp counts op and applies the armed trigger to it: before reports
// that the power is cut now (the operation must fail with EIO), after
// that it is cut once the operation took effect (call cutAfter).
func (f *FS) checkOp(op Op) (before bool, after *Trigger) {
	t := f.trigger
	if t == nil || !t.Match(op) {
		return false, nil
	}
	if t.Skip > 0 {
		t.Skip--
		return false, nil
	}
	f.trigger = nil
	if t.After {
		return false, t
	}
	f.cutLocked(t.Variant, t, &op, false)
	return true, nil
}

// cutAfter cuts for a trigger whose operation took effect.
func (f *FS) cutAfter(t *Trigger, op Op) {
	if t != nil && !f.frozen {
		f.cutLocked(t.Variant, t, &op, true)
	}
}
