//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/stream"
)

// mapState is a state partition in memory, as a statestore holds it.
type mapState map[string][]byte

func (m mapState) Get(key []byte) ([]byte, bool, error) { v, ok := m[string(key)]; return v, ok, nil }
func (m mapState) Scan(fn func(k, v []byte) error) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := fn([]byte(k), m[k]); err != nil {
			return err
		}
	}
	return nil
}

// partials runs the task query over JSON transactions (one task).
func partials(t *testing.T, p *Pipeline, txs []string) []byte {
	t.Helper()
	b := columnar.NewBuilder(memory.DefaultAllocator, p.Source())
	defer b.Release()
	for i, tx := range txs {
		if err := b.Append(stream.Row{"topic": "t", "partition": int64(0), "offset": int64(i), "value": []byte(tx)}); err != nil {
			t.Fatal(err)
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	in, err := array.NewRecordReader(p.Source(), []arrow.RecordBatch{rec})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Release()
	out, err := p.RunTask(context.Background(), in, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Release()
	var batches []arrow.RecordBatch
	for out.Next() {
		r := out.RecordBatch()
		r.Retain()
		batches = append(batches, r)
	}
	data, err := columnar.EncodeIPC(p.PartialSchema(), batches)
	for _, r := range batches {
		r.Release()
	}
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func tx(branch string, amount int) string {
	b, _ := json.Marshal(map[string]any{"branch": branch, "amount": amount})
	return string(b)
}

// TestMergeState runs a stateful aggregate batch after batch over 3 state
// partitions, as the driver routes and the state tasks merge, and checks
// each batch's output rows and the running state against a model.
func TestMergeState(t *testing.T) {
	eng := engine(t)
	ctx := context.Background()
	for _, mode := range []OutputMode{Update, Complete} {
		t.Run(string(mode), func(t *testing.T) {
			p, err := Compile(ctx, eng, Config{Source: columnar.KafkaSchema(false), OutputMode: mode, Steps: []Step{
				decodeJSON("branch STRING, amount BIGINT"),
				query(1, "tx", "select branch, sum(amount) as total, count(*) as n, count(distinct amount) as amounts, max(amount) as top from tx group by branch"),
			}})
			if err != nil {
				t.Fatal(err)
			}
			if !p.Stateful() || p.OutputMode() != mode {
				t.Fatalf("Stateful %v, OutputMode %q", p.Stateful(), p.OutputMode())
			}
			const parts = 3
			states := make([]mapState, parts)
			for i := range states {
				states[i] = mapState{}
			}
			type agg struct {
				total, n int64
				amounts  map[int]bool
				top      int64
			}
			model := map[string]*agg{}
			batches := [][][]string{ // batches of tasks of transactions
				{{tx("a", 1), tx("b", 2)}, {tx("a", 3), tx("c", 4)}},
				{{tx("a", 1)}, {}},
				{{tx("d", 9), tx("b", -2), tx("b", -2)}},
				{},
			}
			for bi, tasks := range batches {
				changed := map[string]bool{}
				var ipc [][]byte
				for _, task := range tasks {
					ipc = append(ipc, partials(t, p, task))
					for _, s := range task {
						var v struct {
							Branch string
							Amount int
						}
						_ = json.Unmarshal([]byte(s), &v)
						a := model[v.Branch]
						if a == nil {
							a = &agg{amounts: map[int]bool{}, top: int64(v.Amount)}
							model[v.Branch] = a
						}
						a.total += int64(v.Amount)
						a.n++
						a.amounts[v.Amount] = true
						a.top = max(a.top, int64(v.Amount))
						changed[v.Branch] = true
					}
				}
				shares, err := p.Route(ipc, parts)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for i, share := range shares {
					mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
					res, err := p.MergeState(ctx, mem, states[i], share, time.Now())
					mem.AssertSize(t, 0)
					if err != nil {
						t.Fatalf("batch %d partition %d: %v", bi, i, err)
					}
					for _, c := range res.Changes {
						if StatePartition(c.Key, parts) != i {
							t.Errorf("batch %d: a group of partition %d changed in %d", bi, StatePartition(c.Key, parts), i)
						}
						states[i][string(c.Key)] = c.Value
					}
					for _, r := range res.Rows {
						got = append(got, fmt.Sprintf("%v %v %v %v %v", r["branch"], r["total"], r["n"], r["amounts"], r["top"]))
					}
				}
				var want []string
				for b, a := range model {
					if mode == Complete || changed[b] {
						want = append(want, fmt.Sprintf("%v %v %v %v %v", b, a.total, a.n, len(a.amounts), a.top))
					}
				}
				sort.Strings(got)
				sort.Strings(want)
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("batch %d output:\n got %q\nwant %q", bi, got, want)
				}
			}
		})
	}
}
