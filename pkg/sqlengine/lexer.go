//go:build duckdb_arrow

package sqlengine

import (
	"strings"
	"unicode/utf8"
)

// This file holds the only text-level rewriting the engine does to a user's
// query. DuckDB's parser is PostgreSQL's, where a few words Spark users write
// as plain identifiers are reserved. The rewrite quotes them where the
// surrounding tokens make the identifier reading certain, and keeps a map of
// every edit so that positions DuckDB reports in the rewritten text point
// back at the text the user wrote.

type tokenKind int

const (
	tokSpace  tokenKind = iota // whitespace and comments
	tokWord                    // bare identifier or keyword
	tokQuoted                  // "identifier" or `identifier`
	tokString                  // '...', E'...', $tag$...$tag$
	tokNumber                  // 42, 1.5, 1e3
	tokParam                   // $1, ?
	tokPunct                   // one character of punctuation or an operator
)

type token struct {
	kind       tokenKind
	start, end int // byte offsets into the query
}

func (t token) text(q string) string { return q[t.start:t.end] }

// unquote returns a tokQuoted token's text ("a""b" or `a`) as the name it
// quotes; false when the quote is not closed.
func unquote(w string) (string, bool) {
	if len(w) < 2 || w[len(w)-1] != w[0] {
		return "", false
	}
	q := w[:1]
	return strings.ReplaceAll(w[1:len(w)-1], q+q, q), true
}

// lex splits q into tokens. It never fails: an unterminated string or
// comment runs to the end of the query, and DuckDB's parser reports it.
func lex(q string) []token {
	var toks []token
	i := 0
	for i < len(q) {
		start := i
		c := q[i]
		kind := tokPunct
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			for i < len(q) && strings.IndexByte(" \t\n\r\f\v", q[i]) >= 0 {
				i++
			}
			kind = tokSpace
		case c == '-' && strings.HasPrefix(q[i:], "--"):
			if j := strings.IndexByte(q[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(q)
			}
			kind = tokSpace
		case c == '/' && strings.HasPrefix(q[i:], "/*"):
			i = skipBlockComment(q, i)
			kind = tokSpace
		case c == '\'':
			i = skipQuoted(q, i, '\'', false)
			kind = tokString
		case (c == 'e' || c == 'E') && i+1 < len(q) && q[i+1] == '\'':
			i = skipQuoted(q, i+1, '\'', true)
			kind = tokString
		case c == '"' || c == '`':
			i = skipQuoted(q, i, c, false)
			kind = tokQuoted
		case c == '$':
			if j := dollarTag(q, i); j > i {
				tag := q[i:j]
				if k := strings.Index(q[j:], tag); k >= 0 {
					i = j + k + len(tag)
				} else {
					i = len(q)
				}
				kind = tokString
			} else {
				i++
				for i < len(q) && isDigit(q[i]) {
					i++
				}
				kind = tokParam
			}
		case c == '?':
			i++
			kind = tokParam
		case isDigit(c) || (c == '.' && i+1 < len(q) && isDigit(q[i+1])):
			for i < len(q) && (isWordByte(q[i]) || q[i] == '.') {
				i++
			}
			kind = tokNumber
		case isWordStart(c):
			for i < len(q) && (isWordByte(q[i]) || q[i] == '$') {
				i++
			}
			kind = tokWord
		default:
			_, n := utf8.DecodeRuneInString(q[i:])
			i += n
		}
		toks = append(toks, token{kind: kind, start: start, end: i})
	}
	return toks
}

