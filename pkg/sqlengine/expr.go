//go:build duckdb_arrow

package sqlengine

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// CheckExpression refuses text that cannot be one SQL expression standing
// in a larger query: a parenthesis closing one it did not open, or a `;`
// outside strings, quoted names and comments. A job's shorthand steps
// (filter: "amount > 0") are pasted into a query; without this check
// "x) UNION ALL (SELECT ..." would compile as something else than a
// filter. The error names the character position in text.
func CheckExpression(text string) error {
	depth := 0
	for _, t := range lex(text) {
		if t.kind != tokPunct {
			continue
		}
		switch text[t.start] {
		case '(':
			depth++
		case ')':
			if depth == 0 {
				return fmt.Errorf("position %d: a ')' with no '(' before it: write one expression", utf8.RuneCountInString(text[:t.start]))
			}
			depth--
		case ';':
			return fmt.Errorf("position %d: ';' ends a statement: write one expression", utf8.RuneCountInString(text[:t.start]))
		}
	}
	if depth > 0 {
		return fmt.Errorf("position %d: a '(' is not closed", utf8.RuneCountInString(text))
	}
	return nil
}

// ColumnName reports whether text is one column name and nothing else, with
// only spaces and comments around it: a bare identifier (amount) or a quoted
// one ("weird-name", `weird-name`). name is the identifier unquoted; quoted
// says how it was written, since SQL matches a bare name to a column in any
// case and a quoted one exactly. It lets a caller read such a column
// straight from its batch instead of running a query for it. A bare word
// SQL reads as a value rather than a column (true, NULL, current_date) is
// not a name, even where a column of that name exists: SQL would not read
// the column either.
func ColumnName(text string) (name string, quoted, ok bool) {
	var word *token
	for _, t := range lex(text) {
		if t.kind == tokSpace {
			continue
		}
		if word != nil || (t.kind != tokWord && t.kind != tokQuoted) {
			return "", false, false
		}
		word = &t
	}
	if word == nil {
		return "", false, false
	}
	w := word.text(text)
	if word.kind == tokWord {
		if valueWords[strings.ToLower(w)] {
			return "", false, false
		}
		return w, false, true
	}
	name, ok = unquote(w)
	if !ok {
		return "", false, false // unterminated: let the parser say so
	}
	return name, true, true
}

// valueWords are the bare words DuckDB reads as a value, not a column
// reference, when they stand alone.
var valueWords = map[string]bool{
	"true": true, "false": true, "null": true, "default": true,
	"current_date": true, "current_time": true, "current_timestamp": true, "localtime": true, "localtimestamp": true,
	"current_user": true, "session_user": true, "user": true, "current_role": true, "current_catalog": true, "current_schema": true,
}
