package wal

import (
	"errors"
	"os"
	"reflect"
	"unsafe"

	twal "github.com/tidwall/wal"
)

// tidwall/wal's Close fsyncs the tail segment and, when that fsync fails,
// returns its error without closing the file. After an I/O error (a dying
// disk; on the power-cut filesystem, everything after the cut) the tail's
// descriptor then stays open until the garbage collector finds it: one per
// repair after a failed write, and a file that keeps a filesystem busy
// after Close returned. closeTidwall closes it itself, reaching tidwall's
// unexported sfile as presize.go reaches its buffers: found by name and
// type with reflect in the binary actually built. If it is not found, the
// descriptor is left to the collector as before, and TestTidwallFileFound
// fails so that this is noticed.
var twFileOffset, twFileErr = findTidwallFile()

func findTidwallFile() (uintptr, error) {
	f, ok := reflect.TypeFor[twal.Log]().FieldByName("sfile")
	if !ok || f.Type != reflect.TypeFor[*os.File]() {
		return 0, errors.New("tidwall Log has no sfile field of type *os.File")
	}
	return f.Offset, nil
}

// closeTidwall closes tl and, when tidwall's Close failed before closing
// it, its tail segment's file. The caller drops tl.
func closeTidwall(tl *twal.Log) error {
	err := tl.Close()
	if err != nil && !errors.Is(err, twal.ErrClosed) && twFileErr == nil {
		if f := *(**os.File)(unsafe.Add(unsafe.Pointer(tl), twFileOffset)); f != nil {
			_ = f.Close() // os.ErrClosed if tidwall did close it
		}
	}
	return err
}
