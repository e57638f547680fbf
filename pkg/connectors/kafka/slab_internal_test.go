package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSlabsComeBackZeroed: a slab given back holds nothing of its records
// (no bytes of the batch it carried stay alive, and records is handed zero
// records, as record expects), and a slab too small for a batch is not
// reused for it.
func TestSlabsComeBackZeroed(t *testing.T) {
	for range 3 {
		slab := getSlab(4)
		if len(slab) != 4 {
			t.Fatalf("getSlab(4) has %d records", len(slab))
		}
		for i := range slab {
			if slab[i].Value != nil || slab[i].Topic != "" || slab[i].Offset != 0 {
				t.Fatalf("record %d of a slab from the pool is %+v", i, slab[i])
			}
			slab[i] = kgo.Record{Topic: "t", Value: []byte("v"), Offset: int64(i + 1)}
		}
		putSlab(slab)
		for i := range slab[:cap(slab)] {
			if slab[:cap(slab)][i].Value != nil {
				t.Fatalf("record %d kept its value after putSlab", i)
			}
		}
	}
	big := getSlab(1 << 10)
	if len(big) != 1<<10 {
		t.Fatalf("getSlab(1024) has %d records", len(big))
	}
}
