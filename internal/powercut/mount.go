package powercut

import (
	"bufio"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// EnvRequireFUSE, when set, makes tests fail instead of skipping when
// Available says FUSE cannot be mounted (CI sets it).
const EnvRequireFUSE = "KAFKAWAL_REQUIRE_FUSE"

// Available reports why this process cannot mount the filesystem, or nil.
// The first call mounts and unmounts one in a temporary directory (a
// container may have root and /dev/fuse and still refuse the mount).
func Available() error {
	available.once.Do(func() { available.err = tryMount() })
	return available.err
}

var available struct {
	once sync.Once
	err  error
}

func tryMount() error {
	if os.Geteuid() != 0 {
		return errors.New("powercut: mounting FUSE directly needs root")
	}
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("powercut: /dev/fuse: %w", err)
	}
	syscall.Close(fd)
	dir, err := os.MkdirTemp("", "powercut-probe-")
	if err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	defer os.RemoveAll(dir)
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		return fmt.Errorf("powercut: %w", err)
	}
	f, err := Mount(Options{Backing: filepath.Join(dir, "backing"), Mountpoint: mnt})
	if err != nil {
		return err
	}
	return f.Unmount()
}

// fsType is the filesystem type in /proc/self/mountinfo.
const fsType = "fuse.powercut"

// maxWrite bounds one FUSE write request (the kernel splits larger
// writes).
const maxWrite = 128 << 10

// Mount loads the backing directory and mounts it at opts.Mountpoint.
// Unmount must follow; a process that dies first leaves the unmounting to
// the watchdog.
func Mount(opts Options) (*FS, error) {
	opts, err := opts.validate()
	if err != nil {
		return nil, err
	}
	sweepStale()
	if mounted(opts.Mountpoint) {
		return nil, fmt.Errorf("powercut: %s is already a mount point", opts.Mountpoint)
	}
	f := &FS{
		opts:     opts,
		storeDir: filepath.Join(opts.Backing, storeDirName),
		rng:      mrand.New(mrand.NewPCG(opts.Seed, opts.Seed^0x2545f4914f6cdd1d)),
		cutCh:    make(chan struct{}),
		dirs:     map[uint64][]fuse.DirEntry{},
		served:   make(chan struct{}),
	}
	if err := f.load(); err != nil {
		return nil, err
	}
	if err := f.mount(); err != nil {
		f.closeStores()
		return nil, err
	}
	return f, nil
}

func (f *FS) mount() error {
	// Opened here, close-on-exec, rather than by go-fuse's direct mount,
	// which leaves its descriptor to every child process.
	fd, err := syscall.Open("/dev/fuse", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("powercut: open /dev/fuse: %w", err)
	}
	source := fmt.Sprintf("powercut:%d", os.Getpid())
	data := fmt.Sprintf("fd=%d,rootmode=40000,user_id=%d,group_id=%d,max_read=%d", fd, os.Geteuid(), os.Getegid(), maxWrite)
	if err := syscall.Mount(source, f.opts.Mountpoint, fsType, syscall.MS_NOSUID|syscall.MS_NODEV, data); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("powercut: mount %s: %w", f.opts.Mountpoint, err)
	}
	// The connection's number in fusectl is the mount's device minor,
	// read from the mount table: a stat of the mount would wait for the
	// server, which is not running yet.
	conn, ok := connOf(f.opts.Mountpoint)
	if !ok {
		detach(f.opts.Mountpoint)
		syscall.Close(fd)
		return fmt.Errorf("powercut: mount %s: not in the mount table after mounting", f.opts.Mountpoint)
	}
	f.conn = conn
	// The watchdog first: from here on a dying process leaves no mount.
	if err := f.startWatchdog(); err != nil {
		detach(f.opts.Mountpoint)
		syscall.Close(fd)
		return err
	}
	srv, err := fuse.NewServer(&rawFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), f: f},
		fmt.Sprintf("/dev/fd/%d", fd), &fuse.MountOptions{
			MaxWrite: maxWrite, Name: "powercut", FsName: source,
			DisableXAttrs: true, DisableReadDirPlus: true,
		})
	if err != nil {
		detach(f.opts.Mountpoint)
		syscall.Close(fd)
		f.stopWatchdog()
		return fmt.Errorf("powercut: serve %s: %w", f.opts.Mountpoint, err)
	}
	f.srv = srv
	go func() {
		defer close(f.served)
		srv.Serve()
	}()
	if err := srv.WaitMount(); err != nil {
		f.unmount()
		return fmt.Errorf("powercut: mount %s: %w", f.opts.Mountpoint, err)
	}
	if err := f.pollHack(); err != nil {
		f.unmount()
		return err
	}
	return nil
}

// pollHack has go-fuse refuse the kernel's first FUSE_POLL, after which
// the kernel asks no more. Go registers every file it opens with epoll, and
// epoll asks a FUSE file's server: a process serving its own mount could
// otherwise deadlock on the first file it opens there. go-fuse does this
// itself only for mounts it made.
func (f *FS) pollHack() error {
	fd, err := syscall.Open(filepath.Join(f.opts.Mountpoint, ".go-fuse-epoll-hack"), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("powercut: mount %s: poll hack: %w", f.opts.Mountpoint, err)
	}
	defer syscall.Close(fd)
	_, _ = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLPRI | unix.POLLOUT}}, 0)
	return nil
}

