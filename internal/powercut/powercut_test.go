package powercut

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Each test below shows one rule of the model through a real mount, so that
// a filesystem that kept too much (or lost too much) cannot pass for a
// clean result in the drill.

func TestReadsSeeUnsyncedWrites(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	data := pattern(3*pageSize+100, 1)
	tf.write("f", data, false, false)
	tf.mustRead("f", data)
	// Overwrite across a page boundary, and read a range inside.
	fh, err := os.OpenFile(tf.path("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	patch := pattern(200, 99)
	if _, err := fh.WriteAt(patch, pageSize-100); err != nil {
		t.Fatal(err)
	}
	copy(data[pageSize-100:], patch)
	got := make([]byte, 300)
	if _, err := fh.ReadAt(got, pageSize-150); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data[pageSize-150:pageSize+150]) {
		t.Fatal("a read across a page boundary does not see the write")
	}
	tf.mustRead("f", data)
}

func TestUnsyncedWriteLostAfterCut(t *testing.T) {
	for _, meta := range []Metadata{StrictMetadata, ImmediateMetadata} {
		t.Run(meta.String(), func(t *testing.T) {
			tf := mountT(t, meta)
			synced := pattern(5000, 1)
			tf.write("f", synced, true, true)
			tf.appendTo("f", []byte("written, never fsync'd"), false)
			tf.cut(Plain)
			tf.mustRead("f", synced)
		})
	}
}

func TestFsyncedDataSurvivesCut(t *testing.T) {
	for _, meta := range []Metadata{StrictMetadata, ImmediateMetadata} {
		t.Run(meta.String(), func(t *testing.T) {
			tf := mountT(t, meta)
			data := pattern(2*pageSize+7, 3)
			tf.write("f", data, true, true)
			more := pattern(pageSize, 9)
			tf.appendTo("f", more, true)
			for _, v := range []Variant{Plain, Reorder, Torn, ZeroFill} {
				tf.cut(v)
				tf.mustRead("f", append(append([]byte{}, data...), more...))
			}
		})
	}
}

func TestCreateNeedsDirFsync(t *testing.T) {
	cases := []struct {
		meta     Metadata
		syncDir  bool
		wantKept bool
	}{
		{StrictMetadata, false, false},
		{StrictMetadata, true, true},
		{ImmediateMetadata, false, true},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/dirsync=%v", tc.meta, tc.syncDir), func(t *testing.T) {
			tf := mountT(t, tc.meta)
			if err := os.Mkdir(tf.path("d"), 0o700); err != nil {
				t.Fatal(err)
			}
			tf.syncDir(".")
			data := pattern(100, 5)
			tf.write("d/f", data, true, tc.syncDir)
			tf.cut(Plain)
			if tc.wantKept {
				tf.mustRead("d/f", data)
			} else {
				tf.mustBeGone("d/f")
			}
		})
	}
}

func TestMkdirNeedsParentFsync(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	if err := os.MkdirAll(tf.path("d/e"), 0o700); err != nil {
		t.Fatal(err)
	}
	// f's entry in e and e's in d are durable; d's own name is not.
	tf.write("d/e/f", []byte("x"), true, true)
	tf.syncDir("d")
	tf.cut(Plain)
	if _, err := os.Stat(tf.path("d")); !os.IsNotExist(err) {
		t.Fatalf("d survived without an fsync of its parent: %v", err)
	}
	if err := os.MkdirAll(tf.path("d/e"), 0o700); err != nil {
		t.Fatal(err)
	}
	tf.write("d/e/f", []byte("x"), true, true)
	tf.syncDir("d")
	tf.syncDir(".")
	tf.cut(Plain)
	tf.mustRead("d/e/f", []byte("x"))
}

func TestRenameNeedsDirFsync(t *testing.T) {
	for _, meta := range []Metadata{StrictMetadata, ImmediateMetadata} {
		t.Run(meta.String(), func(t *testing.T) {
			tf := mountT(t, meta)
			old, neu := pattern(300, 1), pattern(400, 2)
			tf.write("a", old, true, true)
			tf.write("a.tmp", neu, true, false)
			if err := os.Rename(tf.path("a.tmp"), tf.path("a")); err != nil {
				t.Fatal(err)
			}
			tf.cut(Plain)
			if meta == ImmediateMetadata {
				tf.mustRead("a", neu)
			} else {
				tf.mustRead("a", old) // reverted
			}
			tf.mustBeGone("a.tmp")
		})
	}
}

