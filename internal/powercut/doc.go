// Package powercut is a FUSE filesystem for tests that forgets, when the
// power is cut, everything a real disk may forget: what was written but not
// fsync'd, and directory entries whose directory was not fsync'd.
//
// It is layered on a real directory, the backing directory, which holds the
// durable state whenever the filesystem is not mounted. Mounted, it keeps
// every change in memory until it becomes durable:
//
//   - write(2) goes to a page cache (4 KiB pages) in memory; reads see it.
//   - fsync(2) or fdatasync(2) of a file makes its data and its size
//     durable: the dirty pages are written to the file's store in the
//     backing directory (never fsync'd there: the host keeps its power).
//   - Creating, renaming, unlinking (and mkdir, rmdir) change only the
//     in-memory namespace. Under StrictMetadata (the POSIX minimum) a
//     directory's entries become durable when that directory is fsync'd;
//     under ImmediateMetadata (ext4 and most journaling filesystems in
//     practice) they are durable at once.
//   - Truncating changes the size: an fsync of the file makes it durable
//     under StrictMetadata; under ImmediateMetadata it is durable at once
//     (while growth of a file still waits for its fsync).
//
// Cut (or an armed Trigger) cuts the power: from that instant every
// operation fails with EIO, Options.OnCut runs (the place to SIGKILL the
// processes using the mount), and the durable state is written to the
// backing directory, after one variant, chosen at random per cut unless
// given, has decided what of the unsynced state reached the disk anyway:
//
//	Plain     nothing
//	Reorder   a random subset of each file's dirty pages (writeback does
//	          not keep page order): a later page can land and an earlier
//	          one not, leaving a hole of zeros or old bytes
//	Torn      each file's dirty pages in order up to a random one, which is
//	          cut at a 512-byte boundary
//	ZeroFill  each file's size, not its data: where a file grew, zeros
//
// Under StrictMetadata each cut also picks, at random, whether unsynced
// namespace changes are all lost or a random prefix of them (in the order
// they were made, as a journal commits them) reached the disk.
//
// After a cut the caller kills the processes that used the mount, calls
// Unmount, and mounts the backing directory again: the new mount starts
// from the durable state only. Unmount without a cut is a clean shutdown:
// everything is made durable first.
//
// # Mounting
//
// Mount needs root (or CAP_SYS_ADMIN) and /dev/fuse; it mounts directly,
// without fusermount. Every mount is tagged with the mounting process's pid
// (its source in /proc/self/mountinfo is "powercut:PID"), and a watchdog
// process unmounts it if that process dies without unmounting (a test
// binary killed by its timeout). Mount also detaches mounts left by dead
// processes. RequireFUSE tells a test whether it may run.
//
// While mounted, the backing directory holds the stores of the files
// (.powercut/<inode>, hard links to the loaded files) and must not be
// touched; it is the durable state again once Unmount returns.
//
// Hard links, symbolic links, extended attributes and file locks forwarded
// to the filesystem are not supported (flock(2) works: the kernel keeps
// those locks itself).
package powercut
