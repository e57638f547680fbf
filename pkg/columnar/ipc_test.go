package columnar

import (
	"reflect"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/stream"
)

// batches builds one batch per group of rows; an empty group is an empty batch.
func batches(t *testing.T, mem memory.Allocator, s *arrow.Schema, groups ...[]stream.Row) []arrow.RecordBatch {
	t.Helper()
	b := NewBuilder(mem, s)
	defer b.Release()
	var out []arrow.RecordBatch
	for _, g := range groups {
		for _, r := range g {
			if err := b.Append(r); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, b.NewRecordBatch())
	}
	return out
}

func TestIPCRoundTrip(t *testing.T) {
	s := KafkaSchema(true)
	r1 := kafkaRow([]byte("a"), []byte(`{"n":1}`), 1)
	r1["headers"] = []any{map[string]any{"key": "h", "value": nil}}
	r2 := kafkaRow(nil, nil, 2)
	r2["headers"] = nil
	tests := []struct {
		name   string
		groups [][]stream.Row
	}{
		{"zero batches", nil},
		{"one empty batch", [][]stream.Row{{}}},
		{"one batch", [][]stream.Row{{r1, r2}}},
		{"several with an empty one", [][]stream.Row{{r1}, {}, {r2, r1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := checkedMem(t)
			in := batches(t, mem, s, tt.groups...)
			data, err := EncodeIPC(s, in)
			for _, rec := range in {
				rec.Release()
			}
			if err != nil {
				t.Fatalf("EncodeIPC: %v", err)
			}
			gotSchema, out, err := DecodeIPC(mem, data)
			if err != nil {
				t.Fatalf("DecodeIPC: %v", err)
			}
			defer func() {
				for _, rec := range out {
					rec.Release()
				}
			}()
			if !gotSchema.Equal(s) {
				t.Errorf("schema %s, want %s", gotSchema, s)
			}
			if len(out) != len(tt.groups) {
				t.Fatalf("%d batches, want %d", len(out), len(tt.groups))
			}
			for i, rec := range out {
				rows, err := AppendRows(nil, rec)
				if err != nil {
					t.Fatalf("batch %d: %v", i, err)
				}
				if want := tt.groups[i]; len(rows) != len(want) || (len(want) > 0 && !reflect.DeepEqual(rows, want)) {
					t.Errorf("batch %d:\n got %#v\nwant %#v", i, rows, want)
				}
			}
		})
	}
}

func TestIPCErrors(t *testing.T) {
	mem := checkedMem(t)
	kinesis := batches(t, mem, KinesisSchema(), []stream.Row{{"data": []byte("x")}})
	defer kinesis[0].Release()
	if _, err := EncodeIPC(KafkaSchema(false), kinesis); err == nil || !strings.Contains(err.Error(), "batch 0: schema") {
		t.Errorf("EncodeIPC with a foreign batch: err = %v, want a schema mismatch naming batch 0", err)
	}

	good, err := EncodeIPC(KinesisSchema(), kinesis)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "decode ipc: read schema"},
		{"garbage", []byte("not an arrow stream at all"), "decode ipc"},
		{"truncated batch", good[:len(good)-20], "decode ipc: batch 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := checkedMem(t)
			s, recs, err := DecodeIPC(mem, tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
			if s != nil || recs != nil {
				t.Errorf("got schema %v and %d batches with an error", s, len(recs))
			}
		})
	}
}
