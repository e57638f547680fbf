//go:build duckdb_arrow

package sqlengine

import (
	"reflect"
	"testing"
)

func TestSplitCSV(t *testing.T) {
	for _, tc := range []struct {
		text, delim string
		want        [][]string
		bad         bool
	}{
		{text: "a,b", delim: ",", want: [][]string{{"a", "b"}}},
		{text: "a,b\nc", delim: ",", want: [][]string{{"a", "b"}, {"c"}}},
		{text: `"x,y",""""`, delim: ",", want: [][]string{{"x,y", `"`}}},
		{text: "a;b\r\n\r\nc;d\n", delim: ";", want: [][]string{{"a", "b"}, {"c", "d"}}},
		{text: "a\tb", delim: "\t", want: [][]string{{"a", "b"}}},
		{text: "", delim: ",", want: nil},
		{text: `"open`, delim: ",", bad: true},
		{text: `a"b`, delim: ",", bad: true},
		{text: "a,b", delim: ",,", bad: true},
		{text: "a,b", delim: `"`, bad: true},
		{text: "a,b", delim: "", bad: true},
	} {
		got, err := splitCSV(tc.text, tc.delim)
		if tc.bad {
			if err == nil {
				t.Errorf("splitCSV(%q, %q) = %q, want an error", tc.text, tc.delim, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitCSV(%q, %q) = %q, %v; want %q", tc.text, tc.delim, got, err, tc.want)
		}
	}
}
