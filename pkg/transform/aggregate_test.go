package transform

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/stream"
)

func aggPipeline(t testing.TB, a Aggregate) *Pipeline {
	t.Helper()
	return mustCompile(t, Step{Aggregate: &a})
}

var allFns = Aggregate{
	GroupBy: []string{"branch", "currency"},
	Aggregations: []Aggregation{
		{Fn: "count"},
		{Fn: "count", Field: "amount", As: "amounts"},
		{Fn: "sum", Field: "amount"},
		{Fn: "avg", Field: "amount"},
		{Fn: "min", Field: "amount"},
		{Fn: "max", Field: "amount"},
	},
}

func addAll(t testing.TB, a *Aggregator, rows ...stream.Row) {
	t.Helper()
	for _, r := range rows {
		if err := a.Add(r); err != nil {
			t.Fatalf("Add(%v): %v", r, err)
		}
	}
}

func TestAggregateRows(t *testing.T) {
	p := aggPipeline(t, allFns)
	a := p.NewAggregator()
	addAll(t, a,
		stream.Row{"branch": "Omsk", "currency": "RUB", "amount": int64(5)},
		stream.Row{"branch": "Kazan", "currency": "RUB", "amount": int64(-42)},
		stream.Row{"branch": "Kazan", "currency": "RUB", "amount": int64(2)},
		stream.Row{"branch": "Kazan", "currency": "USD", "amount": 1.5},
		stream.Row{"branch": "Kazan", "currency": "USD", "amount": int64(1)},
		stream.Row{"branch": "Kazan", "currency": "USD", "amount": nil},
		stream.Row{"currency": "RUB", "amount": int64(7)}, // missing branch groups under null
		stream.Row{"branch": "Tver", "currency": "RUB"},   // nothing to sum
	)
	want := []stream.Row{
		{"branch": nil, "currency": "RUB", "count": int64(1), "amounts": int64(1), "sum_amount": int64(7), "avg_amount": 7.0, "min_amount": int64(7), "max_amount": int64(7)},
		{"branch": "Kazan", "currency": "RUB", "count": int64(2), "amounts": int64(2), "sum_amount": int64(-40), "avg_amount": -20.0, "min_amount": int64(-42), "max_amount": int64(2)},
		{"branch": "Kazan", "currency": "USD", "count": int64(3), "amounts": int64(2), "sum_amount": 2.5, "avg_amount": 1.25, "min_amount": int64(1), "max_amount": 1.5},
		{"branch": "Omsk", "currency": "RUB", "count": int64(1), "amounts": int64(1), "sum_amount": int64(5), "avg_amount": 5.0, "min_amount": int64(5), "max_amount": int64(5)},
		{"branch": "Tver", "currency": "RUB", "count": int64(1), "amounts": int64(0), "sum_amount": nil, "avg_amount": nil, "min_amount": nil, "max_amount": nil},
	}
	if diff := cmp.Diff(want, a.Rows()); diff != "" {
		t.Errorf("Rows (-want +got):\n%s", diff)
	}
	// The same through an encode/merge round trip.
	b, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	m, err := p.Merge([][]byte{b})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, m.Rows()); diff != "" {
		t.Errorf("merged Rows (-want +got):\n%s", diff)
	}
}

func TestAggregateMinMaxKinds(t *testing.T) {
	p := aggPipeline(t, Aggregate{GroupBy: []string{"g"}, Aggregations: []Aggregation{
		{Fn: "min", Field: "v"}, {Fn: "max", Field: "v"},
	}})
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(time.Nanosecond)
	a := p.NewAggregator()
	addAll(t, a,
		stream.Row{"g": "s", "v": "pear"}, stream.Row{"g": "s", "v": "apple"}, stream.Row{"g": "s", "v": "zebra"},
		stream.Row{"g": "t", "v": t2}, stream.Row{"g": "t", "v": t1},
		// An int64 beyond 2^53 compares exactly against a float64.
		stream.Row{"g": "n", "v": int64(1<<53 + 1)}, stream.Row{"g": "n", "v": float64(1 << 53)},
	)
	want := []stream.Row{
		{"g": "n", "min_v": float64(1 << 53), "max_v": int64(1<<53 + 1)},
		{"g": "s", "min_v": "apple", "max_v": "zebra"},
		{"g": "t", "min_v": t1, "max_v": t2},
	}
	if diff := cmp.Diff(want, a.Rows()); diff != "" {
		t.Errorf("Rows (-want +got):\n%s", diff)
	}
}

