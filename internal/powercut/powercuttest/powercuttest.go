// Package powercuttest mounts a power-cut filesystem (package
// internal/powercut) for one test: regression tests of what a power loss
// must not take away.
package powercuttest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kafkawal/kafkawal/internal/powercut"
)

// Require skips t when FUSE cannot be mounted here, or fails it when
// powercut.EnvRequireFUSE is set (CI): a power-cut test that did not run
// must not pass for one that did.
func Require(t testing.TB) {
	t.Helper()
	if err := powercut.Available(); err != nil {
		if os.Getenv(powercut.EnvRequireFUSE) != "" {
			t.Fatalf("%v (%s is set)", err, powercut.EnvRequireFUSE)
		}
		t.Skipf("%v; set %s=1 to make this a failure", err, powercut.EnvRequireFUSE)
	}
}

// Mount is a power-cut filesystem mounted for one test.
type Mount struct {
	t    testing.TB
	opts powercut.Options
	fs   *powercut.FS
	// Dir is the mount point: the directory the code under test uses.
	Dir string
	// Backing holds the durable state while nothing is mounted.
	Backing string
}

// New mounts an empty filesystem for t, with the given metadata model and
// every unsynced namespace change lost at a cut (powercut.PrefixNever). It
// is unmounted when t ends, whatever happens.
func New(t testing.TB, meta powercut.Metadata) *Mount {
	t.Helper()
	Require(t)
	dir := t.TempDir()
	m := &Mount{t: t, Dir: filepath.Join(dir, "mnt"), Backing: filepath.Join(dir, "backing")}
	if err := os.Mkdir(m.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	m.opts = powercut.Options{Backing: m.Backing, Mountpoint: m.Dir, Metadata: meta, Prefix: powercut.PrefixNever, Seed: 1}
	m.mount()
	t.Cleanup(func() {
		if open := m.OpenFiles(); len(open) > 0 {
			t.Errorf("powercuttest: files left open on the mount (closed by aborting it): %v", open)
		}
		if err := m.fs.Unmount(); err != nil {
			t.Errorf("powercuttest: %v", err)
		}
	})
	return m
}

func (m *Mount) mount() {
	m.t.Helper()
	fs, err := powercut.Mount(m.opts)
	if err != nil {
		m.t.Fatal(err)
	}
	m.fs = fs
}

// FS is the mounted filesystem (to Arm a trigger, read Stats).
func (m *Mount) FS() *powercut.FS { return m.fs }

// Path is name inside the mount.
func (m *Mount) Path(name string) string { return filepath.Join(m.Dir, name) }

// Cut cuts the power with variant v: from now on every operation on the
// mount fails. Close what uses the mount (as a killed process would), then
// Remount.
func (m *Mount) Cut(v powercut.Variant) *powercut.CutReport {
	m.t.Helper()
	rep, err := m.fs.Cut(v)
	if err != nil {
		m.t.Fatalf("powercuttest: cut: %v", err)
	}
	return rep
}

// Remount unmounts (cleanly if there was no cut) and mounts again from the
// durable state. Nothing may have a file open on the mount.
func (m *Mount) Remount() {
	m.t.Helper()
	if open := m.OpenFiles(); len(open) > 0 {
		m.t.Fatalf("powercuttest: files still open on the mount: %v", open)
	}
	if err := m.fs.Unmount(); err != nil {
		m.t.Fatalf("powercuttest: unmount: %v", err)
	}
	m.opts.Seed++
	m.mount()
}

// OpenFiles lists this process's descriptors open on the mount: a process
// that exits with a file open on a mount it serves itself waits for ever
// for the file's flush.
func (m *Mount) OpenFiles() []string {
	des, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	var out []string
	for _, de := range des {
		p, err := os.Readlink(filepath.Join("/proc/self/fd", de.Name()))
		if err == nil && (p == m.Dir || strings.HasPrefix(p, m.Dir+"/")) {
			out = append(out, p)
		}
	}
	return out
}
