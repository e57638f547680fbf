//go:build duckdb_arrow

package sqlengine

import (
	"strings"
	"testing"
)

func TestCheckExpression(t *testing.T) {
	for _, tc := range []struct{ text, err string }{
		{text: "amount > 0 AND currency = 'USD'"},
		{text: "(a + b) * (c - d) > 0"},
		{text: "name = ')' OR \"we(ird\" = 1 -- a comment )"},
		{text: "x = 1 /* ) */"},
		{text: "x > 0) UNION ALL (SELECT * FROM source", err: "position 5: a ')' with no '(' before it"},
		{text: "x > 0; DROP TABLE t", err: "position 5: ';' ends a statement"},
		{text: "f(x > 0", err: "position 7: a '(' is not closed"},
		{text: "é = ')' AND y)", err: "position 13: a ')'"},
	} {
		err := CheckExpression(tc.text)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("CheckExpression(%q) = %v", tc.text, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("CheckExpression(%q) = %v, want %q", tc.text, err, tc.err)
		}
	}
}

func TestColumnName(t *testing.T) {
	for _, tc := range []struct {
		text, name string
		quoted, ok bool
	}{
		{text: "amount", name: "amount", ok: true},
		{text: "  Amount -- the amount\n", name: "Amount", ok: true},
		{text: `"weird-name"`, name: "weird-name", quoted: true, ok: true},
		{text: "`a``b`", name: "a`b", quoted: true, ok: true},
		{text: `"a""b" /* c */`, name: `a"b`, quoted: true, ok: true},
		{text: "amount + 1"},
		{text: "t.amount"},
		{text: "'amount'"},
		{text: "upper(name)"},
		{text: `"open`},
		{text: ""},
		{text: "-- only a comment"},
	} {
		name, quoted, ok := ColumnName(tc.text)
		if name != tc.name || quoted != tc.quoted || ok != tc.ok {
			t.Errorf("ColumnName(%q) = %q, %v, %v; want %q, %v, %v", tc.text, name, quoted, ok, tc.name, tc.quoted, tc.ok)
		}
	}
}