func TestAggregateBadRows(t *testing.T) {
	p := aggPipeline(t, Aggregate{GroupBy: []string{"g"}, Aggregations: []Aggregation{
		{Fn: "count"}, {Fn: "sum", Field: "n"}, {Fn: "min", Field: "m"},
	}})
	a := p.NewAggregator()
	addAll(t, a, stream.Row{"g": "x", "n": int64(math.MaxInt64 - 1), "m": int64(3)})
	tests := []struct {
		row  stream.Row
		want string
	}{
		{stream.Row{"g": "x", "n": "12"}, `sum(n): got string "12", want a number (convert it with a select: int(x) or double(x))`},
		{stream.Row{"g": "x", "n": true}, `sum(n): got bool true, want a number`},
		{stream.Row{"g": "x", "m": []any{1}}, `min(m): got list, want a number, string or timestamp`},
		{stream.Row{"g": "x", "m": "three"}, `min(m): cannot compare string with the int64 values before it in the group`},
		{stream.Row{"g": "x", "n": int64(2), "m": int64(1)}, `sum(n): int64 overflow`},
		{stream.Row{"g": struct{}{}}, `group by g: unsupported value of type struct {}`},
		// A bad value in a new group must not create the group.
		{stream.Row{"g": "new", "n": "bad"}, `sum(n): got string`},
	}
	for _, tt := range tests {
		err := a.Add(tt.row)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Add(%v) = %v, want %q", tt.row, err, tt.want)
		}
		if errors.Is(err, ErrTooManyGroups) {
			t.Errorf("Add(%v): bad row reported as ErrTooManyGroups", tt.row)
		}
	}
	// Failed adds left no trace: count is still 1, min still 3, no new group.
	want := []stream.Row{{"g": "x", "count": int64(1), "sum_n": int64(math.MaxInt64 - 1), "min_m": int64(3)}}
	if diff := cmp.Diff(want, a.Rows()); diff != "" {
		t.Errorf("Rows after bad adds (-want +got):\n%s", diff)
	}
	if p.AggregateStep() != "transforms[0].aggregate" {
		t.Errorf("AggregateStep = %q", p.AggregateStep())
	}
}

func TestAggregateMaxGroups(t *testing.T) {
	p := mustCompile(t, Step{Filter: "true"}, Step{Aggregate: &Aggregate{GroupBy: []string{"g"}, MaxGroups: 2}})
	a := p.NewAggregator()
	addAll(t, a, stream.Row{"g": int64(1)}, stream.Row{"g": int64(2)}, stream.Row{"g": int64(1)})
	err := a.Add(stream.Row{"g": int64(3)})
	if !errors.Is(err, ErrTooManyGroups) {
		t.Fatalf("Add of a third group = %v, want ErrTooManyGroups", err)
	}
	for _, w := range []string{"too many groups (more than 2 in one batch)", "raise transforms[1].aggregate.maxGroups"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}

	// Merge enforces the bound over the union of partials.
	b1 := p.NewAggregator()
	addAll(t, b1, stream.Row{"g": int64(1)}, stream.Row{"g": int64(2)})
	b2 := p.NewAggregator()
	addAll(t, b2, stream.Row{"g": int64(2)}, stream.Row{"g": int64(3)})
	e1, _ := b1.MarshalBinary()
	e2, _ := b2.MarshalBinary()
	if _, err := p.Merge([][]byte{e1, e1}); err != nil {
		t.Errorf("Merge of the same two groups: %v", err)
	}
	if _, err := p.Merge([][]byte{e1, e2}); !errors.Is(err, ErrTooManyGroups) {
		t.Errorf("Merge of three groups = %v, want ErrTooManyGroups", err)
	}
}