// Unmount unmounts the filesystem. Without a cut it first makes
// everything durable (a clean shutdown); after one, the durable state is
// already in the backing directory. Processes must have closed their
// files (after a cut: be dead). A second Unmount returns nil.
func (f *FS) Unmount() error {
	f.mu.Lock()
	if f.unmounted {
		f.mu.Unlock()
		return nil
	}
	f.unmounted = true
	var errs []error
	if !f.frozen {
		f.frozen = true
		if err := f.syncAllLocked(); err != nil {
			errs = append(errs, err)
		}
		if _, err := f.writeOutLocked(); err != nil {
			errs = append(errs, err)
		}
		close(f.cutCh)
	}
	errs = append(errs, f.writeOut)
	f.mu.Unlock()
	errs = append(errs, f.unmount())
	f.closeStores()
	errs = append(errs, f.removeStores())
	return errors.Join(errs...)
}

// busyWait bounds the wait for the kernel to let go of a mount whose last
// files are being closed; unmountWait the wait for the server to stop.
const (
	busyWait    = 3 * time.Second
	unmountWait = 10 * time.Second
)

// fusectl is where the kernel lists FUSE connections.
const fusectl = "/sys/fs/fuse/connections"

// abortConn aborts FUSE connection conn through fusectl (mounting fusectl
// if it is not): every request waiting on it fails, and none is sent
// again.
func abortConn(conn uint32) error {
	path := filepath.Join(fusectl, strconv.FormatUint(uint64(conn), 10), "abort")
	if _, err := os.Stat(path); err != nil && !mounted(fusectl) {
		if merr := syscall.Mount("fusectl", fusectl, "fusectl", 0, ""); merr != nil {
			return fmt.Errorf("mount fusectl: %w", merr)
		}
	}
	return os.WriteFile(path, []byte("1"), 0)
}

func (f *FS) unmount() error {
	var err error
	deadline := time.Now().Add(busyWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		err = syscall.Unmount(f.opts.Mountpoint, 0)
		if err != syscall.EBUSY || time.Now().After(deadline) {
			break
		}
		time.Sleep(delay) // no event says when the kernel lets go
	}
	if err == syscall.EBUSY {
		// Files are still open on the mount. Never leave a mount behind:
		// abort the connection (their operations fail from now on, and
		// a process of ours that exits with them open cannot hang in
		// their flush) and detach it, and say so.
		aerr := abortConn(f.conn)
		detach(f.opts.Mountpoint)
		err = fmt.Errorf("powercut: unmount %s: files still open after %v; connection aborted (%v) and mount detached",
			f.opts.Mountpoint, busyWait, aerr)
	} else if err != nil {
		err = fmt.Errorf("powercut: unmount %s: %w", f.opts.Mountpoint, err)
	}
	if f.srv != nil {
		select {
		case <-f.served:
		case <-time.After(unmountWait):
			err = errors.Join(err, fmt.Errorf("powercut: server of %s still running %v after unmount", f.opts.Mountpoint, unmountWait))
		}
	}
	f.stopWatchdog()
	return err
}

// startWatchdog starts a shell that waits for EOF on a pipe only this
// process holds, then lazily unmounts the mount point: when this process
// dies however it dies, the mount goes with it.
func (f *FS) startWatchdog() error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("powercut: watchdog: %w", err)
	}
	// Aborting the connection first matters when this process dies with
	// files open on its own mount: its exit waits for their flush, which
	// only this process could answer.
	// A line on the pipe is a clean stop: then it does nothing, so that it
	// cannot touch a later mount that got the same connection number.
	cmd := exec.Command("/bin/sh", "-c", `read x; [ -n "$x" ] && exit 0; [ -e "$1" ] && echo 1 > "$1"; umount -l "$0" 2>/dev/null; exit 0`,
		f.opts.Mountpoint, filepath.Join(fusectl, strconv.FormatUint(uint64(f.conn), 10), "abort"))
	cmd.Stdin = pr
	// Its own process group: a signal to this process's group (Ctrl-C)
	// leaves it to do its job.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pr.Close()
	if err != nil {
		pw.Close()
		return fmt.Errorf("powercut: watchdog: %w", err)
	}
	f.watchdog, f.wdPipe = cmd, pw
	return nil
}

// stopWatchdog ends the watchdog without its doing anything, and waits for
// it, so that it cannot touch a later mount at the same place.
func (f *FS) stopWatchdog() {
	if f.watchdog == nil {
		return
	}
	_, _ = f.wdPipe.WriteString("stop\n")
	f.wdPipe.Close()
	_ = f.watchdog.Wait()
	f.watchdog = nil
}

func detach(mnt string) { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) }

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct{ point, fstype, source, dev string }

// connOf returns the FUSE connection number (device minor) of the powercut
// mount at point.
func connOf(point string) (uint32, bool) {
	for _, e := range mountTable() {
		if e.point == point && e.fstype == fsType {
			_, minor, ok := strings.Cut(e.dev, ":")
			n, err := strconv.ParseUint(minor, 10, 32)
			return uint32(n), ok && err == nil
		}
	}
	return 0, false
}

func mountTable() []mountEntry {
	fh, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []mountEntry
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+2 < len(fields) && len(fields) > 4 {
				out = append(out, mountEntry{unescape(fields[4]), fields[i+1], fields[i+2], fields[2]})
				break
			}
		}
	}
	return out
}

// unescape decodes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func mounted(point string) bool {
	for _, e := range mountTable() {
		if e.point == point {
			return true
		}
	}
	return false
}

// sweepStale detaches powercut mounts whose process is gone (the watchdog
// was killed with it).
func sweepStale() {
	for _, e := range mountTable() {
		if e.fstype != fsType {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(e.source, "powercut:"))
		if err != nil || pid <= 0 {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			detach(e.point)
		}
	}
}
