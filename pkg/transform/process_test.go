package transform

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/stream"
)

func mustCompile(t testing.TB, steps ...Step) *Pipeline {
	t.Helper()
	p, err := Compile(steps)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return p
}

var ts = time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC)

// kafkaRow is a row as the Kafka source delivers it.
func kafkaRow(offset int64, value string) stream.Row {
	return stream.Row{
		"key": []byte("k"), "value": []byte(value), "topic": "transaction", "partition": int64(3),
		"offset": offset, "timestamp": ts, "headers": []any{},
	}
}

// badSummary renders bad rows as "step: error" lines for comparison.
func badSummary(bad []BadRow) []string {
	var out []string
	for _, b := range bad {
		out = append(out, b.String())
	}
	return out
}

func TestDecodeJSON(t *testing.T) {
	p := mustCompile(t, Step{Decode: &Decode{Format: "json"}})
	in := []stream.Row{
		kafkaRow(0, `{"branch":"Kazan","amount":-42,"rate":1.5,"big":12345678901234567890,"nested":{"a":[1,"x",null,true]},"offset":"mine"}`),
		kafkaRow(1, `[1,2]`),
		kafkaRow(2, `{"a":1} trailing`),
		kafkaRow(3, ``),
		kafkaRow(4, `{"s":"caf\u00e9 \ud83d\ude00 \ud800"}`),
	}
	out, bad := p.Process(in)
	want := []stream.Row{
		{
			"key": []byte("k"), "topic": "transaction", "partition": int64(3), "timestamp": ts, "headers": []any{},
			"branch": "Kazan", "amount": int64(-42), "rate": 1.5, "big": 12345678901234567890.0,
			"nested": map[string]any{"a": []any{int64(1), "x", nil, true}},
			"offset": "mine", // the object wins over the source's metadata
		},
		{
			"key": []byte("k"), "topic": "transaction", "partition": int64(3), "offset": int64(4), "timestamp": ts, "headers": []any{},
			"s": "café 😀 \uFFFD",
		},
	}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("out (-want +got):\n%s", diff)
	}
	wantBad := []string{
		"transforms[0].decode: payload is not a JSON object: it starts with '['",
		"transforms[0].decode: invalid JSON: unexpected 't' at offset 8 after the top-level object",
		"transforms[0].decode: payload is not a JSON object: the payload is empty",
	}
	if diff := cmp.Diff(wantBad, badSummary(bad)); diff != "" {
		t.Errorf("bad (-want +got):\n%s", diff)
	}
	if string(bad[0].Row["value"].([]byte)) != "[1,2]" {
		t.Errorf("bad row is not the original row: %v", bad[0].Row)
	}
	// The input is untouched.
	if _, ok := in[0]["value"]; !ok || in[0]["offset"] != int64(0) {
		t.Errorf("Process modified its input: %v", in[0])
	}
}

