package sender

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/kafkawal/kafkawal/wal"
)

// How exactly-once delivery starts (txn.go): InitTransactions, then the
// checkpoint read, then where delivery resumes. After a producer rebuild
// the same steps check that the checkpoint is still this Sender's.

// txnStartInit initializes a new producer's transactions.
func (s *Sender) txnStartInit() {
	t := s.tx
	t.phase = txnStarting
	t.call(opInit, initCall(s.p))
}

// txnOnRead adopts the checkpoint read after InitTransactions.
func (s *Sender) txnOnRead(r txnResult) {
	t := s.tx
	if r.err != nil {
		if errors.Is(r.err, errNeedsOperator) {
			s.txnProblem(r.err)
		}
		if !t.closing {
			t.readAt = time.Now().Add(checkpointRetry)
		}
		return
	}
	s.lg.Debug().Dur("took", r.took).Bool("found", r.found).Msg("sender: checkpoint read")
	if err := s.txnAdopt(r.ckpt, r.found); err != nil {
		if errors.Is(err, ErrFenced) {
			s.txnStop(err)
			return
		}
		s.txnProblem(err)
		t.readAt = time.Now().Add(checkpointRetry)
		return
	}
	if t.problem != "" {
		s.lg.Info().Msg("sender: exactly-once delivery resumes")
		t.problem = ""
		t.stats.problem.Store(nil)
	}
	t.phase = txnIdle
}

// txnAdopt sets where delivery resumes from the checkpoint c (found) that
// Kafka holds. At the first read it is the start; after a rebuild it must
// still be this Sender's (or the one it started from), or another
// instance has taken over.
func (s *Sender) txnAdopt(c Checkpoint, found bool) error {
	t := s.tx
	if found && c.WALID != t.id.WALID {
		return fmt.Errorf("%w: topic %q: the checkpoint of TransactionalID %q belongs to another WAL directory (WAL id %x; this one is %x): give each WAL directory its own TransactionalID",
			errNeedsOperator, t.store.topic, t.store.key, c.WALID, t.id.WALID)
	}
	if t.adopted {
		mine := found && c.Writer == t.writer
		same := found == t.haveLast && (!found || c.Writer == t.last.Writer && c.Commit == t.last.Commit)
		if !mine && !same {
			return fmt.Errorf("%w: another instance has committed since (checkpoint %d of writer %x)", ErrFenced, c.Commit, c.Writer)
		}
		if mine && c.Commit > t.last.Commit {
			// The commit this Sender saw fail had landed.
			before := s.watermark()
			s.win.committedThrough(c.Next)
			s.txnResumeLanes(c)
			s.stats.delivered.Add(s.watermark() - min(before, s.watermark()))
			t.stats.commits.Add(1)
			t.last = c
			s.lg.Warn().Uint64("next", c.Next).Msg("sender: a commit reported as failed had been committed; resuming after it")
		}
		return nil
	}
	if found {
		if err := s.txnSameHistory(c); err != nil {
			return err
		}
	}
	switch {
	case found:
		// The window starts at Next; the partitions the checkpoint
		// defers resume as lanes, each from its own first uncommitted
		// record (records in park logs are read from there).
		if c.Next < s.wal.FirstSeq() {
			s.lg.Error().Uint64("committed_next", c.Next).Uint64("first_seq", s.wal.FirstSeq()).
				Msg("sender: the WAL no longer holds records Kafka has not committed; they cannot be sent")
		}
		s.win = newWindow(max(c.Next, s.wal.FirstSeq()), len(s.win.slots))
		s.txnResumeLanes(c)
		t.last, t.haveLast = c, true
	case t.id.Committed && t.id.TransactionalID == string(t.store.key):
		return fmt.Errorf("%w: topic %q partition %d holds no checkpoint for TransactionalID %q, though this WAL directory has committed with it: was the topic deleted, recreated or repartitioned? Sending again from the local cursor would duplicate records; to accept that, use a new TransactionalID",
			errNeedsOperator, t.store.topic, t.store.partition, t.store.key)
	}
	// Not found: delivery starts where the local cursor (and park logs)
	// say, as New set it up.
	s.stats.acked.Store(s.watermark())
	t.adopted = true
	s.lg.Info().Str("transactional_id", string(t.store.key)).Bool("checkpoint", found).Uint64("commit", c.Commit).
		Uint64("from_seq", s.watermark()+1).Int("deferred_partitions", len(c.Deferred)).Msg("sender: exactly-once delivery ready")
	return nil
}

// txnSameHistory checks that the record c's commit ended with is the one
// this WAL holds at that sequence. Two copies of a directory that both
// appended hold different records under the same sequences; resuming
// from the other copy's checkpoint would skip this one's records as if
// they were delivered.
func (s *Sender) txnSameHistory(c Checkpoint) error {
	t := s.tx
	if c.Last == 0 || c.Next == 0 {
		return nil
	}
	seq := c.Next - 1
	if seq > s.wal.LastSeq() {
		return fmt.Errorf("%w: Kafka committed this WAL's records through sequence %d, but it holds only up to %d: it lost records written before a power loss (SyncPeriodic or SyncNever), or it is a copy of the directory that another copy has outrun. Its next records would be taken for delivered ones. To deliver from the local cursor anyway (at least once), use a new TransactionalID",
			errNeedsOperator, seq, s.wal.LastSeq())
	}
	if seq < s.wal.FirstSeq() {
		return nil // deleted after it was committed: nothing to compare
	}
	if fp := s.fingerprintAt(seq); fp != 0 && fp != c.Last {
		return fmt.Errorf("%w: the record at sequence %d differs from the one Kafka committed there: this WAL directory is a copy that appended records of its own after another copy (with TransactionalID %q) did. Resuming from that checkpoint would skip them. Deliver them with a new TransactionalID (at least once), or keep this directory's records out of Kafka",
			errNeedsOperator, seq, t.store.key)
	}
	return nil
}

// fingerprintAt returns the fingerprint of the WAL's record at seq, 0 if
// it cannot be read (or is a hole). A commit asks for the record the main
// stream passed last, which the sender nearly always still holds, or
// fingerprinted when it let go of the read-ahead that held it (take).
// Read from the WAL instead, a record the sender reads far behind the
// writer lies in a segment tidwall no longer keeps in memory, and reading
// it loads (and keeps, in place of a newer one) the whole segment.
func (s *Sender) fingerprintAt(seq uint64) uint32 {
	if e := s.inHand(seq); e != nil {
		return fingerprintOf(e)
	}
	if seq == s.passedFP.seq && seq > 0 {
		return s.passedFP.fp
	}
	ents, err := s.wal.Read(seq, make([]wal.Entry, 0, 1), 1)
	if err != nil || len(ents) != 1 || ents[0].Seq != seq || ents[0].Hole {
		s.lg.Debug().Err(err).Uint64("seq", seq).Msg("sender: no fingerprint for the checkpoint")
		return 0
	}
	return fingerprintOf(&ents[0])
}

// fingerprintOf is e's record's fingerprint, 0 for a hole.
func fingerprintOf(e *wal.Entry) uint32 {
	if e.Hole {
		return 0
	}
	return fingerprint(&e.Record)
}

// inHand returns the record at seq if the main stream still holds it:
// in cur, the chunk of read-ahead it reads from (recycled only by take);
// nil if not.
func (s *Sender) inHand(seq uint64) *wal.Entry {
	i, ok := slices.BinarySearchFunc(s.cur.ents, seq, func(e wal.Entry, seq uint64) int { return cmp.Compare(e.Seq, seq) })
	if !ok {
		return nil
	}
	return &s.cur.ents[i]
}
