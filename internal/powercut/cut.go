package powercut

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// cutLocked cuts the power: nothing after this instant changes the durable
// state. It runs OnCut, lets variant v decide what of the unsynced state
// reaches the disk, and writes the durable state to the backing directory.
func (f *FS) cutLocked(v Variant, t *Trigger, op *Op, after bool) {
	f.frozen = true
	rep := &CutReport{At: time.Now(), After: after}
	if t != nil {
		rep.Trigger = t.Name
	}
	if op != nil {
		rep.Op = op.String()
	}
	if f.opts.OnCut != nil {
		f.opts.OnCut()
	}
	if v == Random {
		v = Variant(1 + f.rng.IntN(int(ZeroFill)))
	}
	rep.Variant, rep.VariantName = v, v.String()
	if f.m.strict {
		rep.MetaPrefix = f.opts.Prefix == PrefixAlways || f.opts.Prefix == PrefixRandom && f.rng.IntN(2) == 1
	}
	before := map[*node]FileCut{}
	for _, n := range f.sortedNodes() {
		if n.dir {
			continue
		}
		fc := FileCut{Size: n.size, SyncedSize: n.dsize, DirtyPages: len(n.pages), LastSync: n.lastSync}
		if n.parent != nil {
			fc.Path = n.path()
		}
		persisted, err := f.persistSome(n, v)
		fc.PersistedPages = persisted
		before[n] = fc
		if err != nil {
			f.writeOut = errors.Join(f.writeOut, fmt.Errorf("powercut: cut %s: %w", f.m.describe(n), err))
		}
	}
	rep.MetaPersisted, rep.MetaLost = f.persistMeta(rep.MetaPrefix)
	paths, err := f.writeOutLocked()
	if err != nil {
		f.writeOut = errors.Join(f.writeOut, err)
	}
	for _, n := range f.sortedNodes() {
		if fc, ok := before[n]; ok {
			fc.Durable = paths[n]
			fc.KeptSize = n.dsize
			rep.Files = append(rep.Files, fc)
		}
	}
	f.cut = rep
	close(f.cutCh)
}

func (f *FS) sortedNodes() []*node {
	keys := slices.Sorted(maps.Keys(f.m.nodes))
	out := make([]*node, len(keys))
	for i, k := range keys {
		out[i] = f.m.nodes[k]
	}
	return out
}

// persistSome writes to n's store what variant v lets reach the disk of
// its unsynced state, and returns how many dirty pages did.
func (f *FS) persistSome(n *node, v Variant) (int, error) {
	if !n.unsynced() {
		return 0, nil
	}
	pages := slices.Sorted(maps.Keys(n.pages))
	switch v {
	case Reorder:
		if n.cutoff < n.dsize && f.rng.IntN(2) == 1 {
			if err := n.store.Truncate(n.cutoff); err != nil {
				return 0, err
			}
			n.dsize = n.cutoff
		}
		done := 0
		for _, i := range pages {
			if f.rng.IntN(2) == 1 {
				if err := n.persistPage(i, pageSize); err != nil {
					return done, err
				}
				done++
			}
		}
		return done, nil
	case Torn:
		if len(pages) == 0 {
			return 0, nil
		}
		k := f.rng.IntN(len(pages))
		for _, i := range pages[:k] {
			if err := n.persistPage(i, pageSize); err != nil {
				return 0, err
			}
		}
		sectors := 1 + f.rng.IntN(pageSize/tearSize-1)
		return k + 1, n.persistPage(pages[k], int64(sectors*tearSize))
	case ZeroFill:
		if n.cutoff < n.dsize {
			if err := n.store.Truncate(n.cutoff); err != nil {
				return 0, err
			}
		}
		if err := n.store.Truncate(n.size); err != nil {
			return 0, err
		}
		n.dsize = n.size
	}
	return 0, nil
}

// persistMeta applies, under StrictMetadata with prefix set, the unsynced
// namespace changes made up to a random point, in order, to the durable
// entries; the rest are lost. It returns how many were kept and lost.
func (f *FS) persistMeta(prefix bool) (kept, lost int) {
	var upTo uint64 // changes up to this sequence number are kept
	if prefix {
		seen := map[uint64]bool{}
		var seqs []uint64
		for _, n := range f.m.nodes {
			for _, op := range n.pending {
				if !seen[op.seq] {
					seen[op.seq] = true
					seqs = append(seqs, op.seq)
				}
			}
		}
		slices.Sort(seqs)
		if k := f.rng.IntN(len(seqs) + 1); k > 0 {
			upTo = seqs[k-1]
		}
	}
	for _, n := range f.sortedNodes() {
		for _, op := range n.pending {
			if op.seq > upTo {
				lost++
				continue
			}
			kept++
			if op.n == nil {
				delete(n.durable, op.name)
			} else {
				n.durable[op.name] = op.n
			}
		}
		n.pending = nil
	}
	return kept, lost
}

