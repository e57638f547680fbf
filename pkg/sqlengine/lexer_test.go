//go:build duckdb_arrow

package sqlengine

import (
	"maps"
	"slices"
	"testing"
)

func TestRewriteSpark(t *testing.T) {
	tests := []struct {
		name, query, want string
		second            int // -1: one statement
	}{
		{name: "plain", query: "select a from t", want: "select a from t", second: -1},
		{name: "offset column", query: "select offset from t", want: `select "offset" from t`, second: -1},
		{name: "offset after comma and in functions", query: "select topic, offset, max(offset) - offset from t",
			want: `select topic, "offset", max("offset") - "offset" from t`, second: -1},
		{name: "offset in where and order by", query: "select 1 from t where offset > 5 and offset < 9 order by offset desc",
			want: `select 1 from t where "offset" > 5 and "offset" < 9 order by "offset" desc`, second: -1},
		{name: "OFFSET clause kept", query: "select offset from t order by offset desc limit 2 OFFSET 1",
			want: `select "offset" from t order by "offset" desc limit 2 OFFSET 1`, second: -1},
		{name: "OFFSET after table", query: "select * from t offset 3", want: "select * from t offset 3", second: -1},
		{name: "qualified and quoted offset untouched", query: "select t.offset, \"offset\", `offset` from t",
			want: "select t.offset, \"offset\", `offset` from t", second: -1},
		{name: "offset in strings and comments untouched", query: "select 'offset', a -- , offset\nfrom t /* select offset */",
			want: "select 'offset', a -- , offset\nfrom t /* select offset */", second: -1},
		{name: "window function", query: "select window(ts, '1 minute').start from t group by window (ts, '1 minute')",
			want: `select "window"(ts, '1 minute').start from t group by "window" (ts, '1 minute')`, second: -1},
		{name: "WINDOW clause kept", query: "select sum(a) over w from t window w as (order by b)",
			want: "select sum(a) over w from t window w as (order by b)", second: -1},
		{name: "trailing semicolon dropped", query: "select 1;  -- done\n", want: "select 1", second: -1},
		{name: "second statement", query: "select 1; select 2", want: "select 1", second: 10},
		{name: "semicolon in string is not a separator", query: "select ';' from t", want: "select ';' from t", second: -1},
		{name: "dollar string", query: "select $$ offset; $$, offset from t", want: `select $$ offset; $$, "offset" from t`, second: -1},
		{name: "escape string", query: `select E'it\'s; offset', offset`, want: `select E'it\'s; offset', "offset"`, second: -1},
		{name: "parameter is not a dollar string", query: "select $1, offset", want: `select $1, "offset"`, second: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := rewriteSpark(tt.query)
			if got.sql != tt.want || got.second != tt.second {
				t.Errorf("rewriteSpark(%q) = %q, second %d; want %q, second %d", tt.query, got.sql, got.second, tt.want, tt.second)
			}
		})
	}
}

func TestPosMap(t *testing.T) {
	q := "select offset, x, offset from t"
	rw := rewriteSpark(q) // select "offset", x, "offset" from t
	m := posMap{edits: rw.edits}
	for _, tt := range []struct{ rewritten, original int }{
		{0, 0},   // s
		{7, 7},   // the first "offset" starts where offset did
		{10, 7},  // inside the quoted word: the word
		{17, 15}, // x
		{29, 25}, // from
	} {
		if got, ok := m.original(tt.rewritten); !ok || got != tt.original {
			t.Errorf("original(%d) = %d, %v; want %d (rewritten %q)", tt.rewritten, got, ok, tt.original, rw.sql)
		}
	}
	wrapped := posMap{prefix: 5, edits: rw.edits}
	if _, ok := wrapped.original(3); ok {
		t.Errorf("a position inside the prefix maps to the query")
	}
	if got, _ := wrapped.original(5 + 17); got != 15 {
		t.Errorf("wrapped original = %d, want 15", got)
	}
}

func TestLineCol(t *testing.T) {
	q := "select 'é',\n  brnch"
	for _, tt := range []struct{ off, pos, line, col int }{
		{0, 0, 1, 1},
		{15, 14, 2, 3}, // brnch: byte 15, character 14 (é is two bytes)
	} {
		pos, line, col := lineCol(q, tt.off)
		if pos != tt.pos || line != tt.line || col != tt.col {
			t.Errorf("lineCol(%d) = %d %d:%d, want %d %d:%d", tt.off, pos, line, col, tt.pos, tt.line, tt.col)
		}
	}
}

// TestMentionsNow covers the check that spares a run the statement pinning
// the time: every way to name a function that reads it is seen, and names
// inside strings or as parts of other words are not.
func TestMentionsNow(t *testing.T) {
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{"select count(*) as n from source", false},
		{"select from_unixtime(unix_timestamp()) as t from source", true},
		{"select current_timestamp as t from source", true},
		{"select CURRENT_DATE() as d from source", true},
		{"select now() as t from source", true},
		{`select "now"() as t from source`, true},
		{`select getvariable('x') as v from source`, true},
		{"select get_current_timestamp() as t from source", true},
		{"select 'now()' as s, nowhere from source -- now()", false},
		{"select value from source /* current_timestamp */", false},
		{"select unix_timestamp_ms from source", false},
		{`select "`, false}, // unterminated: the parser says so, not a panic here
	} {
		if got := mentionsNow(tc.sql); got != tc.want {
			t.Errorf("mentionsNow(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
	if !mentionsNow("select 1", "select now()") {
		t.Error("mentionsNow misses the input query")
	}
	// The names come from the macros: exactly the time functions.
	want := []string{"current_date", "current_timestamp", "get_current_timestamp", "getvariable", "now", "unix_timestamp"}
	if got := slices.Sorted(maps.Keys(nowReaders)); !slices.Equal(got, want) {
		t.Errorf("nowReaders = %v, want %v", got, want)
	}
}