func TestAggregateDefaultMaxGroups(t *testing.T) {
	p := aggPipeline(t, Aggregate{GroupBy: []string{"g"}})
	a := p.NewAggregator()
	for i := range DefaultMaxGroups {
		if err := a.Add(stream.Row{"g": int64(i)}); err != nil {
			t.Fatalf("group %d: %v", i, err)
		}
	}
	if err := a.Add(stream.Row{"g": int64(-1)}); !errors.Is(err, ErrTooManyGroups) {
		t.Errorf("group %d = %v, want ErrTooManyGroups", DefaultMaxGroups+1, err)
	}
}

// TestMergeExact splits rows across partials every way we like and checks
// that merging gives what one aggregator over all rows gives: integer sums
// stay exact int64 (here beyond float64 precision), avg divides the total
// sum by the total count, and each group appears once.
func TestMergeExact(t *testing.T) {
	p := aggPipeline(t, allFns)
	var rows []stream.Row
	for i := range 60 {
		amount := any(int64(1<<53) + int64(i))
		if i%7 == 0 {
			amount = float64(i) + 0.5
		}
		rows = append(rows, stream.Row{"branch": fmt.Sprintf("b%d", i%4), "currency": []string{"RUB", "USD"}[i%2], "amount": amount})
	}
	whole := p.NewAggregator()
	addAll(t, whole, rows...)
	for _, parts := range []int{1, 2, 3, 7, 60} {
		aggs := make([]*Aggregator, parts)
		for i := range aggs {
			aggs[i] = p.NewAggregator()
		}
		for i, r := range rows {
			addAll(t, aggs[i%parts], r)
		}
		var partials [][]byte
		for _, a := range aggs {
			b, err := a.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			partials = append(partials, b)
		}
		merged, err := p.Merge(partials)
		if err != nil {
			t.Fatal(err)
		}
		// Float sums may round differently when regrouped, so compare the
		// float columns approximately and everything else exactly.
		approx := cmp.Comparer(func(x, y float64) bool { return x == y || math.Abs(x-y) <= 1e-9*math.Abs(x) })
		if diff := cmp.Diff(whole.Rows(), merged.Rows(), approx); diff != "" {
			t.Errorf("%d partials (-whole +merged):\n%s", parts, diff)
		}
	}
	// Integer sums are exact across partials, and an overflow is an error,
	// not a wrap-around.
	a := p.NewAggregator()
	addAll(t, a, stream.Row{"branch": "x", "currency": "y", "amount": int64(1<<61 + 1)})
	b, _ := a.MarshalBinary()
	m, err := p.Merge([][]byte{b, b})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Rows()[0]["sum_amount"]; got != int64(1<<62+2) {
		t.Errorf("sum of two partials = %v, want %d", got, int64(1<<62+2))
	}
	if _, err := p.Merge([][]byte{b, b, b, b}); err == nil || !strings.Contains(err.Error(), "int64 overflow") {
		t.Errorf("Merge of an overflowing sum = %v, want an overflow error", err)
	}
}

func TestMergeRejects(t *testing.T) {
	p := aggPipeline(t, allFns)
	other := aggPipeline(t, Aggregate{GroupBy: []string{"branch"}})
	a := other.NewAggregator()
	addAll(t, a, stream.Row{"branch": "x"})
	foreign, _ := a.MarshalBinary()
	good, _ := p.NewAggregator().MarshalBinary()
	tests := []struct {
		name    string
		partial []byte
		want    string
	}{
		{"garbage", []byte("hello"), "not a partial aggregate"},
		{"other spec", foreign, "different aggregate spec"},
		{"truncated", good[:len(good)-1], "corrupt partial aggregate"},
		{"trailing bytes", append(bytes.Clone(good), 0), "bytes after the last group"},
	}
	for _, tt := range tests {
		_, err := p.Merge([][]byte{good, tt.partial})
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "partial aggregate 2 of 2") {
			t.Errorf("%s: Merge = %v, want %q", tt.name, err, tt.want)
		}
	}
}

