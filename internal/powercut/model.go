package powercut

import (
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"syscall"
	"time"
)

// pageSize is the granularity of the in-memory page cache, and of what a
// Reorder or Torn cut persists.
const pageSize = 4096

// tearSize is the granularity of a Torn cut inside a page (a sector).
const tearSize = 512

// node is one inode. Its volatile state is what processes see; its
// durable state is what survives a cut.
type node struct {
	ino   uint64
	dir   bool
	mode  uint32 // permission bits
	mtime time.Time
	ctime time.Time

	// parent and name locate it in the volatile namespace (nil parent:
	// the root, or unlinked).
	parent *node
	name   string

	// Directories.
	entries map[string]*node // volatile
	durable map[string]*node // durable (equal to entries under ImmediateMetadata)
	pending []metaOp         // StrictMetadata: changes since the last fsync

	// Files. store holds the durable bytes [0, dsize) (its length is
	// dsize); bytes at or beyond cutoff read as zeros until the next fsync
	// (a truncation not yet durable hides them, so a file that shrank and
	// grew again shows zeros, not its old bytes: size < dsize implies
	// cutoff <= size); pages hold dirty data.
	store    *os.File
	size     int64
	dsize    int64
	cutoff   int64
	pages    map[int64][]byte
	lastSync time.Time // start of the last fsync that completed
}

// metaOp is one namespace change of a directory: name now points to n (nil:
// removed). Changes of one rename share a sequence number.
type metaOp struct {
	seq  uint64
	name string
	n    *node
}

func (n *node) kind() uint32 {
	if n.dir {
		return syscall.S_IFDIR
	}
	return syscall.S_IFREG
}

// path is n's volatile path from the root ("" for the root itself, "?"
// plus its name when unlinked).
func (n *node) path() string {
	if n.parent == nil {
		if n.name == "" {
			return ""
		}
		return "?" + n.name
	}
	if p := n.parent.path(); p != "" {
		return p + "/" + n.name
	}
	return n.name
}

// unsynced reports whether a file has changes an fsync would make durable.
func (n *node) unsynced() bool {
	return !n.dir && (len(n.pages) > 0 || n.size != n.dsize || n.cutoff < n.dsize)
}

// readUnder reads the bytes below the page cache at off into p: the store,
// up to the durable size and the cutoff, and zeros past them.
func (n *node) readUnder(p []byte, off int64) error {
	clear(p)
	end := min(n.dsize, n.cutoff)
	if off >= end {
		return nil
	}
	k := min(int64(len(p)), end-off)
	_, err := n.store.ReadAt(p[:k], off)
	if err == io.EOF {
		err = nil
	}
	return err
}

// page returns the dirty page at index i, creating it from the bytes below.
func (n *node) page(i int64) ([]byte, error) {
	if pg, ok := n.pages[i]; ok {
		return pg, nil
	}
	pg := make([]byte, pageSize)
	if err := n.readUnder(pg, i*pageSize); err != nil {
		return nil, err
	}
	if n.pages == nil {
		n.pages = make(map[int64][]byte)
	}
	n.pages[i] = pg
	return pg, nil
}

// read copies what a process sees at off into p and returns how many bytes
// (short at the end of the file).
func (n *node) read(p []byte, off int64) (int, error) {
	if off >= n.size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), n.size-off)]
	for done := 0; done < len(p); {
		pos := off + int64(done)
		i, in := pos/pageSize, pos%pageSize
		k := min(len(p)-done, int(pageSize-in))
		if pg, ok := n.pages[i]; ok {
			copy(p[done:done+k], pg[in:])
		} else if err := n.readUnder(p[done:done+k], pos); err != nil {
			return done, err
		}
		done += k
	}
	return len(p), nil
}

// write puts p at off into the page cache.
func (n *node) write(p []byte, off int64) error {
	end := off + int64(len(p))
	for done := 0; done < len(p); {
		pos := off + int64(done)
		i, in := pos/pageSize, pos%pageSize
		pg, err := n.page(i)
		if err != nil {
			return err
		}
		done += copy(pg[in:], p[done:])
	}
	n.size = max(n.size, end)
	return nil
}

