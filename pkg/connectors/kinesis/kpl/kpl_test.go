package kpl

import (
	"bytes"
	"crypto/md5" //nolint:gosec // format checksum
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
)

func TestRoundTrip(t *testing.T) {
	in := []Record{
		{PartitionKey: "a", Data: []byte("one")},
		{PartitionKey: "b", ExplicitHashKey: "42", Data: []byte("two")},
		{PartitionKey: "a", Data: []byte{}},
		{PartitionKey: "c", ExplicitHashKey: "42", Data: bytes.Repeat([]byte{0}, 300)},
	}
	agg, err := Aggregate(in)
	if err != nil {
		t.Fatal(err)
	}
	if !IsAggregated(agg) {
		t.Fatal("IsAggregated = false for an aggregate")
	}
	out, err := Deaggregate(agg)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Fatalf("round trip (-in +out):\n%s", diff)
	}
}

func TestNotAggregated(t *testing.T) {
	for _, data := range [][]byte{nil, []byte(`{"id":1}`), Magic, append(append([]byte{}, Magic...), 1, 2, 3)} {
		if _, err := Deaggregate(data); !errors.Is(err, ErrNotAggregated) {
			t.Errorf("Deaggregate(%x) err = %v, want ErrNotAggregated", data, err)
		}
	}
}

// wrap frames a protobuf body as an aggregate with a correct digest.
func wrap(body []byte) []byte {
	sum := md5.Sum(body) //nolint:gosec // format checksum
	return append(append(append([]byte{}, Magic...), body...), sum[:]...)
}

func TestCorrupt(t *testing.T) {
	good, err := Aggregate([]Record{{PartitionKey: "k", Data: []byte("x")}})
	if err != nil {
		t.Fatal(err)
	}
	badDigest := append([]byte{}, good...)
	badDigest[len(badDigest)-1] ^= 0xff

	var keyOut []byte // a record pointing at partition key 3 of a table of 1
	{
		var rec []byte
		rec = protowire.AppendTag(rec, 1, protowire.VarintType)
		rec = protowire.AppendVarint(rec, 3)
		rec = protowire.AppendTag(rec, 3, protowire.BytesType)
		rec = protowire.AppendBytes(rec, []byte("x"))
		keyOut = protowire.AppendTag(keyOut, 1, protowire.BytesType)
		keyOut = protowire.AppendString(keyOut, "k")
		keyOut = protowire.AppendTag(keyOut, 3, protowire.BytesType)
		keyOut = protowire.AppendBytes(keyOut, rec)
	}
	var noData []byte
	{
		var rec []byte
		rec = protowire.AppendTag(rec, 1, protowire.VarintType)
		rec = protowire.AppendVarint(rec, 0)
		noData = protowire.AppendTag(noData, 1, protowire.BytesType)
		noData = protowire.AppendString(noData, "k")
		noData = protowire.AppendTag(noData, 3, protowire.BytesType)
		noData = protowire.AppendBytes(noData, rec)
	}
	var empty []byte
	empty = protowire.AppendTag(empty, 1, protowire.BytesType)
	empty = protowire.AppendString(empty, "k")

	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"digest", badDigest, "MD5"},
		{"truncated protobuf", wrap([]byte{0x1a, 0x10, 0x01}), "aggregated record"},
		{"key index out of table", wrap(keyOut), "partition key index 3"},
		{"record without data", wrap(noData), "no data"},
		{"no records", wrap(empty), "no user records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Deaggregate(tt.data)
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("err = %v, want a CorruptError mentioning %q", err, tt.want)
			}
		})
	}
}

func TestAggregateOfNothing(t *testing.T) {
	if _, err := Aggregate(nil); err == nil {
		t.Fatal("Aggregate(nil) succeeded")
	}
}

// FuzzDeaggregate: for any input, Deaggregate either returns
// ErrNotAggregated (exactly when the magic prefix or the room for a digest
// is missing), a CorruptError, or records that re-aggregate to records equal
// to themselves; it never panics.
func FuzzDeaggregate(f *testing.F) {
	seed, _ := Aggregate([]Record{{PartitionKey: "a", Data: []byte("1")}, {PartitionKey: "b", ExplicitHashKey: "7", Data: []byte("2")}})
	f.Add(seed)
	f.Add([]byte("plain"))
	f.Add(wrap([]byte{0x1a, 0x02, 0x08, 0x00}))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := Deaggregate(data)
		switch {
		case errors.Is(err, ErrNotAggregated):
			if IsAggregated(data) {
				t.Fatalf("ErrNotAggregated for data with the prefix: %x", data)
			}
		case errors.Is(err, ErrCorrupt):
		case err != nil:
			t.Fatalf("unexpected error kind: %v", err)
		default:
			again, err := Aggregate(recs)
			if err != nil {
				t.Fatal(err)
			}
			recs2, err := Deaggregate(again)
			if err != nil {
				t.Fatalf("re-aggregated records do not deaggregate: %v", err)
			}
			if diff := cmp.Diff(recs, recs2); diff != "" {
				t.Fatalf("re-aggregation changed records:\n%s", diff)
			}
		}
	})
}

func BenchmarkDeaggregate(b *testing.B) {
	var in []Record
	for i := range 100 {
		in = append(in, Record{PartitionKey: fmt.Sprint(i % 10), Data: bytes.Repeat([]byte("x"), 200)})
	}
	agg, _ := Aggregate(in)
	b.SetBytes(int64(len(agg)))
	for b.Loop() {
		if _, err := Deaggregate(agg); err != nil {
			b.Fatal(err)
		}
	}
}