func skipBlockComment(q string, i int) int {
	depth := 0
	for i < len(q) {
		switch {
		case strings.HasPrefix(q[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(q[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return i
}

// skipQuoted returns the offset just past the quoted run that opens at q[i],
// where a doubled quote is an escaped quote (and, with backslash, so is \').
func skipQuoted(q string, i int, quote byte, backslash bool) int {
	i++
	for i < len(q) {
		switch {
		case backslash && q[i] == '\\':
			i += 2
		case q[i] == quote:
			if i+1 < len(q) && q[i+1] == quote {
				i += 2
				continue
			}
			return i + 1
		default:
			i++
		}
	}
	return len(q)
}

// dollarTag returns the end of a $tag$ opening at q[i], or i when there is none.
func dollarTag(q string, i int) int {
	j := i + 1
	for j < len(q) && (isWordByte(q[j]) && !isDigit(q[j]) || j > i+1 && isDigit(q[j])) {
		j++
	}
	if j < len(q) && q[j] == '$' {
		return j + 1
	}
	return i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isWordStart(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}
func isWordByte(c byte) bool { return isWordStart(c) || isDigit(c) }

// edit replaces q[at:at+oldLen] with a text newLen bytes long.
type edit struct{ at, oldLen, newLen int }

// posMap turns byte offsets in the SQL DuckDB saw back into byte offsets in
// the query as the user wrote it: skip the prefix the engine put in front,
// then undo each edit.
type posMap struct {
	prefix int
	edits  []edit // ascending by at, in original offsets
	// nowhere: the SQL is the engine's own (Distribute's rewrites), and no
	// offset in it points into the user's query.
	nowhere bool
}

// original maps p, a byte offset into the SQL DuckDB saw, to one into the
// user's query; ok is false when p falls in text the engine added.
func (m posMap) original(p int) (int, bool) {
	if m.nowhere {
		return 0, false
	}
	p -= m.prefix
	if p < 0 {
		return 0, false
	}
	shift := 0 // rewritten minus original, for text before the current edit
	for _, e := range m.edits {
		newStart := e.at + shift
		if p < newStart {
			break
		}
		if p < newStart+e.newLen {
			return e.at, true // inside an edit: point at the word it replaced
		}
		shift += e.newLen - e.oldLen
	}
	return p - shift, true
}

// rewritten is a query after the Spark-compatibility rewrite.
type rewritten struct {
	sql   string // what DuckDB parses
	edits []edit
	// second is the byte offset of a second statement in the original query,
	// or -1 when there is only one.
	second int
}

// rewriteSpark quotes the words Spark treats as identifiers where DuckDB's
// grammar reserves them, and drops a trailing semicolon:
//
//   - offset, Kafka's column, is an identifier unless it follows something
//     that ends an expression or a table reference (LIMIT 10 OFFSET 5, FROM t
//     OFFSET 5). After a comma, an opening parenthesis, an operator or a
//     keyword that expects an expression (SELECT, WHERE, BY, AND, WHEN...)
//     it becomes "offset". Qualified t.offset already works.
//   - window followed by ( is Spark's window function, not the WINDOW clause
//     (WINDOW w AS (...) puts a name between them): it becomes "window", the
//     name of our macro.
//
// Everything else is left to DuckDB, which reports what it cannot parse.
func rewriteSpark(q string) rewritten {
	toks := lex(q)
	out := rewritten{second: -1}
	var b strings.Builder
	b.Grow(len(q) + 8)
	last := 0 // q[last:] not yet copied
	end := len(q)
	prev := -1 // index of the previous significant token
	for i, t := range toks {
		if t.kind == tokSpace {
			continue
		}
		if t.kind == tokPunct && q[t.start] == ';' {
			// Everything after the first top-level semicolon must be
			// blank: a SQL step is one statement.
			end = t.start
			for _, u := range toks[i+1:] {
				if u.kind != tokSpace && !(u.kind == tokPunct && q[u.start] == ';') {
					out.second = u.start
					break
				}
			}
			break
		}
		if t.kind == tokWord {
			var repl string
			switch w := strings.ToLower(t.text(q)); {
			case w == "offset" && identifierFollows(q, toks, prev):
				repl = `"offset"`
			case w == "window" && nextIs(q, toks, i, '('):
				repl = `"window"`
			}
			if repl != "" {
				b.WriteString(q[last:t.start])
				b.WriteString(repl)
				last = t.end
				out.edits = append(out.edits, edit{at: t.start, oldLen: t.end - t.start, newLen: len(repl)})
			}
		}
		prev = i
	}
	b.WriteString(q[last:end])
	out.sql = b.String()
	return out
}

// expressionStarters are keywords after which an expression (so a column
// name) comes next.
var expressionStarters = map[string]bool{
	"select": true, "distinct": true, "all": true, "by": true, "where": true, "and": true, "or": true,
	"not": true, "on": true, "when": true, "then": true, "else": true, "case": true, "having": true,
	"qualify": true, "between": true,
}

// identifierFollows reports whether the token after toks[prev] must be an
// identifier rather than the OFFSET clause.
func identifierFollows(q string, toks []token, prev int) bool {
	if prev < 0 {
		return false
	}
	p := toks[prev]
	switch p.kind {
	case tokPunct:
		return strings.IndexByte(",(=<>+-*/%|!~^&[", q[p.start]) >= 0
	case tokWord:
		return expressionStarters[strings.ToLower(p.text(q))]
	}
	return false
}

// nextIs reports whether the significant token after toks[i] is the
// punctuation c.
func nextIs(q string, toks []token, i int, c byte) bool {
	for _, t := range toks[i+1:] {
		if t.kind == tokSpace {
			continue
		}
		return t.kind == tokPunct && q[t.start] == c
	}
	return false
}

// firstWord returns the first keyword of q and its byte offset, for messages
// about statements that are not SELECT.
func firstWord(q string) (string, int) {
	for _, t := range lex(q) {
		switch t.kind {
		case tokSpace:
			continue
		case tokWord:
			return strings.ToUpper(t.text(q)), t.start
		default:
			return "", t.start
		}
	}
	return "", 0
}

// lineCol converts a byte offset in q to a 0-based character (rune) offset
// and a 1-based line and column counted in characters.
func lineCol(q string, byteOff int) (pos, line, col int) {
	if byteOff > len(q) {
		byteOff = len(q)
	}
	line, col = 1, 1
	for _, r := range q[:byteOff] {
		pos++
		if r == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return pos, line, col
}
