package wal

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// TxnIdentityFile is the name, in the WAL directory, of the file an
// exactly-once producer keeps its identity in.
const TxnIdentityFile = "exactly-once"

// TxnIdentity ties a WAL directory to the checkpoints Kafka holds for it.
// Sequence numbers only mean something within one WAL directory; the
// checkpoint in Kafka carries WALID, so that a checkpoint of another
// directory (the same TransactionalID given to a new directory by mistake)
// is refused instead of skipping this directory's records. Copies of a
// directory share the identity: they are the same log, and Kafka's fencing
// decides which of them may deliver.
//
//	offset  size  field
//	0       4     magic "KWEO"
//	4       1     version (1)
//	5       16    WAL id (random, made once)
//	21      1     flags: bit 0 = a transaction was committed with TransactionalID
//	22      uv    len(TransactionalID), then its bytes
//	        4     crc32c of every byte before it
//
// The file is replaced whole (written beside, fsync'd, renamed, directory
// fsync'd), so a crash leaves the old or the new identity, never a torn one.
type TxnIdentity struct {
	WALID [16]byte
	// TransactionalID is the id the identity was last used with.
	TransactionalID string
	// Committed says that a transaction was committed with
	// TransactionalID: from then on Kafka must hold a checkpoint for it,
	// and its absence is an error, not a fresh start.
	Committed bool
}

const (
	txnIdentityMagic   = "KWEO"
	txnIdentityVersion = 1
)

// NewTxnIdentity returns an identity with a new random WAL id.
func NewTxnIdentity(transactionalID string) (TxnIdentity, error) {
	id := TxnIdentity{TransactionalID: transactionalID}
	if _, err := rand.Read(id.WALID[:]); err != nil {
		return id, fmt.Errorf("kafkawal: WAL id: %w", err)
	}
	return id, nil
}

func (id TxnIdentity) encode() []byte {
	b := make([]byte, 0, 32+len(id.TransactionalID))
	b = append(b, txnIdentityMagic...)
	b = append(b, txnIdentityVersion)
	b = append(b, id.WALID[:]...)
	var flags byte
	if id.Committed {
		flags |= 1
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, uint64(len(id.TransactionalID)))
	b = append(b, id.TransactionalID...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeTxnIdentity(b []byte) (TxnIdentity, error) {
	var id TxnIdentity
	if len(b) < 27 || string(b[:4]) != txnIdentityMagic {
		return id, errors.New("not an identity file")
	}
	if b[4] != txnIdentityVersion {
		return id, fmt.Errorf("version %d (this kafkawal reads %d)", b[4], txnIdentityVersion)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return id, errors.New("checksum mismatch")
	}
	copy(id.WALID[:], b[5:21])
	id.Committed = b[21]&1 != 0
	n, k := binary.Uvarint(body[22:])
	if k <= 0 || uint64(len(body)-22-k) != n {
		return id, errors.New("bad TransactionalID length")
	}
	id.TransactionalID = string(body[22+k:])
	return id, nil
}

// LoadTxnIdentity reads dir's identity file. ok is false when there is
// none. A file that exists but does not decode is an error matching
// ErrCorrupt: making a new identity then would tie the directory to a new
// sequence space and mistake its committed records for new ones.
func LoadTxnIdentity(dir string) (id TxnIdentity, ok bool, err error) {
	path := filepath.Join(dir, TxnIdentityFile)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return id, false, nil
	}
	if err != nil {
		return id, false, fmt.Errorf("kafkawal: read %s: %w", path, err)
	}
	if id, err = decodeTxnIdentity(b); err != nil {
		return id, false, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
	}
	return id, true, nil
}

// StoreTxnIdentity replaces dir's identity file with id, durably.
func StoreTxnIdentity(dir string, id TxnIdentity, perm os.FileMode) error {
	path := filepath.Join(dir, TxnIdentityFile)
	tmp := path + ".tmp"
	err := func() error {
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
		if err != nil {
			return err
		}
		_, err = f.Write(id.encode())
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, path)
		}
		if err == nil {
			err = SyncDir(dir)
		}
		return err
	}()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("kafkawal: write %s: %w", path, err)
	}
	return nil
}