// truncate sets the volatile size. Under ImmediateMetadata a shrink is
// durable at once.
func (n *node) truncate(size int64, immediate bool) error {
	if size >= n.size {
		n.size = size
		return nil
	}
	for i := range n.pages {
		if i*pageSize >= size {
			delete(n.pages, i)
		}
	}
	if in := size % pageSize; in != 0 {
		pg, err := n.page(size / pageSize)
		if err != nil {
			return err
		}
		clear(pg[in:])
	}
	n.size = size
	n.cutoff = min(n.cutoff, size)
	if immediate && n.cutoff < n.dsize {
		if err := n.store.Truncate(n.cutoff); err != nil {
			return err
		}
		n.dsize = n.cutoff
	}
	return nil
}

// sync makes the data and the size durable (fsync, fdatasync).
func (n *node) sync(started time.Time) error {
	if n.cutoff < n.dsize {
		if err := n.store.Truncate(n.cutoff); err != nil {
			return err
		}
		n.dsize = n.cutoff
	}
	for _, i := range slices.Sorted(maps.Keys(n.pages)) {
		if err := n.persistPage(i, pageSize); err != nil {
			return err
		}
	}
	if err := n.store.Truncate(n.size); err != nil {
		return err
	}
	n.dsize, n.cutoff, n.pages = n.size, math.MaxInt64, nil
	n.lastSync = started
	return nil
}

// persistPage writes the first k bytes of dirty page i (those below the
// volatile size) to the store, and grows the durable size to cover them.
func (n *node) persistPage(i int64, k int64) error {
	start := i * pageSize
	end := min(start+k, n.size)
	if end <= start {
		return nil
	}
	if _, err := n.store.WriteAt(n.pages[i][:end-start], start); err != nil {
		return err
	}
	n.dsize = max(n.dsize, end)
	return nil
}

// errFrozen is what every operation gets after a cut.
var errFrozen = syscall.EIO

// model is the filesystem's state; every method is called with fs.mu held.
type model struct {
	nodes   map[uint64]*node
	root    *node
	nextIno uint64
	metaSeq uint64
	strict  bool
}

func (m *model) newNode(dir bool, mode uint32, now time.Time) *node {
	m.nextIno++
	n := &node{ino: m.nextIno, dir: dir, mode: mode & 0o7777, mtime: now, ctime: now, cutoff: math.MaxInt64}
	if dir {
		n.entries = map[string]*node{}
		n.durable = map[string]*node{}
	}
	m.nodes[n.ino] = n
	return n
}

// link points dir's entry name at n (nil: removes it), volatile, and
// durable too unless the metadata model is strict.
func (m *model) link(dir *node, name string, n *node, seq uint64) {
	if n == nil {
		if old := dir.entries[name]; old != nil && old.parent == dir && old.name == name {
			old.parent = nil
		}
		delete(dir.entries, name)
	} else {
		dir.entries[name] = n
		n.parent, n.name = dir, name
	}
	dir.mtime = time.Now()
	if !m.strict {
		if n == nil {
			delete(dir.durable, name)
		} else {
			dir.durable[name] = n
		}
		return
	}
	dir.pending = append(dir.pending, metaOp{seq: seq, name: name, n: n})
}

func (m *model) nextSeq() uint64 {
	m.metaSeq++
	return m.metaSeq
}

// syncDir makes dir's entries durable (fsync of a directory).
func (m *model) syncDir(dir *node) {
	dir.durable = maps.Clone(dir.entries)
	dir.pending = nil
}

// checkName refuses names the filesystem keeps for itself.
func (m *model) checkName(dir *node, name string) error {
	if dir == m.root && name == storeDirName {
		return syscall.EPERM
	}
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return syscall.EINVAL
	}
	return nil
}

func (m *model) describe(n *node) string {
	return fmt.Sprintf("inode %d (%s)", n.ino, n.path())
}