// writeOutLocked replaces the backing directory's contents with the
// durable namespace: a directory for each durable directory, a hard link
// to its store for each durable file. It returns the durable paths of each
// file. A directory reachable by two durable names (a rename whose old
// directory was not fsync'd) is written once.
func (f *FS) writeOutLocked() (map[*node][]string, error) {
	newRoot := filepath.Join(f.storeDir, "new")
	if err := os.Mkdir(newRoot, 0o700); err != nil {
		return nil, fmt.Errorf("powercut: write out: %w", err)
	}
	paths := map[*node][]string{}
	seen := map[*node]bool{f.m.root: true}
	var walk func(dir *node, real, rel string) error
	walk = func(dir *node, real, rel string) error {
		for _, name := range slices.Sorted(maps.Keys(dir.durable)) {
			n := dir.durable[name]
			p, r := filepath.Join(real, name), filepath.Join(rel, name)
			if n.dir {
				if seen[n] {
					continue
				}
				seen[n] = true
				if err := os.Mkdir(p, os.FileMode(n.mode&0o777)); err != nil {
					return err
				}
				if err := walk(n, p, r); err != nil {
					return err
				}
				continue
			}
			if err := os.Link(f.storePath(n), p); err != nil {
				return err
			}
			paths[n] = append(paths[n], filepath.ToSlash(r))
		}
		return nil
	}
	if err := walk(f.m.root, newRoot, ""); err != nil {
		return paths, fmt.Errorf("powercut: write out: %w", err)
	}
	return paths, replaceContents(f.opts.Backing, newRoot)
}

// replaceContents removes every entry of dir but the store directory and
// moves every entry of from into dir.
func replaceContents(dir, from string) error {
	des, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("powercut: write out: %w", err)
	}
	for _, de := range des {
		if de.Name() == storeDirName {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, de.Name())); err != nil {
			return fmt.Errorf("powercut: write out: %w", err)
		}
	}
	des, err = os.ReadDir(from)
	if err != nil {
		return fmt.Errorf("powercut: write out: %w", err)
	}
	for _, de := range des {
		if err := os.Rename(filepath.Join(from, de.Name()), filepath.Join(dir, de.Name())); err != nil {
			return fmt.Errorf("powercut: write out: %w", err)
		}
	}
	return os.Remove(from)
}

func (f *FS) storePath(n *node) string {
	return filepath.Join(f.storeDir, strconv.FormatUint(n.ino, 10))
}

// load builds the model from the backing directory: its contents are the
// durable state (and, at first, the volatile one too).
func (f *FS) load() error {
	if err := os.MkdirAll(f.opts.Backing, 0o700); err != nil {
		return fmt.Errorf("powercut: backing directory: %w", err)
	}
	// A store directory left by an interrupted mount holds nothing
	// durable: the durable state is the namespace beside it.
	if err := os.RemoveAll(f.storeDir); err != nil {
		return fmt.Errorf("powercut: backing directory: %w", err)
	}
	if err := os.Mkdir(f.storeDir, 0o700); err != nil {
		return fmt.Errorf("powercut: backing directory: %w", err)
	}
	now := time.Now()
	fi, err := os.Stat(f.opts.Backing)
	if err != nil {
		return err
	}
	f.m = model{nodes: map[uint64]*node{}, strict: f.opts.Metadata == StrictMetadata}
	f.m.root = f.m.newNode(true, uint32(fi.Mode().Perm()), now)
	var walk func(dir *node, path string) error
	walk = func(dir *node, path string) error {
		des, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		for _, de := range des {
			if dir == f.m.root && de.Name() == storeDirName {
				continue
			}
			p := filepath.Join(path, de.Name())
			info, err := de.Info()
			if err != nil {
				return err
			}
			var n *node
			switch {
			case info.IsDir():
				n = f.m.newNode(true, uint32(info.Mode().Perm()), info.ModTime())
				if err := walk(n, p); err != nil {
					return err
				}
			case info.Mode().IsRegular():
				n = f.m.newNode(false, uint32(info.Mode().Perm()), info.ModTime())
				if err := os.Link(p, f.storePath(n)); err != nil {
					return err
				}
				if n.store, err = os.OpenFile(f.storePath(n), os.O_RDWR, 0); err != nil {
					return err
				}
				n.size, n.dsize = info.Size(), info.Size()
			default:
				return fmt.Errorf("%s: %v files are not supported", p, info.Mode().Type())
			}
			dir.entries[de.Name()] = n
			dir.durable[de.Name()] = n
			n.parent, n.name = dir, de.Name()
		}
		return nil
	}
	if err := walk(f.m.root, f.opts.Backing); err != nil {
		f.closeStores()
		return fmt.Errorf("powercut: load %s: %w", f.opts.Backing, err)
	}
	return nil
}

// newStore creates the store of a new file.
func (f *FS) newStore(n *node) error {
	s, err := os.OpenFile(f.storePath(n), os.O_RDWR|os.O_CREATE|os.O_EXCL, os.FileMode(n.mode&0o777))
	if err != nil {
		return err
	}
	n.store = s
	return nil
}

// syncAllLocked makes everything durable: a clean shutdown.
func (f *FS) syncAllLocked() error {
	now := time.Now()
	var errs []error
	for _, n := range f.sortedNodes() {
		if n.dir {
			f.m.syncDir(n)
		} else if err := n.sync(now); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (f *FS) closeStores() {
	for _, n := range f.m.nodes {
		if n.store != nil {
			n.store.Close()
			n.store = nil
		}
	}
}

// removeStores deletes the store directory once the durable state is
// written out: the durable files keep their data through their links.
func (f *FS) removeStores() error {
	err := os.RemoveAll(f.storeDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
