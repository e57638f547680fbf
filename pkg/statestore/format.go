package statestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path"
	"strconv"
	"strings"
)

// File formats (all integers big-endian unless uvarint):
//
//	magic   [4]byte  "SSDL" (delta) or "SSSN" (snapshot)
//	format  byte     formatV1
//	version int64    must equal the version in the file name
//	count   uvarint  number of records
//	records          keys strictly ascending
//	crc     uint32   CRC-32C (Castagnoli) of every byte before it
//
// A delta record is: op byte (opSet/opDelete), uvarint key length, key, and
// for opSet a uvarint value length and the value. A snapshot record is a
// uvarint key length, key, uvarint value length, value (snapshots hold only
// live keys).
//
// The checksum covers the whole file, so truncation, bit flips and files that
// are not ours are all caught before anything is applied.

const (
	deltaMagic    = "SSDL"
	snapshotMagic = "SSSN"
	formatV1      = 1

	opSet    = 1
	opDelete = 2

	deltaExt      = ".delta"
	snapshotExt   = ".snapshot"
	versionDigits = 12
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrVersionMissing is returned (wrapped) by Load when the Location has files
// for the partition but cannot produce the requested version.
var ErrVersionMissing = errors.New("statestore: version missing")

// ErrCorrupt is wrapped by errors about files that fail to decode.
var ErrCorrupt = errors.New("statestore: corrupt file")

// Change is one key's new value in a batch; a nil Value deletes the key.
type Change struct {
	Key, Value []byte
	// Known says the caller knows whether Key is in the state before the
	// change (Existed), as a merge that read it does: the commit then need
	// not read it again to keep the key count. Not part of the files.
	Known, Existed bool
}

func deltaName(prefix string, v int64) string {
	return path.Join(prefix, fmt.Sprintf("%0*d%s", versionDigits, v, deltaExt))
}

func snapshotName(prefix string, v int64) string {
	return path.Join(prefix, fmt.Sprintf("%0*d%s", versionDigits, v, snapshotExt))
}

// parseName recognises the files this package writes directly under prefix.
// Anything else (other tools' files, deeper directories) is ignored.
func parseName(prefix, name string) (v int64, snapshot, ok bool) {
	base, found := strings.CutPrefix(name, prefix+"/")
	if !found || strings.Contains(base, "/") {
		return 0, false, false
	}
	var digits string
	switch {
	case strings.HasSuffix(base, deltaExt):
		digits = strings.TrimSuffix(base, deltaExt)
	case strings.HasSuffix(base, snapshotExt):
		digits, snapshot = strings.TrimSuffix(base, snapshotExt), true
	default:
		return 0, false, false
	}
	if len(digits) != versionDigits {
		return 0, false, false
	}
	v, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || v < 0 {
		return 0, false, false
	}
	return v, snapshot, true
}

func appendHeader(buf []byte, magic string, v int64, count int) []byte {
	buf = append(buf, magic...)
	buf = append(buf, formatV1)
	buf = binary.BigEndian.AppendUint64(buf, uint64(v))
	return binary.AppendUvarint(buf, uint64(count))
}

func appendBytes(buf, b []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(b)))
	return append(buf, b...)
}

func appendCRC(buf []byte) []byte {
	return binary.BigEndian.AppendUint32(buf, crc32.Checksum(buf, crcTable))
}

// encodeDelta encodes changes, which must already be normalised (sorted,
// unique keys; see normalise).
func encodeDelta(v int64, changes []Change) []byte {
	size := 32
	for _, c := range changes {
		size += len(c.Key) + len(c.Value) + 2*binary.MaxVarintLen32 + 1
	}
	buf := appendHeader(make([]byte, 0, size), deltaMagic, v, len(changes))
	for _, c := range changes {
		if c.Value == nil {
			buf = append(buf, opDelete)
			buf = appendBytes(buf, c.Key)
			continue
		}
		buf = append(buf, opSet)
		buf = appendBytes(buf, c.Key)
		buf = appendBytes(buf, c.Value)
	}
	return appendCRC(buf)
}

// snapshotEncoder builds a snapshot file record by record.
type snapshotEncoder struct {
	buf []byte
	n   int
}

func newSnapshotEncoder(v int64, count int) *snapshotEncoder {
	return &snapshotEncoder{buf: appendHeader(nil, snapshotMagic, v, count)}
}

func (e *snapshotEncoder) add(key, value []byte) {
	e.buf = appendBytes(e.buf, key)
	e.buf = appendBytes(e.buf, value)
	e.n++
}