func TestRenameRevertsUnlessDirSynced(t *testing.T) {
	// The same as above with the prefix ruled out by an fsync: after the
	// directory fsync the rename is durable.
	tf := mountT(t, StrictMetadata)
	old, neu := pattern(300, 1), pattern(400, 2)
	tf.write("a", old, true, true)
	tf.write("a.tmp", neu, true, false)
	if err := os.Rename(tf.path("a.tmp"), tf.path("a")); err != nil {
		t.Fatal(err)
	}
	tf.syncDir(".")
	tf.cut(Plain)
	tf.mustRead("a", neu)
	tf.mustBeGone("a.tmp")
}

func TestUnlinkNeedsDirFsync(t *testing.T) {
	for _, meta := range []Metadata{StrictMetadata, ImmediateMetadata} {
		t.Run(meta.String(), func(t *testing.T) {
			tf := mountT(t, meta)
			data := pattern(50, 4)
			tf.write("f", data, true, true)
			if err := os.Remove(tf.path("f")); err != nil {
				t.Fatal(err)
			}
			tf.cut(Plain)
			if meta == ImmediateMetadata {
				tf.mustBeGone("f")
			} else {
				tf.mustRead("f", data)
			}
		})
	}
}

func TestTruncateDurability(t *testing.T) {
	for _, meta := range []Metadata{StrictMetadata, ImmediateMetadata} {
		t.Run(meta.String(), func(t *testing.T) {
			tf := mountT(t, meta)
			data := pattern(3*pageSize, 6)
			tf.write("f", data, true, true)
			if err := os.Truncate(tf.path("f"), 100); err != nil {
				t.Fatal(err)
			}
			tf.mustRead("f", data[:100])
			tf.cut(Plain)
			if meta == ImmediateMetadata {
				tf.mustRead("f", data[:100])
			} else {
				tf.mustRead("f", data) // an fsync of the file makes a truncation durable
			}
			if err := os.Truncate(tf.path("f"), 100); err != nil {
				t.Fatal(err)
			}
			fh, err := os.OpenFile(tf.path("f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := fh.Sync(); err != nil {
				t.Fatal(err)
			}
			fh.Close()
			tf.cut(Plain)
			tf.mustRead("f", data[:100])
		})
	}
}

func TestShrinkThenGrowReadsZeros(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	data := pattern(2*pageSize, 8)
	tf.write("f", data, true, true)
	if err := os.Truncate(tf.path("f"), 10); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(tf.path("f"), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{}, data[:10]...), make([]byte, len(data)-10)...)
	tf.mustRead("f", want)
	fh, err := os.OpenFile(tf.path("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Sync(); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	tf.cut(Plain)
	tf.mustRead("f", want)
}

// TestReorderLeavesHoles: a Reorder cut persists each dirty page or not;
// over a few cuts one must persist a later page without an earlier one.
func TestReorderLeavesHoles(t *testing.T) {
	tf := mountT(t, ImmediateMetadata)
	synced := pattern(pageSize/2, 1)
	holes := 0
	for i := range 12 {
		tf.write("f", synced, true, true)
		more := pattern(4*pageSize, byte(10+i))
		tf.appendTo("f", more, false)
		full := append(append([]byte{}, synced...), more...)
		tf.cut(Reorder)
		got, _ := tf.read("f")
		if !bytes.Equal(got[:len(synced)], synced) {
			t.Fatalf("cut %d: synced bytes changed", i)
		}
		sawGap := false
		for p := 0; p*pageSize < len(got); p++ {
			end := min((p+1)*pageSize, len(got))
			seg, want := got[p*pageSize:end], full[p*pageSize:end]
			switch {
			case bytes.Equal(seg, want):
				if sawGap {
					holes++
				}
			case p == 0 && bytes.Equal(seg[:len(synced)], synced) && isZeros(seg[len(synced):]):
				sawGap = true
			case isZeros(seg):
				sawGap = true
			default:
				t.Fatalf("cut %d: page %d is neither what was written nor zeros", i, p)
			}
		}
	}
	if holes == 0 {
		t.Fatal("12 reorder cuts never persisted a page after an unpersisted one")
	}
}

// TestTornCutsAtSector: a Torn cut persists dirty pages in order, the last
// one cut at a 512-byte boundary.
func TestTornCutsAtSector(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	tf.write("f", nil, true, true)
	for i := range 6 {
		tf.write("f", nil, true, false)
		data := pattern(3*pageSize, byte(20+i))
		tf.appendTo("f", data, false)
		rep := tf.cut(Torn)
		got, _ := tf.read("f")
		if len(got) == 0 || len(got)%tearSize != 0 || len(got)%pageSize == 0 {
			t.Fatalf("cut %d: %d bytes kept, want a 512-byte multiple inside a page (%+v)", i, len(got), rep.Files)
		}
		if !bytes.Equal(got, data[:len(got)]) {
			t.Fatalf("cut %d: the kept bytes are not a prefix of what was written", i)
		}
	}
}

// TestZeroFillKeepsSizeNotData: where a file grew, a ZeroFill cut keeps
// the size and zeros.
func TestZeroFillKeepsSizeNotData(t *testing.T) {
	tf := mountT(t, ImmediateMetadata)
	synced := pattern(1000, 1)
	tf.write("f", synced, true, true)
	tf.appendTo("f", pattern(5000, 2), false)
	tf.cut(ZeroFill)
	tf.mustRead("f", append(append([]byte{}, synced...), make([]byte, 5000)...))
}

// TestMetaPrefixKeepsOrder: with StrictMetadata, a cut keeps none of the
// unsynced namespace changes or a prefix of them in the order they were
// made, never a later one without an earlier one.
func TestMetaPrefixKeepsOrder(t *testing.T) {
	tf := mountT(t, StrictMetadata, PrefixAlways)
	names := []string{"a", "b", "c", "d"}
	outcomes := map[int]int{}
	for i := range 16 {
		for _, n := range names {
			tf.write(n, []byte(n), true, false)
		}
		rep := tf.cut(Plain)
		if !rep.MetaPrefix || rep.MetaPersisted+rep.MetaLost != len(names) {
			t.Fatalf("cut %d: %+v, want a prefix of %d changes", i, rep, len(names))
		}
		kept := 0
		for j, n := range names {
			if _, ok := tf.read(n); ok {
				if kept != j {
					t.Fatalf("cut %d: %s kept after a lost earlier create", i, n)
				}
				kept++
			}
		}
		if kept != rep.MetaPersisted {
			t.Fatalf("cut %d: %d files kept, report says %d changes", i, kept, rep.MetaPersisted)
		}
		outcomes[kept]++
		for _, n := range names[:kept] {
			if err := os.Remove(tf.path(n)); err != nil {
				t.Fatal(err)
			}
		}
		tf.syncDir(".")
	}
	if outcomes[0] == 0 || outcomes[0] == 16 {
		t.Fatalf("16 cuts kept prefixes %v: want both total loss and some kept prefixes", outcomes)
	}
}

func TestEverythingFailsAfterCut(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	tf.write("f", []byte("x"), true, true)
	fh, err := os.OpenFile(tf.path("f"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := tf.fs.Cut(Plain); err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("y"), 1); !isEIO(err) {
		t.Errorf("write after the cut: %v, want EIO", err)
	}
	if err := fh.Sync(); !isEIO(err) {
		t.Errorf("fsync after the cut: %v, want EIO", err)
	}
	if g, err := os.Create(tf.path("g")); !isEIO(err) {
		t.Errorf("create after the cut: %v, want EIO", err)
		g.Close()
	}
	fh.Close()
	tf.remount()
	tf.mustRead("f", []byte("x"))
}

func TestTriggerBeforeAndAfter(t *testing.T) {
	for _, after := range []bool{false, true} {
		t.Run(fmt.Sprintf("after=%v", after), func(t *testing.T) {
			tf := mountT(t, StrictMetadata)
			tf.write("f", []byte("old"), true, true)
			killed := make(chan struct{})
			tf.fs.opts.OnCut = func() { close(killed) }
			tf.fs.Arm(Trigger{Name: "fsync of f", After: after, Variant: Plain,
				Match: func(op Op) bool { return op.Kind == OpFsync && op.Path == "f" }})
			fh, err := os.OpenFile(tf.path("f"), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fh.WriteAt([]byte("new"), 0); err != nil {
				t.Fatal(err)
			}
			err = fh.Sync()
			fh.Close()
			select {
			case <-tf.fs.Done():
			default:
				t.Fatal("the trigger did not cut")
			}
			select {
			case <-killed:
			default:
				t.Fatal("OnCut did not run")
			}
			rep := tf.fs.Report()
			if rep.Trigger != "fsync of f" || rep.Op != "fsync f" || rep.After != after {
				t.Fatalf("report %+v", rep)
			}
			if after {
				if err != nil {
					t.Fatalf("fsync that completed before the cut: %v", err)
				}
				tf.remount()
				tf.mustRead("f", []byte("new"))
			} else {
				if !isEIO(err) {
					t.Fatalf("fsync cut before it ran: %v, want EIO", err)
				}
				tf.remount()
				tf.mustRead("f", []byte("old"))
			}
		})
	}
}

func TestTriggerSkip(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	tf.fs.Arm(Trigger{Skip: 2, Match: func(op Op) bool { return op.Kind == OpCreate }})
	for i, want := range []bool{false, false, true} {
		fh, err := os.Create(tf.path(fmt.Sprint(i)))
		if err == nil {
			fh.Close()
		}
		if got := isEIO(err); got != want {
			t.Fatalf("create %d: %v, want EIO %v", i, err, want)
		}
	}
}

func TestCutReportListsFiles(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	tf.write("named", pattern(100, 1), true, true)
	tf.write("unnamed", pattern(100, 2), true, false)
	tf.appendTo("named", pattern(pageSize, 3), false)
	rep, err := tf.fs.Cut(Plain)
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]FileCut{}
	for _, fc := range rep.Files {
		byPath[fc.Path] = fc
	}
	named, unnamed := byPath["named"], byPath["unnamed"]
	if len(named.Durable) != 1 || named.Durable[0] != "named" || named.SyncedSize != 100 || named.Size != 100+pageSize ||
		named.DirtyPages == 0 || named.LastSync.IsZero() || named.KeptSize != 100 {
		t.Errorf("named: %+v", named)
	}
	if len(unnamed.Durable) != 0 {
		t.Errorf("unnamed: %+v, want no durable path", unnamed)
	}
}

func TestCleanUnmountKeepsEverything(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	if err := os.MkdirAll(tf.path("x/y"), 0o700); err != nil {
		t.Fatal(err)
	}
	data := pattern(10000, 7)
	tf.write("x/y/f", data, false, false)
	tf.remount()
	tf.mustRead("x/y/f", data)
	// The backing directory is a plain copy of the state after Unmount.
	if err := tf.fs.Unmount(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(tf.backing, "x/y/f"))
	if err != nil || !bytes.Equal(b, data) {
		t.Fatalf("backing copy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tf.backing, storeDirName)); !os.IsNotExist(err) {
		t.Fatalf("store directory left in the backing directory: %v", err)
	}
	tf.mount()
}

func TestDirectoriesAndListing(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	for _, n := range []string{"b", "a", "c"} {
		tf.write(n, []byte(n), false, false)
	}
	if err := os.Mkdir(tf.path("d"), 0o700); err != nil {
		t.Fatal(err)
	}
	des, err := os.ReadDir(tf.mnt)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	if strings.Join(names, ",") != "a,b,c,d" || !des[3].IsDir() {
		t.Fatalf("listing %v", names)
	}
	if err := os.Remove(tf.path("d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(tf.path(storeDirName), 0o700); err == nil {
		t.Fatalf("created %s, which the filesystem keeps for itself", storeDirName)
	}
}

func TestFlockWorks(t *testing.T) {
	tf := mountT(t, StrictMetadata)
	tf.write("LOCK", nil, false, false)
	a, err := os.Open(tf.path("LOCK"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := os.Open(tf.path("LOCK"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := syscall.Flock(int(a.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(b.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != syscall.EWOULDBLOCK {
		t.Fatalf("second flock: %v, want EWOULDBLOCK", err)
	}
}

// TestChildrenDoNotInheritTheDevice: a child process holding /dev/fuse
// would keep a dead server's mount alive.
func TestChildrenDoNotInheritTheDevice(t *testing.T) {
	mountT(t, StrictMetadata)
	out, err := exec.Command("/bin/sh", "-c", `ls -l /proc/$$/fd`).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "/dev/fuse") {
		t.Fatalf("a child process holds /dev/fuse:\n%s", out)
	}
}

// TestWatchdogUnmountsAfterKill: a process that dies without unmounting
// (SIGKILL, a test timeout) leaves no mount behind.
func TestWatchdogUnmountsAfterKill(t *testing.T) {
	requireFUSE(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mnt)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		detach(mnt)
	}()
	buf := make([]byte, 8)
	if n, err := out.Read(buf); err != nil || string(buf[:n]) != "mounted\n" {
		t.Fatalf("child: %q, %v", buf[:n], err)
	}
	if !mounted(mnt) {
		t.Fatal("the child's mount is not in the mount table")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	waitUnmounted(t, mnt, 10*time.Second)
}

func isZeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
