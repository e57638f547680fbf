package kafka

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestSlabPoolClasses(t *testing.T) {
	for _, tc := range []struct{ n, up, size int }{
		{0, 12, 8}, {1, 12, 8}, {8, 12, 8}, {9, 13, 10}, {10, 13, 10}, {11, 14, 12}, {16, 16, 16},
		{1000, 40, 1024}, {1024, 40, 1024}, {1025, 41, 1280}, {5000, 49, 5120}, {1 << 27, 108, 1 << 27},
	} {
		if c, size := classUp(tc.n); c != tc.up || size != tc.size {
			t.Errorf("classUp(%d) = %d, %d; want %d, %d", tc.n, c, size, tc.up, tc.size)
		}
		// A slice of the class's size goes back to the class.
		if c := classDown(tc.size); c != tc.up {
			t.Errorf("classDown(%d) = %d, want %d", tc.size, c, tc.up)
		}
	}
	for _, tc := range []struct{ c, down int }{{0, -1}, {7, -1}, {9, 12}, {1279, 40}, {1280, 41}, {1<<28 - 1, 111}, {1 << 28, 112}} {
		if got := classDown(tc.c); got != tc.down {
			t.Errorf("classDown(%d) = %d, want %d", tc.c, got, tc.down)
		}
	}
}

// Lent slices are empty and big enough; a slab given back is zeroed in
// full, records franz-go decoded but did not hand out included.
func TestSlabPoolLends(t *testing.T) {
	p := &slabPool{}
	for _, n := range []int{1, 3, 1000, 1024, 1025} {
		if s := p.GetRecords(n); len(s) != 0 || cap(s) < n {
			t.Errorf("GetRecords(%d): len %d cap %d", n, len(s), cap(s))
		}
	}
	slab := make([]kgo.Record, 16)
	slab[15] = kgo.Record{Value: []byte("kept alive"), Offset: 7}
	p.PutRecords(slab[:1])
	if slab[15].Value != nil || slab[15].Offset != 0 {
		t.Errorf("PutRecords left %+v in its slab", slab[15])
	}

	snappy := func(claim uint64, size int) []byte {
		b := binary.AppendUvarint(nil, claim)
		return append(b, make([]byte, size-len(b))...)
	}
	for _, tc := range []struct {
		name       string
		compressed []byte
		codec      kgo.CompressionCodecType
		min, max   int
	}{
		{"snappy: the decoded length", snappy(3000, 300), kgo.CodecSnappy, 3000, 3072},
		{"snappy: a claim past any ratio is not believed", snappy(1<<30, 100), kgo.CodecSnappy, 400, 448},
		{"other codecs: four times", make([]byte, 100), kgo.CodecZstd, 400, 448},
	} {
		s := p.GetDecompressBytes(tc.compressed, tc.codec)
		if len(s) != 0 || cap(s) < tc.min || cap(s) > tc.max {
			t.Errorf("%s: len %d cap %d, want 0 and %d-%d", tc.name, len(s), cap(s), tc.min, tc.max)
		}
	}
}

// TestSlabsComeBackZeroed: a slab the sink took (as recordMaker.records
// does) and gave back holds nothing of its records (no bytes of the batch
// it carried stay alive, and records is handed zero records, as record
// expects), round after round.
func TestSlabsComeBackZeroed(t *testing.T) {
	for range 3 {
		slab := slabs.GetRecords(4)[:4]
		for i := range slab {
			if slab[i].Value != nil || slab[i].Topic != "" || slab[i].Offset != 0 {
				t.Fatalf("record %d of a slab from the pool is %+v", i, slab[i])
			}
			slab[i] = kgo.Record{Topic: "t", Value: []byte("v"), Offset: int64(i + 1)}
		}
		slabs.PutRecords(slab)
		for i := range slab[:cap(slab)] {
			if slab[:cap(slab)][i].Value != nil {
				t.Fatalf("record %d kept its value after PutRecords", i)
			}
		}
	}
	if big := slabs.GetRecords(1 << 10); cap(big) < 1<<10 {
		t.Fatalf("GetRecords(1024) has room for %d records", cap(big))
	}
}