func (e *snapshotEncoder) finish() []byte { return appendCRC(e.buf) }

// decoder reads one file; errors carry the file name.
type decoder struct {
	name string
	buf  []byte
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s: %s", ErrCorrupt, d.name, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.buf = d.buf[n:]
	return x
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("record runs past end of file")
		return nil
	}
	// Full slice expression: callers must not be able to append into the
	// next record.
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.fail("record runs past end of file")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

// open checks the checksum, magic, format and version and returns the record
// count. It leaves d.buf at the first record, without the trailing CRC.
func (d *decoder) open(magic string, v int64) int {
	const headerLen = 4 + 1 + 8
	if len(d.buf) < headerLen+1+4 {
		d.fail("too short (%d bytes)", len(d.buf))
		return 0
	}
	body, sum := d.buf[:len(d.buf)-4], binary.BigEndian.Uint32(d.buf[len(d.buf)-4:])
	if got := crc32.Checksum(body, crcTable); got != sum {
		d.fail("checksum mismatch (want %08x, got %08x): torn or foreign file", sum, got)
		return 0
	}
	if string(body[:4]) != magic {
		d.fail("bad magic %q, want %q", body[:4], magic)
		return 0
	}
	if body[4] != formatV1 {
		d.fail("unsupported format %d", body[4])
		return 0
	}
	if got := int64(binary.BigEndian.Uint64(body[5:13])); got != v {
		d.fail("holds version %d, want %d", got, v)
		return 0
	}
	d.buf = body[headerLen:]
	count := d.uvarint()
	// Every record takes at least two bytes; this bounds allocations driven
	// by a corrupt count that still passed the checksum (a foreign file).
	if d.err == nil && count > uint64(len(d.buf)) {
		d.fail("record count %d exceeds file size", count)
	}
	return int(count)
}

func (d *decoder) close(n, count int) {
	if d.err != nil {
		return
	}
	if n != count {
		d.fail("%d records, header says %d", n, count)
	} else if len(d.buf) != 0 {
		d.fail("%d trailing bytes", len(d.buf))
	}
}

// decodeDelta decodes a delta file. The returned changes alias data.
func decodeDelta(name string, v int64, data []byte) ([]Change, error) {
	d := &decoder{name: name, buf: data}
	count := d.open(deltaMagic, v)
	changes := make([]Change, 0, count)
	for i := 0; i < count && d.err == nil; i++ {
		op := d.byte()
		key := d.bytes()
		var value []byte
		switch op {
		case opSet:
			value = d.bytes()
			if value == nil {
				value = []byte{} // nil means delete; an empty value is a set
			}
		case opDelete:
		default:
			d.fail("unknown op %d", op)
		}
		if i > 0 && d.err == nil && bytes.Compare(changes[i-1].Key, key) >= 0 {
			// Unique keys are what makes the live-key count exact.
			d.fail("keys not strictly ascending at record %d", i)
		}
		changes = append(changes, Change{Key: key, Value: value})
	}
	d.close(len(changes), count)
	if d.err != nil {
		return nil, d.err
	}
	return changes, nil
}

// decodeSnapshot decodes a snapshot file; every pair is handed to fn in key
// order. Records alias data.
func decodeSnapshot(name string, v int64, data []byte, fn func(key, value []byte) error) (int, error) {
	d := &decoder{name: name, buf: data}
	count := d.open(snapshotMagic, v)
	var prev []byte
	n := 0
	for ; n < count && d.err == nil; n++ {
		key := d.bytes()
		value := d.bytes()
		if d.err != nil {
			break
		}
		if n > 0 && bytes.Compare(prev, key) >= 0 {
			d.fail("keys not strictly ascending at record %d", n)
			break
		}
		prev = key
		if value == nil {
			value = []byte{}
		}
		if err := fn(key, value); err != nil {
			return n, fmt.Errorf("statestore: apply %s: %w", name, err)
		}
	}
	d.close(n, count)
	return n, d.err
}

// fileCRC returns the checksum stored in a file's trailer (valid only for a
// file that has passed decoding, or that was just encoded).
func fileCRC(data []byte) uint32 {
	return binary.BigEndian.Uint32(data[len(data)-4:])
}

// checkedCRC returns a file's checksum if its trailer matches its content.
func checkedCRC(data []byte) (uint32, bool) {
	if len(data) < 4 {
		return 0, false
	}
	sum := fileCRC(data)
	return sum, crc32.Checksum(data[:len(data)-4], crcTable) == sum
}
