package powercut

import (
	"maps"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// rawFS serves the FUSE protocol from the model. Every request takes the
// filesystem's one lock; after a cut every request fails with EIO.
type rawFS struct {
	fuse.RawFileSystem // ENOSYS for what is not implemented here
	f                  *FS
}

// cacheTTL is how long the kernel may cache entries and attributes. Every
// change goes through the kernel, so its caches stay true; a new mount
// starts with empty ones.
const cacheTTL = time.Second

func (r *rawFS) String() string { return "powercut" }

// enter takes the lock and finds the request's node. The caller unlocks
// (also when the status is not OK).
func (r *rawFS) enter(ino uint64) (*node, fuse.Status) {
	r.f.mu.Lock()
	if r.f.frozen {
		return nil, fuse.Status(errFrozen)
	}
	n := r.f.m.nodes[ino]
	if n == nil {
		return nil, fuse.ENOENT
	}
	return n, fuse.OK
}

func (r *rawFS) leave() { r.f.mu.Unlock() }

func fillAttr(a *fuse.Attr, n *node) {
	*a = fuse.Attr{Ino: n.ino, Mode: n.kind() | n.mode, Nlink: 1, Blksize: pageSize}
	if n.dir {
		a.Nlink = 2
	} else {
		a.Size = uint64(n.size)
		a.Blocks = (a.Size + 511) / 512
	}
	a.SetTimes(&n.mtime, &n.mtime, &n.ctime)
}

func fillEntry(out *fuse.EntryOut, n *node) {
	out.NodeId, out.Generation = n.ino, 1
	fillAttr(&out.Attr, n)
	out.SetEntryTimeout(cacheTTL)
	out.SetAttrTimeout(cacheTTL)
}

func (r *rawFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	dir, st := r.enter(h.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	n := dir.entries[name]
	if n == nil {
		return fuse.ENOENT
	}
	fillEntry(out, n)
	return fuse.OK
}

func (r *rawFS) Forget(uint64, uint64) {} // nodes live as long as the mount

func (r *rawFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	fillAttr(&out.Attr, n)
	out.SetTimeout(cacheTTL)
	return fuse.OK
}

func (r *rawFS) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	n, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	now := time.Now()
	if in.Valid&fuse.FATTR_SIZE != 0 {
		if n.dir {
			return fuse.Status(syscall.EISDIR)
		}
		op := Op{Kind: OpTruncate, Path: n.path(), Off: int64(in.Size)}
		r.f.stats.Truncates++
		before, after := r.f.checkOp(op)
		if before {
			return fuse.Status(errFrozen)
		}
		if err := n.truncate(int64(in.Size), !r.f.m.strict); err != nil {
			return fuse.ToStatus(err)
		}
		n.mtime, n.ctime = now, now
		r.f.cutAfter(after, op)
	}
	if in.Valid&fuse.FATTR_MODE != 0 {
		n.mode = in.Mode & 0o7777
		n.ctime = now
		if n.store != nil {
			_ = n.store.Chmod(modePerm(n.mode))
		}
	}
	if in.Valid&fuse.FATTR_MTIME != 0 {
		n.mtime = time.Unix(int64(in.Mtime), int64(in.Mtimensec))
	}
	if in.Valid&fuse.FATTR_MTIME_NOW != 0 {
		n.mtime = now
	}
	fillAttr(&out.Attr, n)
	out.SetTimeout(cacheTTL)
	return fuse.OK
}

// create makes a file or directory called name in dir.
func (r *rawFS) create(dirIno uint64, name string, isDir bool, mode uint32, out *fuse.EntryOut) (*node, fuse.Status) {
	dir, st := r.enter(dirIno)
	if !st.Ok() {
		return nil, st
	}
	if !dir.dir {
		return nil, fuse.ENOTDIR
	}
	if err := r.f.m.checkName(dir, name); err != nil {
		return nil, fuse.ToStatus(err)
	}
	if dir.entries[name] != nil {
		return nil, fuse.Status(syscall.EEXIST)
	}
	kind := OpCreate
	if isDir {
		kind = OpMkdir
		r.f.stats.Mkdirs++
	} else {
		r.f.stats.Creates++
	}
	op := Op{Kind: kind, Path: join(dir.path(), name)}
	before, after := r.f.checkOp(op)
	if before {
		return nil, fuse.Status(errFrozen)
	}
	n := r.f.m.newNode(isDir, mode, time.Now())
	if !isDir {
		if err := r.f.newStore(n); err != nil {
			delete(r.f.m.nodes, n.ino)
			return nil, fuse.ToStatus(err)
		}
	}
	r.f.m.link(dir, name, n, r.f.m.nextSeq())
	fillEntry(out, n)
	r.f.cutAfter(after, op)
	return n, fuse.OK
}

func (r *rawFS) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.EPERM
	}
	defer r.leave()
	_, st := r.create(in.NodeId, name, false, in.Mode, out)
	return st
}

