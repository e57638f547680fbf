package kafka

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// slabs lends the package's record slabs, for fetching and for producing.
//
// Every fetcher's client (kgo.WithPools) takes from it the two slices a
// fetched record batch is decoded into: its []kgo.Record and, for a
// compressed batch, its decompressed bytes, which the records' keys and
// values point into. The client puts both back once every record of the
// batch kept for us has been recycled (kgo.Record.Recycle). Fresh slices
// for each batch were over half of what a copying executor allocated (make
// bench, row 2's profile: 31% record slabs, 22% decompressed bytes), and the
// collector's work with them.
//
// Only ReadKafkaArrow recycles, right after it copied a record into the
// batch's columns: nothing holds the record or its bytes after that. Read
// hands the records' keys and values on in rows, so it never recycles; nor
// are records recycled that the pool drops (past a range, trimmed, shed, a
// slot that moved). Their batches' slices then never come back and are
// collected as before: a record not recycled costs reuse, never
// correctness. A record must never be recycled twice: the client counts
// them to know when a batch's slices are free. Every reader pool shares it
// (tests give theirs another, withFetchSlabs).
//
// The sink takes the slab of each batch it produces from it too
// (recordMaker.records) and gives it back once the client has called every
// record's promise (hand).
var slabs = &slabPool{}

// slabPool is kgo.PoolRecords and kgo.PoolDecompressBytes over size
// classes a quarter of an octave apart (2^e, 1.25·2^e, 1.5·2^e,
// 1.75·2^e), so that a lent slice is at most a fifth bigger than asked
// for: whole octaves made a record slab of 5,000 records one of 8,192.
// A slice is lent from the smallest class that holds what is asked for
// and comes back to the largest class its capacity holds, which is where
// a slice the client grew past what it was lent goes too.
type slabPool struct {
	records [classes]sync.Pool // of *[]kgo.Record
	bytes   [classes]sync.Pool // of *[]byte
}

// classes bounds the size classes: slices of 256 MiB (2^28) or more are
// not kept, nor are those under minClassSize.
const (
	classes      = 4 * 28
	minClassSize = 8
)

// maxSnappyRatio is above what snappy can reach: its densest element, a
// copy of 64 bytes, takes 3.
const maxSnappyRatio = 22

var (
	_ kgo.PoolRecords         = (*slabPool)(nil)
	_ kgo.PoolDecompressBytes = (*slabPool)(nil)
)

// classUp is the smallest class whose size holds n, and that size.
func classUp(n int) (class, size int) {
	n = max(n, minClassSize)
	e := bits.Len(uint(n-1)) - 1 // 2^e < n <= 2^(e+1)
	step := 1 << e / 4
	q := (n - 1<<e + step - 1) / step // 1 to 4
	return 4*e + q, 1<<e + q*step
}

// classDown is the largest class whose size a capacity of c holds, or -1
// when c is below every class.
func classDown(c int) int {
	if c < minClassSize {
		return -1
	}
	e := bits.Len(uint(c)) - 1 // 2^e <= c < 2^(e+1)
	return 4*e + (c-1<<e)/(1<<e/4)
}

// GetRecords is a zeroed slice of at least n records.
func (p *slabPool) GetRecords(n int) []kgo.Record {
	c, size := classUp(n)
	if c >= classes {
		return make([]kgo.Record, 0, n)
	}
	if s, ok := p.records[c].Get().(*[]kgo.Record); ok {
		return (*s)[:0]
	}
	return make([]kgo.Record, 0, size)
}

// PutRecords keeps s for GetRecords. Recycle zeroed each record we kept,
// but the client may have decoded others it did not hand out (below the
// offset asked for, an aborted transaction's): they are zeroed here, so
// that a pooled slab holds no batch's bytes alive.
func (p *slabPool) PutRecords(s []kgo.Record) {
	c := classDown(cap(s))
	if c < 0 || c >= classes {
		return
	}
	s = s[:cap(s)]
	clear(s)
	s = s[:0]
	p.records[c].Put(&s)
}

// GetDecompressBytes is an empty slice with room for compressed's batch
// decompressed: exactly, for snappy, whose block starts with the decoded
// length; four times the compressed size otherwise. Either is a guess: a
// codec that needs more grows its own slice, and the client puts that one
// back. The snappy header is believed only up to maxSnappyRatio times the
// compressed size, so that a batch claiming a huge length (xerial framing,
// which has no such header, or a corrupt one) does not make us allocate it
// before franz-go checks the claim.
func (p *slabPool) GetDecompressBytes(compressed []byte, codec kgo.CompressionCodecType) []byte {
	n := 4 * len(compressed)
	if codec == kgo.CodecSnappy {
		if l, k := binary.Uvarint(compressed); k > 0 && l <= uint64(maxSnappyRatio*len(compressed)) {
			n = int(l)
		}
	}
	c, size := classUp(n)
	if c >= classes {
		return make([]byte, 0, n)
	}
	if s, ok := p.bytes[c].Get().(*[]byte); ok {
		return (*s)[:0]
	}
	return make([]byte, 0, size)
}

// PutDecompressBytes keeps s for GetDecompressBytes; the client zeroed it.
func (p *slabPool) PutDecompressBytes(s []byte) {
	c := classDown(cap(s))
	if c < 0 || c >= classes {
		return
	}
	s = s[:0]
	p.bytes[c].Put(&s)
}
