//go:build duckdb_arrow

package sqlengine

import (
	"fmt"
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
