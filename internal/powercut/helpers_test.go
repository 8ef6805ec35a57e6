package powercut

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// envChild makes the test binary a process that mounts a filesystem and
// waits to be killed (TestWatchdogUnmountsAfterKill).
const envChild = "POWERCUT_TEST_MOUNT_AND_WAIT"

func TestMain(m *testing.M) {
	if mnt := os.Getenv(envChild); mnt != "" {
		f, err := Mount(Options{Backing: mnt + ".backing", Mountpoint: mnt})
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(2)
		}
		_ = f
		os.Stdout.WriteString("mounted\n")
		select {} // until killed
	}
	os.Exit(m.Run())
}

// requireFUSE skips the test when FUSE cannot be mounted here, unless
// EnvRequireFUSE says it must run.
func requireFUSE(t testing.TB) {
	t.Helper()
	if err := Available(); err != nil {
		if os.Getenv(EnvRequireFUSE) != "" {
			t.Fatalf("%v (%s is set)", err, EnvRequireFUSE)
		}
		t.Skipf("%v; set %s=1 to make this a failure", err, EnvRequireFUSE)
	}
}

// testFS is a mount for one test; it is unmounted when the test ends,
// whatever happens.
type testFS struct {
	t       *testing.T
	backing string
	mnt     string
	meta    Metadata
	prefix  Prefix
	seed    uint64
	fs      *FS
}

// mountT mounts an empty filesystem for t. Under StrictMetadata every
// unsynced namespace change is lost at a cut (PrefixNever) unless prefix
// says otherwise.
func mountT(t *testing.T, meta Metadata, prefix ...Prefix) *testFS {
	t.Helper()
	requireFUSE(t)
	dir := t.TempDir()
	tf := &testFS{t: t, backing: filepath.Join(dir, "backing"), mnt: filepath.Join(dir, "mnt"), meta: meta, prefix: PrefixNever, seed: 1}
	if len(prefix) > 0 {
		tf.prefix = prefix[0]
	}
	if err := os.Mkdir(tf.mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	tf.mount()
	t.Cleanup(func() {
		if err := tf.fs.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		if mounted(tf.mnt) {
			t.Errorf("%s is still mounted after the test", tf.mnt)
		}
	})
	return tf
}

func (tf *testFS) mount() {
	tf.t.Helper()
	f, err := Mount(Options{Backing: tf.backing, Mountpoint: tf.mnt, Metadata: tf.meta, Prefix: tf.prefix, Seed: tf.seed})
	if err != nil {
		tf.t.Fatal(err)
	}
	tf.fs = f
}

// cut cuts the power with variant v, unmounts and mounts again from the
// durable state only.
func (tf *testFS) cut(v Variant) *CutReport {
	tf.t.Helper()
	rep, err := tf.fs.Cut(v)
	if err != nil {
		tf.t.Fatalf("cut: %v", err)
	}
	tf.remount()
	return rep
}

func (tf *testFS) remount() {
	tf.t.Helper()
	if err := tf.fs.Unmount(); err != nil {
		tf.t.Fatalf("unmount: %v", err)
	}
	tf.seed++
	tf.mount()
}

func (tf *testFS) path(name string) string { return filepath.Join(tf.mnt, name) }

// write creates (or truncates) name with data, optionally fsyncing the
// file and its directory.
func (tf *testFS) write(name string, data []byte, syncFile, syncDir bool) {
	tf.t.Helper()
	fh, err := os.OpenFile(tf.path(name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		tf.t.Fatal(err)
	}
	if _, err := fh.Write(data); err != nil {
		tf.t.Fatal(err)
	}
	if syncFile {
		if err := fh.Sync(); err != nil {
			tf.t.Fatal(err)
		}
	}
	if err := fh.Close(); err != nil {
		tf.t.Fatal(err)
	}
	if syncDir {
		tf.syncDir(filepath.Dir(name))
	}
}

// appendTo writes data at the end of name, optionally fsyncing it.
func (tf *testFS) appendTo(name string, data []byte, syncFile bool) {
	tf.t.Helper()
	fh, err := os.OpenFile(tf.path(name), os.O_RDWR, 0)
	if err != nil {
		tf.t.Fatal(err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		tf.t.Fatal(err)
	}
	if _, err := fh.WriteAt(data, fi.Size()); err != nil {
		tf.t.Fatal(err)
	}
	if syncFile {
		if err := fh.Sync(); err != nil {
			tf.t.Fatal(err)
		}
	}
}

func (tf *testFS) syncDir(name string) {
	tf.t.Helper()
	d, err := os.Open(tf.path(name))
	if err != nil {
		tf.t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		tf.t.Fatalf("fsync directory %s: %v", name, err)
	}
}

// read returns name's contents; ok is false when it does not exist.
func (tf *testFS) read(name string) ([]byte, bool) {
	tf.t.Helper()
	b, err := os.ReadFile(tf.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false
	}
	if err != nil {
		tf.t.Fatal(err)
	}
	return b, true
}

func (tf *testFS) mustRead(name string, want []byte) {
	tf.t.Helper()
	got, ok := tf.read(name)
	if !ok {
		tf.t.Fatalf("%s: gone, want %d bytes", name, len(want))
	}
	if !bytes.Equal(got, want) {
		tf.t.Fatalf("%s: %d bytes %q..., want %d bytes %q...", name, len(got), head(got), len(want), head(want))
	}
}

func (tf *testFS) mustBeGone(name string) {
	tf.t.Helper()
	if got, ok := tf.read(name); ok {
		tf.t.Fatalf("%s: exists with %d bytes, want it gone", name, len(got))
	}
}

func head(b []byte) []byte { return b[:min(len(b), 16)] }

// pattern is n bytes that differ from page to page and from seed to seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i/pageSize)*7 + byte(i%251)
		if b[i] == 0 {
			b[i] = 1 // never zero: a zero always means "not written"
		}
	}
	return b
}

// waitUnmounted waits until mnt leaves the mount table, or fails.
func waitUnmounted(t *testing.T, mnt string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for mounted(mnt) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still mounted %v later", mnt, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isEIO(err error) bool { return errors.Is(err, syscall.EIO) }
