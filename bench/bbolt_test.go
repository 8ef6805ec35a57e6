package bench

import (
	"encoding/binary"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"go.etcd.io/bbolt"
)

// boltQueue is the peer durable queue: go.etcd.io/bbolt used the way the
// OpenTelemetry Collector's persistent queue (exporterhelper, over the
// filestorage extension) uses it. One bucket ("default"); each item under
// its index as a decimal string; every put also stores the write index
// ("wi") in the same transaction, and every consume deletes the items and
// stores the read index ("ri"). The options are filestorage's:
// NoFreelistSync, the map freelist, and NoSync unless fsync is asked for
// (filestorage's own default is fsync: false).
//
// The Collector serializes puts behind a mutex, one Update per item; here
// concurrent writers go through db.Batch (bbolt's group commit, default
// MaxBatchSize 1000 and MaxBatchDelay 10ms), and a batch of records is one
// transaction, which is the best bbolt can do for them.
type boltQueue struct {
	db       *bbolt.DB
	batched  bool // put through db.Batch (concurrent callers) rather than db.Update
	next     atomic.Uint64
	readNext uint64 // consumer only
}

var (
	boltBucket   = []byte("default")
	boltWriteKey = []byte("wi")
	boltReadKey  = []byte("ri")
)

func openBoltQueue(b testing.TB, dir string, fsync, batched bool) *boltQueue {
	b.Helper()
	db, err := bbolt.Open(filepath.Join(dir, "queue.db"), 0o600, &bbolt.Options{
		NoSync:         !fsync,
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	if err != nil {
		b.Fatalf("bbolt.Open: %v", err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	}); err != nil {
		b.Fatalf("bbolt: create bucket: %v", err)
	}
	return &boltQueue{db: db, batched: batched}
}

func (q *boltQueue) close() error { return q.db.Close() }

// put stores vals under consecutive indices in one transaction.
func (q *boltQueue) put(vals [][]byte) error {
	first := q.next.Add(uint64(len(vals))) - uint64(len(vals))
	fn := func(tx *bbolt.Tx) error {
		bk := tx.Bucket(boltBucket)
		var key []byte
		for i, v := range vals {
			key = strconv.AppendUint(key[:0], first+uint64(i), 10)
			if err := bk.Put(key, v); err != nil {
				return err
			}
		}
		// Concurrent batches commit in any order: keep the largest.
		wi := first + uint64(len(vals))
		if old := bk.Get(boltWriteKey); len(old) == 8 {
			wi = max(wi, binary.BigEndian.Uint64(old))
		}
		return bk.Put(boltWriteKey, binary.BigEndian.AppendUint64(nil, wi))
	}
	if q.batched {
		return q.db.Batch(fn)
	}
	return q.db.Update(fn)
}

// consume deletes up to max items in index order, stopping at the first
// one not yet committed, and stores the read index: the Collector's
// dispatch-then-delete, with delivery taken as instant. It returns the
// number deleted.
func (q *boltQueue) consume(max int) (int, error) {
	n := 0
	err := q.db.Update(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(boltBucket)
		var key []byte
		n = 0
		for n < max {
			key = strconv.AppendUint(key[:0], q.readNext+uint64(n), 10)
			if bk.Get(key) == nil {
				break
			}
			if err := bk.Delete(key); err != nil {
				return err
			}
			n++
		}
		if n == 0 {
			return nil
		}
		return bk.Put(boltReadKey, binary.BigEndian.AppendUint64(nil, q.readNext+uint64(n)))
	})
	if err != nil {
		return 0, err
	}
	q.readNext += uint64(n)
	return n, nil
}
