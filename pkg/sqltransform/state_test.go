//go:build duckdb_arrow

package sqltransform

import (
	"bytes"
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
	"github.com/google/go-cmp/cmp"

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
	// As a Pebble iterator, hand out memory that the next key overwrites:
	// a caller that keeps a key must copy it.
	var kb, vb []byte
	for _, k := range keys {
		kb, vb = append(kb[:0], k...), append(vb[:0], m[k]...)
		if err := fn(kb, vb); err != nil {
			return err
		}
	}
	return nil
}

func (m mapState) ScanPrefix(prefix []byte, fn func(k, v []byte) error) error {
	return m.Scan(func(k, v []byte) error {
		if !bytes.HasPrefix(k, prefix) {
			return nil
		}
		return fn(k, v)
	})
}

// partials runs the task query over JSON transactions (one task).
func partials(t *testing.T, p *Pipeline, txs []string) []byte {
	t.Helper()
	rows := make([]stream.Row, len(txs))
	for i, tx := range txs {
		rows[i] = stream.Row{"topic": "t", "partition": int64(0), "offset": int64(i), "value": []byte(tx)}
	}
	return rowsIPC(t, p, rows)
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
				routed, err := p.Route(ipc, parts)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for i, share := range routed.Shares {
					mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
					res, err := p.MergeState(ctx, mem, states[i], share, time.Now(), Watermarks{})
					mem.AssertSize(t, 0)
					if err != nil {
						t.Fatalf("batch %d partition %d: %v", bi, i, err)
					}
					for _, c := range res.Changes {
						if StatePartition(c.Key, parts) != i {
							t.Errorf("batch %d: a group of partition %d changed in %d", bi, StatePartition(c.Key, parts), i)
						}
						if c.Value == nil {
							t.Errorf("batch %d: group removed without a watermark", bi)
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

// kafkaPartials runs the task query over records with the given timestamps.
func kafkaPartials(t *testing.T, p *Pipeline, ts []time.Time) []byte {
	t.Helper()
	rows := make([]stream.Row, len(ts))
	for i, x := range ts {
		rows[i] = stream.Row{"topic": "t", "partition": int64(0), "offset": int64(i), "timestamp": x, "value": []byte("v")}
	}
	return rowsIPC(t, p, rows)
}

// TestMergeStateWatermark counts records per 1-minute window of Kafka's
// timestamp with a 10-second watermark, batch after batch, as the driver
// and the state tasks do, and checks against a model: append mode writes
// each window once, when the watermark passes its end, with its exact
// count; update mode writes changed windows and forgets complete ones;
// records of windows already complete are dropped and counted.
func TestMergeStateWatermark(t *testing.T) {
	eng := engine(t)
	ctx := context.Background()
	const delay = 10 * time.Second
	base := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	at := func(sec int) time.Time { return base.Add(time.Duration(sec) * time.Second) }
	batches := [][][]int{ // batches of tasks of event times, seconds after base
		{{5, 20, 59}, {61}},
		{{62, 65}},             // max 65: watermark 55, nothing complete
		{{3, 75}, {130}},       // 3 counts (window 0-60 still open at 55); max 130 → watermark 120: windows 0 and 60 complete
		{{10, 100, 125}},       // 10 and 100: windows complete, dropped; 125 counts
		{{300}},                // watermark 290: window 120 complete
		{},                     // nothing: nothing happens
		{{119, 179, 301, 302}}, // 119 and 179 late (windows 60, 120 ended at or before 290); 301, 302 count
	}
	for _, mode := range []OutputMode{Append, Update} {
		t.Run(string(mode), func(t *testing.T) {
			p, err := Compile(ctx, eng, Config{Source: columnar.KafkaSchema(false), OutputMode: mode, WatermarkColumn: "timestamp", Steps: []Step{
				query(0, "", "select window(timestamp, '1 minute').start as ws, count(*) as n from source group by window(timestamp, '1 minute')"),
			}})
			if err != nil {
				t.Fatal(err)
			}
			const parts = 2
			states := []mapState{{}, {}}
			var maxSeen time.Time
			counts := map[int]int64{} // window start (seconds) → records counted
			written := map[int]int64{}
			complete := map[int]bool{}
			var droppedWant, droppedGot int64
			for bi, tasks := range batches {
				late := time.Time{}
				if !maxSeen.IsZero() {
					late = maxSeen.Add(-delay)
				}
				var ipc [][]byte
				changed := map[int]bool{}
				for _, task := range tasks {
					var ts []time.Time
					for _, sec := range task {
						ts = append(ts, at(sec))
						w := sec / 60 * 60
						if !late.IsZero() && !at(w+60).After(late) {
							droppedWant++
							continue
						}
						counts[w]++
						changed[w] = true
					}
					ipc = append(ipc, kafkaPartials(t, p, ts))
				}
				routed, err := p.Route(ipc, parts)
				if err != nil {
					t.Fatal(err)
				}
				if routed.MaxEventTime.After(maxSeen) {
					maxSeen = routed.MaxEventTime
				}
				wm := Watermarks{Late: late}
				if !maxSeen.IsZero() {
					wm.Complete = maxSeen.Add(-delay)
				}
				got := map[int]int64{}
				for i, share := range routed.Shares {
					mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
					res, err := p.MergeState(ctx, mem, states[i], share, base, wm)
					mem.AssertSize(t, 0)
					if err != nil {
						t.Fatalf("batch %d partition %d: %v", bi, i, err)
					}
					droppedGot += res.Dropped
					for _, c := range res.Changes {
						if c.Value == nil {
							delete(states[i], string(c.Key))
						} else {
							states[i][string(c.Key)] = c.Value
						}
					}
					for _, r := range res.Rows {
						ws := int(r["ws"].(time.Time).Sub(base) / time.Second)
						if _, dup := got[ws]; dup {
							t.Errorf("batch %d: window %d written twice", bi, ws)
						}
						got[ws] = r["n"].(int64)
					}
				}
				want := map[int]int64{}
				for w, n := range counts {
					isComplete := !at(w + 60).After(wm.Complete)
					switch {
					case mode == Append && isComplete && !complete[w]:
						want[w] = n
					case mode == Update && changed[w]:
						want[w] = n
					}
					if isComplete {
						complete[w] = true
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("batch %d (late %s, complete %s) output (-want +got):\n%s", bi, late.Format(time.TimeOnly), wm.Complete.Format(time.TimeOnly), diff)
				}
				for w, n := range got {
					written[w] += n
				}
				var open int
				for w := range counts {
					if !complete[w] {
						open++
					}
				}
				if n := len(states[0]) + len(states[1]); n != open {
					t.Errorf("batch %d: %d groups in the state, want the %d open windows", bi, n, open)
				}
			}
			if droppedGot != droppedWant || droppedWant == 0 {
				t.Errorf("dropped %d records, want %d", droppedGot, droppedWant)
			}
			if mode == Append {
				for w := range complete {
					if written[w] != counts[w] {
						t.Errorf("window %d: written %d, counted %d", w, written[w], counts[w])
					}
				}
			}
		})
	}
}

// TestMergeDedup drops duplicate rows batch after batch over 2 state
// partitions with a watermark: a key is written once until the watermark
// passes its first event time plus within, late rows are dropped, and
// duplicates within one batch count too.
func TestMergeDedup(t *testing.T) {
	eng := engine(t)
	ctx := context.Background()
	p, err := Compile(ctx, eng, Config{Source: columnar.KafkaSchema(false), WatermarkColumn: "timestamp",
		DropDuplicates: &Dedup{Columns: []string{"id"}, Within: time.Minute},
		Steps: []Step{
			decodeJSON("id BIGINT"),
			query(1, "ev", "select id, timestamp from ev"),
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Dedups() || p.Aggregating() {
		t.Fatalf("Dedups %v, Aggregating %v", p.Dedups(), p.Aggregating())
	}
	const delay = 10 * time.Second
	base := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	type ev struct{ id, sec int }
	batches := []struct {
		events           []ev
		want             []int // ids written
		dups, late, gone int64
	}{
		{events: []ev{{1, 0}, {2, 5}, {1, 6}}, want: []int{1, 2}, dups: 1},
		{events: []ev{{2, 20}, {3, 35}}, want: []int{3}, dups: 1},
		// max 100 → watermark 90: keys 1, 2 (first seen 0, 5; +60 ≤ 90) go.
		{events: []ev{{4, 100}}, want: []int{4}, gone: 2},
		// late: 50 ≤ watermark 90. Key 1 again: forgotten, written again.
		{events: []ev{{5, 50}, {1, 95}, {3, 96}}, want: []int{1}, late: 1, dups: 1},
	}
	states := []mapState{{}, {}}
	var maxSeen time.Time
	for bi, b := range batches {
		var vals []stream.Row
		for i, e := range b.events {
			vals = append(vals, stream.Row{"topic": "t", "partition": int64(0), "offset": int64(i),
				"timestamp": base.Add(time.Duration(e.sec) * time.Second), "value": []byte(fmt.Sprintf(`{"id": %d}`, e.id))})
		}
		routed, err := p.Route([][]byte{rowsIPC(t, p, vals)}, 2)
		if err != nil {
			t.Fatal(err)
		}
		var wm Watermarks
		if !maxSeen.IsZero() {
			wm.Late = maxSeen.Add(-delay)
		}
		if routed.MaxEventTime.After(maxSeen) {
			maxSeen = routed.MaxEventTime
		}
		wm.Complete = maxSeen.Add(-delay)
		var got []int
		var dups, late, gone int64
		for i, share := range routed.Shares {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			res, err := p.MergeState(ctx, mem, states[i], share, base, wm)
			mem.AssertSize(t, 0)
			if err != nil {
				t.Fatalf("batch %d: %v", bi, err)
			}
			for _, c := range res.Changes {
				if c.Value == nil {
					delete(states[i], string(c.Key))
				} else {
					states[i][string(c.Key)] = c.Value
				}
			}
			for _, r := range res.Rows {
				got = append(got, int(r["id"].(int64)))
			}
			dups, late, gone = dups+res.Duplicates, late+res.Dropped, gone+res.Removed
		}
		sort.Ints(got)
		if diff := cmp.Diff(b.want, got); diff != "" || dups != b.dups || late != b.late || gone != b.gone {
			t.Errorf("batch %d: written (-want +got) %s; duplicates %d (want %d), late %d (want %d), forgotten %d (want %d)",
				bi, diff, dups, b.dups, late, b.late, gone, b.gone)
		}
	}
}

// rowsIPC runs the task query over records and encodes its output.
func rowsIPC(t *testing.T, p *Pipeline, rows []stream.Row) []byte {
	t.Helper()
	b := columnar.NewBuilder(memory.DefaultAllocator, p.Source())
	defer b.Release()
	for _, r := range rows {
		if err := b.Append(r); err != nil {
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
	releaseBatches(batches)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestStateSignature: what the state holds decides the signature, not how
// the query is written.
func TestStateSignature(t *testing.T) {
	eng := engine(t)
	ctx := context.Background()
	sig := func(q string) string {
		t.Helper()
		p, err := Compile(ctx, eng, Config{Source: columnar.KafkaSchema(false), OutputMode: Update, Steps: []Step{
			decodeJSON("branch STRING, amount BIGINT"), query(1, "tx", q)}})
		if err != nil {
			t.Fatal(err)
		}
		return p.StateSignature()
	}
	base := sig("select branch, sum(amount) as s, count(*) as n from tx group by branch")
	for q, same := range map[string]bool{
		"SELECT Branch,  SUM(amount) AS total, count(*) n FROM tx GROUP BY branch":                  true,
		"select branch, sum(amount) as s, count(*) as n from tx where amount > 0 group by branch":   true,
		"select upper(branch) as b, sum(amount) as s, count(*) as n from tx group by upper(branch)": false,
		"select branch, sum(amount) as s, max(amount) as n from tx group by branch":                 false,
		"select branch, sum(amount) as s, count(*) as n, min(amount) as m from tx group by branch":  false,
	} {
		if got := sig(q) == base; got != same {
			t.Errorf("%s: same signature %v, want %v", q, got, same)
		}
	}
}

// TestMergeStateRemovesEveryCompleteGroup: a batch whose watermark passes
// several groups it did not change removes (and in append mode writes)
// each of them, whatever memory the state's scan hands out.
func TestMergeStateRemovesEveryCompleteGroup(t *testing.T) {
	eng := engine(t)
	ctx := context.Background()
	p, err := Compile(ctx, eng, Config{Source: columnar.KafkaSchema(false), OutputMode: Append, WatermarkColumn: "timestamp", Steps: []Step{
		query(0, "", "select window(timestamp, '1 minute').start as ws, count(*) as n from source group by window(timestamp, '1 minute')"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	st := mapState{}
	apply := func(res StateResult) {
		for _, c := range res.Changes {
			if c.Value == nil {
				delete(st, string(c.Key))
			} else {
				st[string(c.Key)] = c.Value
			}
		}
	}
	first := kafkaPartials(t, p, []time.Time{base, base.Add(time.Minute), base.Add(2 * time.Minute), base.Add(3 * time.Minute)})
	res, err := p.MergeState(ctx, nil, st, first, base, Watermarks{Complete: base.Add(3*time.Minute - 10*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	apply(res)
	if len(st) != 2 || len(res.Rows) != 2 { // minutes 0 and 1 complete at once
		t.Fatalf("after the first batch: %d groups kept, %d written; want 2 and 2", len(st), len(res.Rows))
	}
	later := kafkaPartials(t, p, []time.Time{base.Add(10 * time.Minute)})
	res, err = p.MergeState(ctx, nil, st, later, base, Watermarks{Late: base.Add(3*time.Minute - 10*time.Second), Complete: base.Add(10*time.Minute - 10*time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	apply(res)
	if len(st) != 1 || len(res.Rows) != 2 || res.Removed != 2 {
		t.Fatalf("after the second batch: %d groups kept, %d written, %d removed; want 1, 2 and 2 (minutes 2 and 3)", len(st), len(res.Rows), res.Removed)
	}
}

// userEvents runs the task query over events of users at minutes after base.
func userEvents(t *testing.T, p *Pipeline, base time.Time, events []userAt) []byte {
	t.Helper()
	var rows []stream.Row
	for i, e := range events {
		rows = append(rows, stream.Row{"topic": "t", "partition": int64(0), "offset": int64(i),
			"timestamp": base.Add(time.Duration(e.min) * time.Minute), "value": []byte(fmt.Sprintf(`{"user": %q}`, e.user))})
	}
	return rowsIPC(t, p, rows)
}

type userAt struct {
	user string
	min  int
}

// TestMergeSessions counts events per user session (a 5-minute gap) in
// append mode with a 1-minute watermark, and in update mode: sessions of a
// user merge across tasks and batches, an event between two sessions
// bridges them, a session is written once when the watermark passes its
// end, and an event of a complete session is dropped.
func TestMergeSessions(t *testing.T) {
	eng := engine(t)
	ctx := context.Background()
	base := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	compile := func(mode OutputMode, wm string) *Pipeline {
		p, err := Compile(ctx, eng, Config{Source: columnar.KafkaSchema(false), OutputMode: mode, WatermarkColumn: wm, Steps: []Step{
			decodeJSON("user STRING"),
			query(1, "ev", "select user, session_window(timestamp, '5 minutes') as s, count(*) as n from ev group by user, session_window(timestamp, '5 minutes')"),
		}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	type batch struct {
		tasks   [][]userAt
		want    []string // user start-end n, minutes
		dropped int64
	}
	run := func(t *testing.T, p *Pipeline, delay time.Duration, batches []batch) mapState {
		states := []mapState{{}, {}}
		var maxSeen time.Time
		for bi, b := range batches {
			var ipc [][]byte
			for _, task := range b.tasks {
				ipc = append(ipc, userEvents(t, p, base, task))
			}
			routed, err := p.Route(ipc, 2)
			if err != nil {
				t.Fatal(err)
			}
			var wm Watermarks
			if delay > 0 {
				if !maxSeen.IsZero() {
					wm.Late = maxSeen.Add(-delay)
				}
				if routed.MaxEventTime.After(maxSeen) {
					maxSeen = routed.MaxEventTime
				}
				wm.Complete = maxSeen.Add(-delay)
			}
			var got []string
			var dropped int64
			for i, share := range routed.Shares {
				mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
				res, err := p.MergeState(ctx, mem, states[i], share, base, wm)
				mem.AssertSize(t, 0)
				if err != nil {
					t.Fatalf("batch %d: %v", bi, err)
				}
				for _, c := range res.Changes {
					if c.Value == nil {
						delete(states[i], string(c.Key))
					} else {
						states[i][string(c.Key)] = c.Value
					}
				}
				for _, r := range res.Rows {
					s := r["s"].(map[string]any)
					got = append(got, fmt.Sprintf("%v %d-%d %v", r["user"], int(s["start"].(time.Time).Sub(base)/time.Minute),
						int(s["end"].(time.Time).Sub(base)/time.Minute), r["n"]))
				}
				dropped += res.Dropped
			}
			sort.Strings(got)
			if diff := cmp.Diff(b.want, got); diff != "" || dropped != b.dropped {
				t.Errorf("batch %d: written (-want +got):\n%s\ndropped %d, want %d", bi, diff, dropped, b.dropped)
			}
		}
		all := mapState{}
		for _, s := range states {
			for k, v := range s {
				all[k] = v
			}
		}
		return all
	}
	t.Run("append", func(t *testing.T) {
		left := run(t, compile(Append, "timestamp"), time.Minute, []batch{
			{tasks: [][]userAt{{{"u1", 0}, {"u1", 2}, {"u2", 1}}, {{"u1", 10}}}, want: []string{"u1 0-7 2", "u2 1-6 1"}},
			{tasks: [][]userAt{{{"u1", 14}}, {{"u2", 12}}}},
			{tasks: [][]userAt{{{"u1", 16}, {"u1", 30}}}, want: []string{"u1 10-21 3", "u2 12-17 1"}},
			{tasks: [][]userAt{{{"u1", 3}}}, dropped: 1},
		})
		if len(left) != 1 {
			t.Errorf("%d sessions left in the state, want u1's open one", len(left))
		}
	})
	t.Run("update: an event bridges two sessions", func(t *testing.T) {
		left := run(t, compile(Update, ""), 0, []batch{
			{tasks: [][]userAt{{{"u3", 40}}, {{"u3", 50}}}, want: []string{"u3 40-45 1", "u3 50-55 1"}},
			{tasks: [][]userAt{{{"u3", 45}}}, want: []string{"u3 40-55 3"}},
		})
		if len(left) != 1 {
			t.Errorf("%d sessions left in the state, want the merged one", len(left))
		}
	})
}