func (r *rawFS) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	defer r.leave()
	_, st := r.create(in.NodeId, name, true, in.Mode, out)
	return st
}

func (r *rawFS) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	defer r.leave()
	_, st := r.create(in.NodeId, name, false, in.Mode, &out.EntryOut)
	return st
}

// remove unlinks name from dir: a file (Unlink) or an empty directory
// (Rmdir).
func (r *rawFS) remove(dirIno uint64, name string, isDir bool) fuse.Status {
	dir, st := r.enter(dirIno)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	n := dir.entries[name]
	switch {
	case n == nil:
		return fuse.ENOENT
	case isDir && !n.dir:
		return fuse.ENOTDIR
	case !isDir && n.dir:
		return fuse.Status(syscall.EISDIR)
	case isDir && len(n.entries) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	kind := OpUnlink
	if isDir {
		kind = OpRmdir
		r.f.stats.Rmdirs++
	} else {
		r.f.stats.Unlinks++
	}
	op := Op{Kind: kind, Path: n.path()}
	before, after := r.f.checkOp(op)
	if before {
		return fuse.Status(errFrozen)
	}
	r.f.m.link(dir, name, nil, r.f.m.nextSeq())
	r.f.cutAfter(after, op)
	return fuse.OK
}

func (r *rawFS) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return r.remove(h.NodeId, name, false)
}

func (r *rawFS) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return r.remove(h.NodeId, name, true)
}

// renameNoReplace is RENAME_NOREPLACE of renameat2(2).
const renameNoReplace = 1

func (r *rawFS) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	from, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	to := r.f.m.nodes[in.Newdir]
	switch {
	case to == nil:
		return fuse.ENOENT
	case in.Flags&^renameNoReplace != 0:
		return fuse.EINVAL
	}
	if err := r.f.m.checkName(to, newName); err != nil {
		return fuse.ToStatus(err)
	}
	n, old := from.entries[oldName], to.entries[newName]
	switch {
	case n == nil:
		return fuse.ENOENT
	case old == n:
		return fuse.OK
	case old != nil && in.Flags&renameNoReplace != 0:
		return fuse.Status(syscall.EEXIST)
	case old != nil && n.dir && !old.dir:
		return fuse.ENOTDIR
	case old != nil && !n.dir && old.dir:
		return fuse.Status(syscall.EISDIR)
	case old != nil && old.dir && len(old.entries) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	r.f.stats.Renames++
	op := Op{Kind: OpRename, Path: n.path(), To: join(to.path(), newName)}
	before, after := r.f.checkOp(op)
	if before {
		return fuse.Status(errFrozen)
	}
	seq := r.f.m.nextSeq()
	r.f.m.link(from, oldName, nil, seq)
	r.f.m.link(to, newName, n, seq)
	n.ctime = time.Now()
	r.f.cutAfter(after, op)
	return fuse.OK
}

