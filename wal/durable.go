package wal

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// mkdirAllDurable creates dir and its missing parents, as os.MkdirAll does,
// and fsyncs the parent of each directory it creates, so that a power loss
// cannot take a directory away with records made durable inside it: an
// fsync of a file does not make its directory's name durable, only an fsync
// of the directory holding that name does.
func mkdirAllDurable(dir string, perm os.FileMode) error {
	dir = filepath.Clean(dir)
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: errors.New("not a directory")}
		}
		return nil
	}
	var missing []string
	for p := dir; ; {
		if _, err := os.Stat(p); err == nil {
			break
		}
		missing = append(missing, p)
		parent := filepath.Dir(p)
		if parent == p {
			break
		}
		p = parent
	}
	for i := len(missing) - 1; i >= 0; i-- {
		p := missing[i]
		if err := os.Mkdir(p, perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		if err := SyncDir(filepath.Dir(p)); err != nil {
			return err
		}
	}
	return nil
}
