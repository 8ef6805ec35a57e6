package wal

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestTxnIdentity(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := LoadTxnIdentity(dir); ok || err != nil {
		t.Fatalf("LoadTxnIdentity of a fresh directory = ok %v, %v; want none, nil", ok, err)
	}
	id, err := NewTxnIdentity("orders-eu-1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewTxnIdentity("orders-eu-1")
	if id.WALID == other.WALID || id.WALID == [16]byte{} {
		t.Fatalf("two new identities share WAL id %x (or it is zero)", id.WALID)
	}
	for _, want := range []TxnIdentity{id, {WALID: id.WALID, TransactionalID: "renamed", Committed: true}, {WALID: id.WALID}} {
		if err := StoreTxnIdentity(dir, want, 0o600); err != nil {
			t.Fatalf("StoreTxnIdentity: %v", err)
		}
		got, ok, err := LoadTxnIdentity(dir)
		if !ok || err != nil || got != want {
			t.Fatalf("LoadTxnIdentity = %+v, %v, %v; want %+v", got, ok, err, want)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, TxnIdentityFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("identity file mode %v (%v), want 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(filepath.Join(dir, TxnIdentityFile+".tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}
}

func TestTxnIdentityDamageIsCorrupt(t *testing.T) {
	id, _ := NewTxnIdentity("x")
	id.Committed = true
	good := id.encode()
	for name, b := range map[string][]byte{
		"empty":         {},
		"torn":          good[:len(good)-1],
		"bit flip":      append(append([]byte{}, good[:10]...), append([]byte{good[10] ^ 1}, good[11:]...)...),
		"other magic":   append([]byte("KWCU"), good[4:]...),
		"newer version": append(append([]byte("KWEO"), 2), good[5:]...),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, TxnIdentityFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
			_, ok, err := LoadTxnIdentity(dir)
			if ok || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("LoadTxnIdentity = ok %v, %v; want an error matching ErrCorrupt", ok, err)
			}
		})
	}
}