// FuzzPartial feeds arbitrary bytes to Merge. Invariant: Merge never panics,
// and when it accepts a partial, encoding the result and merging that again
// yields the same rows (decode ∘ encode is the identity on what decode
// accepts).
func FuzzPartial(f *testing.F) {
	p := aggPipeline(f, allFns)
	a := p.NewAggregator()
	addAll(f, a,
		stream.Row{"branch": "Kazan", "currency": "RUB", "amount": int64(-42)},
		stream.Row{"branch": nil, "currency": []byte("x"), "amount": 2.5},
		stream.Row{"branch": ts, "currency": []any{int64(1), map[string]any{"k": "v"}}},
	)
	seed, _ := a.MarshalBinary()
	f.Add(seed)
	f.Add([]byte("SLAG\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := p.Merge([][]byte{data})
		if err != nil {
			return
		}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary after a successful Merge: %v", err)
		}
		m2, err := p.Merge([][]byte{b})
		if err != nil {
			t.Fatalf("Merge of our own encoding: %v", err)
		}
		if !sameValue(rowsAsAny(m.Rows()), rowsAsAny(m2.Rows())) {
			t.Fatalf("rows changed through a round trip:\n%v\n%v", m.Rows(), m2.Rows())
		}
	})
}

func rowsAsAny(rows []stream.Row) []any {
	out := make([]any, len(rows))
	for i, r := range rows {
		out[i] = map[string]any(r)
	}
	return out
}

