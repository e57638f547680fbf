//go:build duckdb_arrow

package sqlengine

import (
	"strings"
	"testing"
)

func TestSparkSchema(t *testing.T) {
	tests := []struct {
		ddl, want, err string
	}{
		{ddl: "branch STRING, currency STRING, amount BIGINT",
			want: `{"branch":"VARCHAR","currency":"VARCHAR","amount":"BIGINT"}`},
		{ddl: "a int, b LONG, c short, d byte, e float, f double, g boolean, h date",
			want: `{"a":"INTEGER","b":"BIGINT","c":"SMALLINT","d":"TINYINT","e":"FLOAT","f":"DOUBLE","g":"BOOLEAN","h":"DATE"}`},
		{ddl: "t TIMESTAMP, n TIMESTAMP_NTZ, l timestamp_ltz", want: `{"t":"TIMESTAMPTZ","n":"TIMESTAMP","l":"TIMESTAMPTZ"}`},
		{ddl: "p DECIMAL(12, 2), q decimal, r NUMERIC(5)", want: `{"p":"DECIMAL(12,2)","q":"DECIMAL(10,0)","r":"DECIMAL(5,0)"}`},
		{ddl: "tags ARRAY<STRING>, m ARRAY<ARRAY<INT>>", want: `{"tags":["VARCHAR"],"m":[["INTEGER"]]}`},
		{ddl: "s STRUCT<x: DOUBLE, y STRING, z: STRUCT<w: INT>>", want: `{"s":{"x":"DOUBLE","y":"VARCHAR","z":{"w":"INTEGER"}}}`},
		{ddl: "m MAP<STRING, ARRAY<INT>>", want: `{"m":"MAP(VARCHAR, INTEGER[])"}`},
		{ddl: "m MAP<STRING, STRUCT<a: INT>>", want: `{"m":"MAP(VARCHAR, STRUCT(\"a\" INTEGER))"}`},
		{ddl: "`weird name` STRING NOT NULL COMMENT 'the name', v VARCHAR(10)", want: `{"weird name":"VARCHAR","v":"VARCHAR"}`},
		{ddl: "a: INT, b: STRING", want: `{"a":"INTEGER","b":"VARCHAR"}`},
		{ddl: ` {"a": "BIGINT"}`, want: `{"a": "BIGINT"}`},
		{ddl: "a STRNG", err: `unknown or unsupported type "strng"`},
		{ddl: "a BINARY", err: `unknown or unsupported type "binary"`},
		{ddl: "a INT, a STRING", err: `duplicate field "a"`},
		{ddl: "a ARRAY<INT", err: `want ">"`},
		{ddl: "a DECIMAL(40,2)", err: "precision must be 1 to 38"},
		{ddl: "a INT b INT", err: `unexpected "b"`},
		{ddl: "", err: "no fields"},
	}
	for _, tt := range tests {
		got, err := sparkSchema(tt.ddl)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("sparkSchema(%q) error = %v, want containing %q", tt.ddl, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("sparkSchema(%q) = %s, %v; want %s", tt.ddl, got, err, tt.want)
		}
	}
}
