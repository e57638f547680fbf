//go:build duckdb_arrow

package sqlengine

import (
	"strings"
	"testing"
)

func TestJavaPattern(t *testing.T) {
	tests := []struct {
		pattern string
		parse   bool
		want    string
		err     string
	}{
		{pattern: "yyyy-MM-dd HH:mm:ss", want: "%Y-%m-%d %H:%M:%S"},
		{pattern: "yy/M/d H:m:s", want: "%y/%-m/%-d %-H:%-M:%-S"},
		{pattern: "dd MMM yyyy, EEE hh a", want: "%d %b %Y, %a %I %p"},
		{pattern: "EEEE d MMMM", want: "%A %-d %B"},
		{pattern: "yyyy-MM-dd'T'HH:mm:ss.SSS", want: "%Y-%m-%dT%H:%M:%S.%g"},
		{pattern: "HH:mm:ss.SSSSSS", want: "%H:%M:%S.%f"},
		{pattern: "D DDD", want: "%-j %j"},
		{pattern: "'it''s' 100%", want: "it's 100%%"},
		{pattern: "''yyyy''", want: "'%Y'"},
		{pattern: "yyyy-MM-dd HH:mm:ssZ", want: "%Y-%m-%d %H:%M:%S+0000"},
		{pattern: "yyyy-MM-dd HH:mm:ssXXX", want: "%Y-%m-%d %H:%M:%SZ"},
		{pattern: "yyyy-MM-dd HH:mm:ss z", want: "%Y-%m-%d %H:%M:%S UTC"},
		{pattern: "yyyy-MM-dd HH:mm:ssXXX", parse: true, want: "%Y-%m-%d %H:%M:%S%z"},
		{pattern: "yyyy-MM-dd HH:mm:ss z", parse: true, want: "%Y-%m-%d %H:%M:%S %Z"},
		{pattern: "yyyy-QQ", err: "QQ at character 5 is not supported"},
		{pattern: "yyyy-MM-dd G", err: "G at character 11 is not supported"},
		{pattern: "HH:mm:ss.SS", err: "SS at character 9"},
		{pattern: "yyyy[-MM]", err: `'[' at character 4 is not supported`},
		{pattern: "yyyy 'unterminated", err: "unterminated quote at character 5"},
		{pattern: "kk:mm", err: "kk at character 0"},
	}
	for _, tt := range tests {
		got, err := javaPattern(tt.pattern, tt.parse)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("javaPattern(%q) error = %v, want containing %q", tt.pattern, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("javaPattern(%q, parse %v) = %q, %v; want %q", tt.pattern, tt.parse, got, err, tt.want)
		}
	}
}
