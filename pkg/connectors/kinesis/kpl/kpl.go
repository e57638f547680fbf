// Package kpl reads and writes the record aggregation format of the Kinesis
// Producer Library (KPL): one Kinesis record that carries many user records.
//
// An aggregated record is the 4 magic bytes F3 89 9A C2, a protobuf
// AggregatedRecord, and the 16-byte MD5 digest of that protobuf:
//
//	message AggregatedRecord {
//	  repeated string partition_key_table     = 1;
//	  repeated string explicit_hash_key_table = 2;
//	  repeated Record records                 = 3;
//	}
//	message Record {
//	  required uint64 partition_key_index     = 1;
//	  optional uint64 explicit_hash_key_index = 2;
//	  required bytes  data                    = 3;
//	  repeated Tag    tags                    = 4;
//	}
//	message Tag { required string key = 1; optional string value = 2; }
//
// Deaggregate splits such a record into its user records, in order; the
// index of a user record in that order is its sub-sequence number. Data
// without the magic prefix is not aggregated (ErrNotAggregated); data with
// the prefix whose digest or protobuf is wrong is corrupt (ErrCorrupt), and
// what happens to it is the caller's policy.
//
// The protobuf is parsed with protowire by hand: the schema is tiny and
// fixed, and a generated type would drag a .proto file into a package that
// only needs to read four fields.
package kpl

import (
	"bytes"
	"crypto/md5" //nolint:gosec // the KPL format's checksum, not a security measure
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// Magic starts every aggregated record.
var Magic = []byte{0xF3, 0x89, 0x9A, 0xC2}

const digestLen = md5.Size

// ErrNotAggregated is returned for data without the KPL magic prefix: a
// plain Kinesis record.
var ErrNotAggregated = errors.New("not a KPL aggregated record")

// ErrCorrupt marks data that starts with the KPL magic but cannot be read.
var ErrCorrupt = errors.New("corrupt KPL aggregated record")

// CorruptError says why an aggregated record could not be read.
type CorruptError struct{ Reason string }

func (e *CorruptError) Error() string { return "corrupt KPL aggregated record: " + e.Reason }

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(format string, args ...any) error {
	return &CorruptError{Reason: fmt.Sprintf(format, args...)}
}

// Record is one user record.
type Record struct {
	PartitionKey string
	// ExplicitHashKey is empty when the producer set none.
	ExplicitHashKey string
	Data            []byte
}

// IsAggregated reports whether data carries the magic prefix and room for a
// digest, i.e. whether Deaggregate will try to read it.
func IsAggregated(data []byte) bool {
	return len(data) >= len(Magic)+digestLen && bytes.HasPrefix(data, Magic)
}

// Deaggregate returns the user records of an aggregated record, in order.
// The returned Data slices alias data. Errors: ErrNotAggregated for plain
// data; a *CorruptError (errors.Is ErrCorrupt) when the digest does not
// match, the protobuf is malformed, an index points outside its table, or
// the aggregate holds no records.
func Deaggregate(data []byte) ([]Record, error) {
	if !IsAggregated(data) {
		return nil, ErrNotAggregated
	}
	body := data[len(Magic) : len(data)-digestLen]
	sum := md5.Sum(body) //nolint:gosec // format checksum
	if !bytes.Equal(sum[:], data[len(data)-digestLen:]) {
		return nil, corrupt("MD5 digest does not match its %d-byte body", len(body))
	}

	var (
		keys, hashKeys []string
		raws           [][]byte
	)
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, corrupt("aggregated record: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if typ != protowire.BytesType || num < 1 || num > 3 {
			// Unknown fields are skipped, as protobuf readers do.
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, corrupt("aggregated record field %d: %v", num, protowire.ParseError(m))
			}
			b = b[m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b)
		if m < 0 {
			return nil, corrupt("aggregated record field %d: %v", num, protowire.ParseError(m))
		}
		b = b[m:]
		switch num {
		case 1:
			keys = append(keys, string(v))
		case 2:
			hashKeys = append(hashKeys, string(v))
		case 3:
			raws = append(raws, v)
		}
	}
	if len(raws) == 0 {
		return nil, corrupt("holds no user records")
	}
	out := make([]Record, len(raws))
	for i, raw := range raws {
		r, err := parseRecord(raw, keys, hashKeys)
		if err != nil {
			return nil, corrupt("user record %d: %v", i, err)
		}
		out[i] = r
	}
	return out, nil
}