func TestDecodePayloadField(t *testing.T) {
	kinesis := stream.Row{"data": []byte(`{"x":1}`), "shardId": "shardId-000"}
	other := stream.Row{"body": `{"x":2}`, "value": "ignored"}
	noPayload := stream.Row{"other": 1}
	nullValue := stream.Row{"value": nil}
	numValue := stream.Row{"value": int64(1)}

	out, bad := mustCompile(t, Step{Decode: &Decode{Format: "json"}}).Process(
		[]stream.Row{kinesis, noPayload, nullValue, numValue})
	if diff := cmp.Diff([]stream.Row{{"shardId": "shardId-000", "x": int64(1)}}, out); diff != "" {
		t.Errorf("default field (-want +got):\n%s", diff)
	}
	wantBad := []string{
		`transforms[0].decode: no payload field: the row has neither "value" nor "data" (set decode.field)`,
		`transforms[0].decode: payload field "value" is null`,
		`transforms[0].decode: payload field "value" is int64, want bytes or string`,
	}
	if diff := cmp.Diff(wantBad, badSummary(bad)); diff != "" {
		t.Errorf("bad (-want +got):\n%s", diff)
	}

	out, bad = mustCompile(t, Step{Decode: &Decode{Format: "json", Field: "body"}}).Process([]stream.Row{other, kinesis})
	if diff := cmp.Diff([]stream.Row{{"value": "ignored", "x": int64(2)}}, out); diff != "" {
		t.Errorf("explicit field (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`transforms[0].decode: no such field "body"`}, badSummary(bad)); diff != "" {
		t.Errorf("bad (-want +got):\n%s", diff)
	}
}

func TestDecodeCSV(t *testing.T) {
	t.Run("columns", func(t *testing.T) {
		p := mustCompile(t, Step{Decode: &Decode{Format: "csv", Columns: []string{"branch", "amount"}}})
		out, bad := p.Process([]stream.Row{
			{"value": []byte("Kazan,-42"), "offset": int64(1)},
			{"value": []byte(`"Nizhny, Novgorod",7` + "\n" + "Omsk,1\n"), "offset": int64(2)},
			{"value": []byte("Kazan"), "offset": int64(3)},
			{"value": []byte(""), "offset": int64(4)},
		})
		want := []stream.Row{
			{"branch": "Kazan", "amount": "-42", "offset": int64(1)},
			{"branch": "Nizhny, Novgorod", "amount": "7", "offset": int64(2)},
			{"branch": "Omsk", "amount": "1", "offset": int64(2)},
		}
		if diff := cmp.Diff(want, out); diff != "" {
			t.Errorf("out (-want +got):\n%s", diff)
		}
		wantBad := []string{"transforms[0].decode: csv line 1 has 1 fields, want 2", "transforms[0].decode: csv payload is empty"}
		if diff := cmp.Diff(wantBad, badSummary(bad)); diff != "" {
			t.Errorf("bad (-want +got):\n%s", diff)
		}
	})
	t.Run("header and delimiter", func(t *testing.T) {
		p := mustCompile(t,
			Step{Decode: &Decode{Format: "csv", Header: true, Delimiter: ";"}},
			Step{Filter: `int(amount) < 0`},
		)
		out, bad := p.Process([]stream.Row{
			{"data": []byte("branch;amount\r\nKazan;-42\r\nOmsk;5\r\nTver;-1\r\n")},
			{"data": []byte("branch;amount\n")},
			{"data": []byte("branch;branch\nx;y\n")},
			{"data": []byte("branch;amount\nx;y;z\n")},
			{"data": []byte("")},
		})
		want := []stream.Row{{"branch": "Kazan", "amount": "-42"}, {"branch": "Tver", "amount": "-1"}}
		if diff := cmp.Diff(want, out); diff != "" {
			t.Errorf("out (-want +got):\n%s", diff)
		}
		wantBad := []string{
			`transforms[0].decode: csv header names column "branch" twice`,
			"transforms[0].decode: csv line 2 has 3 fields, want 2",
			"transforms[0].decode: csv payload has no header line",
		}
		if diff := cmp.Diff(wantBad, badSummary(bad)); diff != "" {
			t.Errorf("bad (-want +got):\n%s", diff)
		}
	})
	t.Run("header skipped with columns", func(t *testing.T) {
		p := mustCompile(t, Step{Decode: &Decode{Format: "csv", Header: true, Columns: []string{"b", "a"}}})
		out, _ := p.Process([]stream.Row{{"value": "x,y\n1,2"}})
		if diff := cmp.Diff([]stream.Row{{"b": "1", "a": "2"}}, out); diff != "" {
			t.Errorf("out (-want +got):\n%s", diff)
		}
	})
}

func TestDecodeRaw(t *testing.T) {
	p := mustCompile(t, Step{Decode: &Decode{Format: "raw"}})
	out, bad := p.Process([]stream.Row{
		{"value": []byte("héllo"), "offset": int64(1)},
		{"value": "already text"},
		{"value": []byte{0xff, 0xfe}},
	})
	want := []stream.Row{{"value": "héllo", "offset": int64(1)}, {"value": "already text"}}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("out (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{`transforms[0].decode: payload field "value" is not valid UTF-8 text`}, badSummary(bad)); diff != "" {
		t.Errorf("bad (-want +got):\n%s", diff)
	}
}

func TestFilter(t *testing.T) {
	rows := []stream.Row{
		{"id": int64(0), "amount": int64(10), "currency": "USD"},
		{"id": int64(1), "amount": 2.5, "currency": "USD"},
		{"id": int64(2), "amount": int64(0), "currency": "USD"},
		{"id": int64(3), "amount": int64(10), "currency": "EUR"},
		{"id": int64(4), "currency": "USD"},
		{"id": int64(5), "amount": "ten", "currency": "USD"},
		{"id": int64(6), "amount": -0.5, "currency": "USD"},
	}
	tests := []struct {
		expr    string
		wantIDs []int64
		wantBad []string
	}{
		// CEL equality is heterogeneous: "ten" != 0 is simply true.
		{expr: `amount != 0 && currency == "USD"`, wantIDs: []int64{0, 1, 5, 6},
			wantBad: []string{`id 4: no such field "amount"`}},
		{expr: `amount > 0`, wantIDs: []int64{0, 1, 3},
			wantBad: []string{`id 4: no such field "amount"`, `id 5: no such overload`}},
		{expr: `currency == "EUR" || amount > 5`, wantIDs: []int64{0, 3},
			wantBad: []string{`id 4: no such field "amount"`, `id 5: no such overload`}},
		{expr: `has(row.amount) && type(row.amount) == int`, wantIDs: []int64{0, 2, 3}},
		{expr: `row.?amount.orValue(1) == 1`, wantIDs: []int64{4}},
		{expr: `row["currency"] == "EUR"`, wantIDs: []int64{3}},
		{expr: `currency`, wantBad: []string{"filter returned string, want bool"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			p := mustCompile(t, Step{Filter: tt.expr})
			out, bad := p.Process(rows)
			var ids []int64
			for _, r := range out {
				ids = append(ids, r["id"].(int64))
			}
			if diff := cmp.Diff(tt.wantIDs, ids); diff != "" {
				t.Errorf("kept ids (-want +got):\n%s", diff)
			}
			if tt.wantBad == nil {
				if len(bad) != 0 {
					t.Errorf("unexpected bad rows: %v", badSummary(bad))
				}
				return
			}
			for _, w := range tt.wantBad {
				found := false
				for _, b := range bad {
					got := fmt.Sprintf("id %v: %v", b.Row["id"], b.Err)
					if b.Step == "transforms[0].filter" && (strings.HasPrefix(got, w) || strings.Contains(b.Err.Error(), w)) {
						found = true
					}
				}
				if !found {
					t.Errorf("no bad row matching %q in %v", w, badSummary(bad))
				}
			}
		})
	}
}

func TestSelect(t *testing.T) {
	p := mustCompile(t,
		Step{Decode: &Decode{Format: "json"}},
		Step{Select: []SelectField{
			{Name: "branch"},
			{Name: "cents", Expr: "amount * 100"},
			{Name: "big", Expr: "amount > 0 ? 'credit' : 'debit'"},
			{Name: "when", Expr: "timestamp"},
			{Name: "hour", Expr: "timestamp.getHours()"},
			{Name: "key", Expr: "string(key)"},
			{Name: "tags", Expr: "[branch, 1, 2.5, null, b'x']"},
			{Name: "m", Expr: "{'a': amount, 'n': {'k': true}}"},
			{Name: "u", Expr: "uint(7)"},
			{Name: "d", Expr: "duration('90m')"},
			{Name: "opt", Expr: "row.?nope"},
			{Name: "kind", Expr: "type(amount)"},
			{Name: "lower", Expr: "branch.lowerAscii()"},
		}},
	)
	out, bad := p.Process([]stream.Row{
		kafkaRow(0, `{"branch":"Kazan","amount":-42}`),
		kafkaRow(1, `{"branch":"Omsk","amount":1.5}`),
		kafkaRow(2, `{"amount":1}`),
	})
	want := []stream.Row{{
		"branch": "Kazan", "cents": int64(-4200), "big": "debit", "when": ts, "hour": int64(12), "key": "k",
		"tags": []any{"Kazan", int64(1), 2.5, nil, []byte("x")},
		"m":    map[string]any{"a": int64(-42), "n": map[string]any{"k": true}},
		"u":    int64(7), "d": "1h30m0s", "opt": nil, "kind": "int", "lower": "kazan",
	}}
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("out (-want +got):\n%s", diff)
	}
	wantBad := []string{
		"transforms[1].select: cents: no such overload: the operand types do not fit (CEL never converts implicitly: use int(), double() or string())",
		`transforms[1].select: branch: no such field "branch"`,
	}
	if diff := cmp.Diff(wantBad, badSummary(bad)); diff != "" {
		t.Errorf("bad (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"branch", "cents", "big", "when", "hour", "key", "tags", "m", "u", "d", "opt", "kind", "lower"}, p.Columns()); diff != "" {
		t.Errorf("Columns (-want +got):\n%s", diff)
	}
}

func TestSelectUintOverflow(t *testing.T) {
	p := mustCompile(t, Step{Select: []SelectField{{Name: "u", Expr: "uint(x) * 3u"}}})
	_, bad := p.Process([]stream.Row{{"x": int64(1) << 62}})
	if len(bad) != 1 || !strings.Contains(bad[0].Err.Error(), "does not fit in int64") {
		t.Errorf("bad = %v, want an int64 overflow", badSummary(bad))
	}
}

func TestProcessWithoutSteps(t *testing.T) {
	in := []stream.Row{{"a": int64(1)}}
	out, bad := mustCompile(t).Process(in)
	if len(out) != 1 || &out[0] != &in[0] || bad != nil {
		t.Errorf("Process without steps = %v, %v; want the input back", out, bad)
	}
}

// TestProcessConcurrent runs one pipeline from several goroutines, as the
// tasks of an executor do; run it with -race.
func TestProcessConcurrent(t *testing.T) {
	p := mustCompile(t,
		Step{Decode: &Decode{Format: "json"}},
		Step{Filter: `amount != 0 && currency == "RUB"`},
		Step{Select: []SelectField{{Name: "branch"}, {Name: "amount", Expr: "amount * 2"}}},
	)
	const workers, chunks, perChunk = 8, 20, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for c := range chunks {
				in := make([]stream.Row, perChunk)
				for i := range in {
					in[i] = kafkaRow(int64(i), fmt.Sprintf(`{"branch":"b%d","currency":"RUB","amount":%d}`, w, i))
				}
				out, bad := p.Process(in)
				if len(bad) != 0 || len(out) != perChunk-1 {
					errs <- fmt.Errorf("worker %d chunk %d: %d out, bad %v", w, c, len(out), badSummary(bad))
					return
				}
				for i, r := range out {
					if r["branch"] != fmt.Sprintf("b%d", w) || r["amount"] != int64(2*(i+1)) {
						errs <- fmt.Errorf("worker %d: row %d = %v", w, i, r)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