// FuzzValueCodec builds a value from fuzz input, encodes it and decodes it.
// Invariant: the decoded value is identical to the original, type included:
// an int64 stays int64 even when a float64 of the same value exists, a
// float64 keeps its exact bits (-0, NaN payloads), strings and bytes keep
// every byte, nil stays nil, a timestamp keeps its instant, zone name and
// offset and UTC stays time.UTC, and lists and maps keep their elements.
func FuzzValueCodec(f *testing.F) {
	f.Add(int64(-42), 1.5, "Kazan", []byte{0, 1}, true, int64(1_700_000_000), uint32(5), int16(10800), uint8(0))
	f.Add(int64(math.MinInt64), math.Copysign(0, -1), "", []byte(nil), false, int64(-62135596800), uint32(999999999), int16(-3600), uint8(255))
	f.Add(int64(1<<53+1), math.NaN(), "\xff\x00", []byte("x"), true, int64(1<<40), uint32(1), int16(0), uint8(7))
	f.Fuzz(func(t *testing.T, i int64, fl float64, s string, b []byte, bo bool, sec int64, nsec uint32, off int16, shape uint8) {
		if b == nil {
			b = []byte{}
		}
		sec %= 1 << 50
		tm := time.Unix(sec, int64(nsec%1e9)).UTC()
		if shape&1 == 1 {
			tm = tm.In(time.FixedZone(s, int(off)))
		}
		scalars := []any{nil, bo, i, fl, s, b, tm}
		var v any
		switch shape % 4 {
		case 0:
			v = scalars[int(shape/4)%len(scalars)]
		case 1:
			v = scalars
		case 2:
			m := map[string]any{}
			for j, sc := range scalars {
				m[fmt.Sprintf("%s%d", s, j)] = sc
			}
			v = m
		case 3:
			v = []any{scalars, map[string]any{s: scalars}, []any{}}
		}
		enc, err := appendValue(nil, v)
		if err != nil {
			t.Fatalf("encode %#v: %v", v, err)
		}
		d := decoder{b: enc}
		got := d.value(0)
		if d.err != nil || len(d.b) != 0 {
			t.Fatalf("decode: %v (%d bytes left)", d.err, len(d.b))
		}
		if !sameValue(v, got) {
			t.Fatalf("round trip changed the value:\n in  %#v\n out %#v", v, got)
		}
		// And the encoding is deterministic, so it can key groups.
		if again, _ := appendValue(nil, got); !bytes.Equal(enc, again) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// sameValue is strict equality on row values: same types, float64 bits,
// timestamps with the same instant, zone name, offset and UTC-ness.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool, int64, string:
		return a == b
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	case time.Time:
		y, ok := b.(time.Time)
		if !ok || !x.Equal(y) || (x.Location() == time.UTC) != (y.Location() == time.UTC) {
			return false
		}
		xn, xo := x.Zone()
		yn, yo := y.Zone()
		return xn == yn && xo == yo
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

func TestCompareValuesOrder(t *testing.T) {
	ordered := []any{
		nil, false, true, math.Inf(-1), int64(math.MinInt64), int64(-1), -0.5, int64(0), 0.0, 0.5, int64(1<<53 + 1), math.Inf(1), math.NaN(),
		"", "a", "b", []byte{}, []byte{1}, time.Unix(0, 0).UTC(), time.Unix(1, 0).UTC(), []any{}, []any{int64(1)}, map[string]any{},
	}
	for i := range ordered {
		for j := range ordered {
			got := compareValues(ordered[i], ordered[j])
			want := cmpOrdered(int64(i), int64(j))
			if (got < 0) != (want < 0) || (got > 0) != (want > 0) {
				t.Errorf("compareValues(%#v, %#v) = %d, want sign %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

// TestPipelineEndToEnd runs a job the way the engine does: each task
// processes its records and aggregates them, the driver merges the
// partials and gets each group once.
func TestPipelineEndToEnd(t *testing.T) {
	p := mustCompile(t,
		Step{Decode: &Decode{Format: "json"}},
		Step{Filter: `amount != 0 && currency == "RUB"`},
		Step{Aggregate: &Aggregate{
			GroupBy:      []string{"branch", "currency"},
			Aggregations: []Aggregation{{Fn: "sum", Field: "amount", As: "batch_value"}, {Fn: "count"}},
		}},
	)
	tasks := [][]string{
		{`{"branch":"Kazan","currency":"RUB","amount":-42}`, `{"branch":"Omsk","currency":"RUB","amount":10}`, `not json`},
		{`{"branch":"Kazan","currency":"RUB","amount":2}`, `{"branch":"Kazan","currency":"USD","amount":5}`, `{"branch":"Kazan","currency":"RUB","amount":0}`},
		{`{"branch":"Omsk","currency":"RUB","amount":"7"}`, `{"branch":"Omsk","currency":"RUB","amount":0.5}`},
	}
	var partials [][]byte
	var badSteps []string
	for ti, payloads := range tasks {
		var in []stream.Row
		for i, pl := range payloads {
			in = append(in, kafkaRow(int64(i), pl))
		}
		out, bad := p.Process(in)
		for _, b := range bad {
			badSteps = append(badSteps, fmt.Sprintf("task %d: %s", ti, b.Step))
		}
		a := p.NewAggregator()
		for _, r := range out {
			if err := a.Add(r); err != nil {
				badSteps = append(badSteps, fmt.Sprintf("task %d: %s: %v", ti, p.AggregateStep(), err))
			}
		}
		b, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		partials = append(partials, b)
	}
	m, err := p.Merge(partials)
	if err != nil {
		t.Fatal(err)
	}
	want := []stream.Row{
		{"branch": "Kazan", "currency": "RUB", "batch_value": int64(-40), "count": int64(2)},
		{"branch": "Omsk", "currency": "RUB", "batch_value": 10.5, "count": int64(2)},
	}
	if diff := cmp.Diff(want, m.Rows()); diff != "" {
		t.Errorf("Rows (-want +got):\n%s", diff)
	}
	wantBad := []string{
		"task 0: transforms[0].decode",
		`task 2: transforms[2].aggregate: sum(amount): got string "7", want a number (convert it with a select: int(x) or double(x))`,
	}
	if diff := cmp.Diff(wantBad, badSteps); diff != "" {
		t.Errorf("bad rows (-want +got):\n%s", diff)
	}
}