func (r *rawFS) Link(<-chan struct{}, *fuse.LinkIn, string, *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (r *rawFS) Symlink(<-chan struct{}, *fuse.InHeader, string, string, *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (r *rawFS) Access(_ <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	_, st := r.enter(in.NodeId)
	defer r.leave()
	return st
}

func (r *rawFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	if n.dir {
		return fuse.Status(syscall.EISDIR)
	}
	if in.Flags&syscall.O_TRUNC != 0 && n.size > 0 {
		op := Op{Kind: OpTruncate, Path: n.path()}
		r.f.stats.Truncates++
		before, after := r.f.checkOp(op)
		if before {
			return fuse.Status(errFrozen)
		}
		if err := n.truncate(0, !r.f.m.strict); err != nil {
			return fuse.ToStatus(err)
		}
		r.f.cutAfter(after, op)
	}
	return fuse.OK
}

func (r *rawFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	n, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return nil, st
	}
	if n.dir {
		return nil, fuse.Status(syscall.EISDIR)
	}
	k, err := n.read(buf[:min(len(buf), int(in.Size))], int64(in.Offset))
	if err != nil {
		return nil, fuse.ToStatus(err)
	}
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

func (r *rawFS) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	n, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return 0, st
	}
	op := Op{Kind: OpWrite, Path: n.path(), Off: int64(in.Offset), Len: int64(len(data))}
	r.f.stats.Writes++
	r.f.stats.WrittenBytes += int64(len(data))
	before, after := r.f.checkOp(op)
	if before {
		return 0, fuse.Status(errFrozen)
	}
	if err := n.write(data, int64(in.Offset)); err != nil {
		return 0, fuse.ToStatus(err)
	}
	n.mtime = time.Now()
	r.f.cutAfter(after, op)
	return uint32(len(data)), fuse.OK
}

func (r *rawFS) Flush(_ <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	_, st := r.enter(in.NodeId)
	defer r.leave()
	return st
}

func (r *rawFS) Release(<-chan struct{}, *fuse.ReleaseIn) {}

func (r *rawFS) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	started := time.Now()
	n, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	if n.dir {
		return r.syncDir(n)
	}
	op := Op{Kind: OpFsync, Path: n.path()}
	r.f.stats.Fsyncs++
	before, after := r.f.checkOp(op)
	if before {
		return fuse.Status(errFrozen)
	}
	if err := n.sync(started); err != nil {
		return fuse.ToStatus(err)
	}
	r.f.cutAfter(after, op)
	return fuse.OK
}

func (r *rawFS) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	n, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	if !n.dir {
		return fuse.ENOTDIR
	}
	return r.syncDir(n)
}

func (r *rawFS) syncDir(n *node) fuse.Status {
	op := Op{Kind: OpFsyncDir, Path: n.path()}
	r.f.stats.DirFsyncs++
	before, after := r.f.checkOp(op)
	if before {
		return fuse.Status(errFrozen)
	}
	r.f.m.syncDir(n)
	r.f.cutAfter(after, op)
	return fuse.OK
}

func (r *rawFS) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	if !n.dir {
		return fuse.ENOTDIR
	}
	var list []fuse.DirEntry
	for _, name := range slices.Sorted(maps.Keys(n.entries)) {
		c := n.entries[name]
		list = append(list, fuse.DirEntry{Name: name, Mode: c.kind(), Ino: c.ino})
	}
	r.f.nextFh++
	r.f.dirs[r.f.nextFh] = list
	out.Fh = r.f.nextFh
	return fuse.OK
}

func (r *rawFS) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	_, st := r.enter(in.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	list := r.f.dirs[in.Fh]
	for i := in.Offset; i < uint64(len(list)); i++ {
		e := list[i]
		e.Off = i + 1
		if !out.AddDirEntry(e) {
			break
		}
	}
	return fuse.OK
}

func (r *rawFS) ReleaseDir(in *fuse.ReleaseIn) {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	delete(r.f.dirs, in.Fh)
}

func (r *rawFS) StatFs(_ <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	_, st := r.enter(h.NodeId)
	defer r.leave()
	if !st.Ok() {
		return st
	}
	*out = fuse.StatfsOut{Blocks: 1 << 30, Bfree: 1 << 29, Bavail: 1 << 29, Files: 1 << 20, Ffree: 1 << 19,
		Bsize: pageSize, Frsize: pageSize, NameLen: 255}
	return fuse.OK
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func modePerm(m uint32) os.FileMode { return os.FileMode(m & 0o777) }
