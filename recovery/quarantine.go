package recovery

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kafkawal/kafkawal/wal"
)

// quarantine keeps b, cut from segment at offset, in
// DIR/quarantine/<segment>.<offset>.<suffix>, fsync'd with its directory,
// before the segment is changed. A name already taken (the same offset torn
// again by a later crash) gets .1, .2, ... appended, unless that file holds
// exactly b: a crash during an earlier repair left it, and it is reused.
func (r *repairer) quarantine(segment string, offset int64, suffix string, b []byte) (string, error) {
	qdir := filepath.Join(r.dir, QuarantineDir)
	if err := r.ensureQuarantineDir(qdir); err != nil {
		return "", err
	}
	base := filepath.Join(qdir, fmt.Sprintf("%s.%d.%s", segment, offset, suffix))
	for i := 0; ; i++ {
		path := base
		if i > 0 {
			path = fmt.Sprintf("%s.%d", base, i)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, r.opts.FileMode)
		if errors.Is(err, fs.ErrExist) {
			if old, rerr := os.ReadFile(path); rerr == nil && bytes.Equal(old, b) {
				r.noteQuarantined(path, b)
				return path, nil
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("kafkawal: quarantine: %w", err)
		}
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = wal.SyncDir(qdir)
		}
		if err != nil {
			return "", fmt.Errorf("kafkawal: quarantine %s: %w", path, err)
		}
		r.noteQuarantined(path, b)
		return path, nil
	}
}

func (r *repairer) noteQuarantined(path string, b []byte) {
	r.rep.Quarantined = append(r.rep.Quarantined, path)
	r.rep.QuarantinedBytes += int64(len(b))
}

// ensureQuarantineDir creates the quarantine directory and makes its name
// durable in DIR.
func (r *repairer) ensureQuarantineDir(qdir string) error {
	if fi, err := os.Stat(qdir); err == nil && fi.IsDir() {
		return nil
	}
	if err := os.Mkdir(qdir, r.opts.DirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("kafkawal: quarantine: %w", err)
	}
	if err := wal.SyncDir(r.dir); err != nil {
		return fmt.Errorf("kafkawal: quarantine: sync %s: %w", r.dir, err)
	}
	return nil
}

// truncateFile cuts path to n bytes and fsyncs it.
func truncateFile(path string, n int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(n)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rewriteFile replaces path's contents with b atomically: a temporary file
// beside it, fsync'd, renamed over it. The caller fsyncs the directory.
func rewriteFile(path string, b []byte) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + tempSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
