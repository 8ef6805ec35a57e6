package sender

import (
	"github.com/kafkawal/kafkawal/wal"
)

// prefetcher reads the WAL ahead of the sender on a goroutine of its own,
// so that reading and decoding records overlaps with producing them: the
// sender's goroutine is the pipeline's serial stage, and Produce alone
// fills most of it.
//
// It reads sequentially from a position the sender sets (seek) and sends
// batches of entries (wal.ReadInto: they alias the batch's data buffer or
// the WAL's memory) on out. A fixed set of buffers circulates between the
// two goroutines, which bounds what is read ahead; a batch's records are
// valid until the sender recycles it. Every seek starts a new generation
// and every batch carries the generation it was read in, so the sender can
// drop batches read before its latest seek.
type prefetcher struct {
	log  *wal.Log
	out  chan readBatch
	free chan chunk
	seek chan seekReq
	done chan struct{}
	exit chan struct{}
}

type readBatch struct {
	gen uint64
	chunk
	err error
	// end: a lane's reader read every record below it (the chunk holds
	// those it wants); atEnd: it reached the end of the log; needCount:
	// it stopped at end, a record it cannot tell without its topic's
	// partition count.
	end       uint64
	atEnd     bool
	needCount bool
}

// chunk is one of the circulating buffers: entries, and the bytes the
// entries read from sealed segments alias. Its records are pinned in the
// WAL under its slot (wal.Log.ReadIntoPinned) from the read until it is
// recycled: the WAL then reuses no memory they alias.
type chunk struct {
	ents []wal.Entry // the filled part
	data []byte
	slot int
}

type seekReq struct{ gen, seq uint64 }

const (
	prefetchBuffers = 3    // one being read, one queued, one being produced (at most wal.MaxReadPins)
	prefetchEntries = 1024 // records per batch at most
)

func newPrefetcher(l *wal.Log) *prefetcher {
	p := &prefetcher{
		log:  l,
		out:  make(chan readBatch, prefetchBuffers),
		free: make(chan chunk, prefetchBuffers),
		seek: make(chan seekReq, 1),
		done: make(chan struct{}),
		exit: make(chan struct{}),
	}
	for i := range prefetchBuffers {
		p.free <- chunk{ents: make([]wal.Entry, 0, prefetchEntries), slot: i}
	}
	return p
}

// seekTo makes the prefetcher read from seq in generation gen, replacing
// any seek it has not taken yet. Only the sender's goroutine calls it.
func (p *prefetcher) seekTo(gen, seq uint64) {
	for {
		select {
		case p.seek <- seekReq{gen, seq}:
			return
		default:
			select {
			case <-p.seek:
			default:
			}
		}
	}
}

// recycle hands a consumed buffer back. Buffers never outnumber free's
// capacity, so it does not block.
func (p *prefetcher) recycle(c chunk) {
	if cap(c.ents) > 0 {
		clear(c.ents) // drop the references into the WAL's memory
		c.ents = c.ents[:0]
		p.log.UnpinReads(c.slot)
		p.free <- c
	}
}

func (p *prefetcher) stop() {
	close(p.done)
	<-p.exit
}

// run reads nothing until the first seek.
func (p *prefetcher) run() {
	defer close(p.exit)
	var pos seekReq
	for {
		// Positioned: wait for a seek otherwise.
		if pos.seq == 0 {
			select {
			case pos = <-p.seek:
				continue
			case <-p.done:
				return
			}
		}
		var c chunk
		select {
		case c = <-p.free:
		case pos = <-p.seek:
			continue
		case <-p.done:
			return
		}
		ents, data, err := p.log.ReadIntoPinned(c.slot, pos.seq, c.ents, c.data, readBytes)
		c = chunk{ents: ents, data: data, slot: c.slot}
		if err != nil && len(ents) > 0 {
			// Send the records read before the failure; reading from the
			// failed one next reproduces the error on its own.
			err = nil
		}
		if err == nil && len(ents) == 0 {
			p.recycle(c)
			select { // caught up: wait for the writer
			case <-p.log.Appended():
			case pos = <-p.seek:
			case <-p.done:
				return
			}
			continue
		}
		// out has room for every buffer: this never blocks.
		p.out <- readBatch{gen: pos.gen, chunk: c, err: err}
		if err != nil {
			pos.seq = 0 // the sender retries, then seeks
			continue
		}
		pos.seq = ents[len(ents)-1].Seq + 1
	}
}
