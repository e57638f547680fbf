//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// decodeQuery is the input query a job's JSON decode step gives the SQL
// step: Kafka's value decoded into the treasury columns.
const decodeQuery = `SELECT __j.branch AS branch, __j.currency AS currency, __j.amount AS amount FROM (SELECT json_transform(decode(value), '{"branch":"VARCHAR","currency":"VARCHAR","amount":"BIGINT"}') AS __j FROM __sluice_input)`

// validKafkaRows are kafkaRows without the malformed value, which
// json_transform refuses (the decode step's choice, not the engine's).
func validKafkaRows() []kafkaRecord {
	var out []kafkaRecord
	for _, r := range kafkaRows {
		if r.value != "not json" {
			out = append(out, r)
		}
	}
	return out
}

func TestInputQuery(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	tests := []struct {
		name    string
		query   string
		ordered bool
		want    [][]any
		copies  bool
	}{
		{name: "seed query", query: seedQuery, want: [][]any{
			{"2024-03-04 05:06:07", "b1", "EUR", int64(70)},
			{"2024-03-04 05:06:07", "b2", "EUR", int64(150)},
			{"2024-03-04 05:06:07", "b1", "USD", int64(30)},
			{"2024-03-04 05:06:07", "b3", "GBP", int64(70)},
		}},
		{name: "amount of the wrong type is NULL", query: `select branch, amount from treasury_stream where amount is null`,
			want: [][]any{{"b1", nil}}},
		{name: "view read twice", copies: true, ordered: true,
			query: `select a.branch, count(*) as n from treasury_stream a join treasury_stream b on a.branch = b.branch group by a.branch order by 1`,
			want:  [][]any{{"b1", int64(16)}, {"b2", int64(9)}, {"b3", int64(1)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := checkedMem(t)
			batches := kafkaBatches(mem, validKafkaRows(), 3)
			defer releaseAll(batches)
			c, err := e.Compile(ctx, tc.query, kafkaSchema, WithView("treasury_stream"), WithInputQuery(decodeQuery))
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if c.InputQuery() != decodeQuery || !c.InputSchema().Equal(kafkaSchema) {
				t.Errorf("InputQuery %q, InputSchema %s", c.InputQuery(), c.InputSchema())
			}
			if c.materialize != tc.copies {
				t.Errorf("reads a copy = %v, want %v", c.materialize, tc.copies)
			}
			got := runRows(t, c, batches, WithNow(pinned))
			if !tc.ordered {
				sortRows(got)
				sortRows(tc.want)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})
	}
}

func TestInputQueryErrors(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	tests := []struct {
		name, query, input string
		pos                int    // for a *QueryError; -2: a plain error
		want               string // in the error
		kind               error
	}{
		{name: "unknown column at the user's position", query: `select branch, amont from treasury_stream`, input: decodeQuery,
			pos: 15, kind: ErrUnknownColumn, want: "amont"},
		{name: "the user's query still reads only its view", query: `select * from __sluice_input`, input: decodeQuery,
			pos: 14, kind: ErrUnknownTable, want: "__sluice_input"},
		{name: "broken input query", query: `select * from treasury_stream`, input: `SELECT nope FROM __sluice_input`,
			pos: -2, want: "input query"},
		{name: "input query reads its input twice", query: `select * from treasury_stream`,
			input: `SELECT a.topic FROM __sluice_input a, __sluice_input b`, pos: -2, want: "input query: reads __sluice_input 2 times"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Compile(ctx, tc.query, kafkaSchema, WithView("treasury_stream"), WithInputQuery(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Compile error %v, want one containing %q", err, tc.want)
			}
			var qe *QueryError
			isQE := errors.As(err, &qe)
			switch {
			case tc.pos == -2 && isQE:
				t.Errorf("got a *QueryError %v, want a plain error", err)
			case tc.pos != -2 && (!isQE || qe.Position != tc.pos || !errors.Is(err, tc.kind)):
				t.Errorf("got %v, want a %v at position %d", err, tc.kind, tc.pos)
			}
		})
	}
}

// TestInputQueryRunError: a value the input query cannot decode fails the
// run, with ErrExecution, on the view and on its copy alike.
func TestInputQueryRunError(t *testing.T) {
	e := newEngine(t)
	ctx := context.Background()
	for _, query := range []string{
		`select branch from treasury_stream`,
		`select a.branch from treasury_stream a join treasury_stream b on a.branch = b.branch`,
	} {
		mem := checkedMem(t)
		batches := kafkaBatches(mem, kafkaRows, 4)
		c, err := e.Compile(ctx, query, kafkaSchema, WithView("treasury_stream"), WithInputQuery(decodeQuery))
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.RunBatches(ctx, batches, WithNow(time.Now()))
		releaseAll(out)
		releaseAll(batches)
		if !errors.Is(err, ErrExecution) || !strings.Contains(err.Error(), "JSON") {
			t.Errorf("%s: Run error %v, want ErrExecution about malformed JSON", query, err)
		}
	}
}