func parseRecord(b []byte, keys, hashKeys []string) (Record, error) {
	var (
		r                   Record
		haveKey, haveData   bool
		keyIndex, hashIndex uint64
		haveHash            bool
	)
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return r, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case (num == 1 || num == 2) && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return r, protowire.ParseError(m)
			}
			b = b[m:]
			if num == 1 {
				keyIndex, haveKey = v, true
			} else {
				hashIndex, haveHash = v, true
			}
		case num == 3 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return r, protowire.ParseError(m)
			}
			b = b[m:]
			r.Data, haveData = v, true
		default: // tags (4) and unknown fields carry nothing we deliver
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return r, protowire.ParseError(m)
			}
			b = b[m:]
		}
	}
	switch {
	case !haveKey:
		return r, errors.New("no partition key index")
	case !haveData:
		return r, errors.New("no data")
	case keyIndex >= uint64(len(keys)):
		return r, fmt.Errorf("partition key index %d outside a table of %d", keyIndex, len(keys))
	case haveHash && hashIndex >= uint64(len(hashKeys)):
		return r, fmt.Errorf("explicit hash key index %d outside a table of %d", hashIndex, len(hashKeys))
	}
	r.PartitionKey = keys[keyIndex]
	if haveHash {
		r.ExplicitHashKey = hashKeys[hashIndex]
	}
	if r.Data == nil {
		r.Data = []byte{}
	}
	return r, nil
}

// Aggregate encodes records as one aggregated record, as the KPL does:
// partition keys and explicit hash keys are stored once each in their
// tables. It fails on an empty list. Callers choose how many records to put
// in one aggregate; the KPL keeps the result under the 1 MiB record limit.
func Aggregate(records []Record) ([]byte, error) {
	if len(records) == 0 {
		return nil, errors.New("kpl: aggregate of no records")
	}
	keyIdx, hashIdx := map[string]uint64{}, map[string]uint64{}
	var keys, hashKeys []string
	var body []byte
	var recs [][]byte
	for _, r := range records {
		ki, ok := keyIdx[r.PartitionKey]
		if !ok {
			ki = uint64(len(keys))
			keyIdx[r.PartitionKey] = ki
			keys = append(keys, r.PartitionKey)
		}
		var rec []byte
		rec = protowire.AppendTag(rec, 1, protowire.VarintType)
		rec = protowire.AppendVarint(rec, ki)
		if r.ExplicitHashKey != "" {
			hi, ok := hashIdx[r.ExplicitHashKey]
			if !ok {
				hi = uint64(len(hashKeys))
				hashIdx[r.ExplicitHashKey] = hi
				hashKeys = append(hashKeys, r.ExplicitHashKey)
			}
			rec = protowire.AppendTag(rec, 2, protowire.VarintType)
			rec = protowire.AppendVarint(rec, hi)
		}
		rec = protowire.AppendTag(rec, 3, protowire.BytesType)
		rec = protowire.AppendBytes(rec, r.Data)
		recs = append(recs, rec)
	}
	for _, k := range keys {
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, k)
	}
	for _, h := range hashKeys {
		body = protowire.AppendTag(body, 2, protowire.BytesType)
		body = protowire.AppendString(body, h)
	}
	for _, rec := range recs {
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, rec)
	}
	sum := md5.Sum(body) //nolint:gosec // format checksum
	out := make([]byte, 0, len(Magic)+len(body)+digestLen)
	out = append(out, Magic...)
	out = append(out, body...)
	return append(out, sum[:]...), nil
}
