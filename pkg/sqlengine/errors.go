//go:build duckdb_arrow

package sqlengine

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// kind is a sentinel that can name its parent, so that errors.Is finds both
// ErrUnknownColumn and ErrInvalidQuery in one QueryError.
type kind struct {
	msg    string
	parent error
}

func (k *kind) Error() string { return k.msg }
func (k *kind) Unwrap() error { return k.parent }

var (
	// ErrInvalidQuery is wrapped by every refusal of Compile that is the
	// query's fault (its text, its columns, its functions, what it reads):
	// the job-spec validator reports those as InvalidArgument.
	ErrInvalidQuery = errors.New("invalid query")

	// ErrSyntax: DuckDB's parser refused the text.
	ErrSyntax error = &kind{"syntax error", ErrInvalidQuery}
	// ErrUnknownColumn: a column that is not in the view (or a CTE, or an alias).
	ErrUnknownColumn error = &kind{"unknown column", ErrInvalidQuery}
	// ErrUnknownFunction: a function, macro or table function that does not exist.
	ErrUnknownFunction error = &kind{"unknown function", ErrInvalidQuery}
	// ErrUnknownTable: a table other than the view or the query's own CTEs.
	ErrUnknownTable error = &kind{"unknown table", ErrInvalidQuery}
	// ErrNotAllowed: a statement other than one SELECT, a table function that
	// reads outside the batch, a parameter, or a construct the engine cannot
	// run correctly.
	ErrNotAllowed error = &kind{"not allowed", ErrInvalidQuery}

	// ErrExecution is wrapped by errors DuckDB raised while running a
	// compiled query over a batch (a failed cast, an overflow, a Go function
	// returning an error). The same batch fails the same way again.
	ErrExecution = errors.New("query failed")

	// ErrClosed is returned by every call on an Engine after Close started.
	ErrClosed = errors.New("sqlengine: engine closed")

	// ErrSchemaMismatch: Run's input is not the schema the query was compiled for.
	ErrSchemaMismatch = errors.New("sqlengine: input schema differs from the compiled schema")
)

// QueryError says what is wrong with a query and where. Field is "query" for
// the query text, "view" for the view name and "schema" for the input schema;
// a job-spec validator prefixes it with the step's path
// (transforms[1].sql.query). Position is a 0-based offset in characters into
// the query exactly as the user wrote it, or -1 when DuckDB names no place;
// Line and Column are the same place, 1-based (0 when Position is -1).
//
// Err is one of the sentinels above, so errors.Is(err, ErrUnknownColumn) and
// errors.Is(err, ErrInvalidQuery) both work.
type QueryError struct {
	Field    string
	Position int
	Line     int
	Column   int
	Reason   string
	Err      error
}

func (e *QueryError) Error() string {
	if e.Position < 0 {
		return fmt.Sprintf("%s: %v: %s", e.Field, e.Err, e.Reason)
	}
	return fmt.Sprintf("%s at %d:%d (position %d): %v: %s", e.Field, e.Line, e.Column, e.Position, e.Err, e.Reason)
}

func (e *QueryError) Unwrap() error { return e.Err }

// queryErrorAt builds a QueryError for a byte offset into the user's query;
// off < 0 means no position.
func queryErrorAt(query string, off int, err error, reason string) *QueryError {
	qe := &QueryError{Field: "query", Position: -1, Reason: reason, Err: err}
	if off >= 0 {
		qe.Position, qe.Line, qe.Column = lineCol(query, off)
	}
	return qe
}

// duckError is DuckDB's error as JSON, which it produces with
// errors_as_json=true (the Engine sets it, and lock_configuration keeps it).
// Its position is a byte offset into the SQL text DuckDB was given.
type duckError struct {
	Type     string `json:"exception_type"`
	Message  string `json:"exception_message"`
	Subtype  string `json:"error_subtype"`
	Position string `json:"position"`
	Entry    string `json:"type"` // what a catalog error did not find: "Scalar Function", "Table"...
}

// parseDuckError extracts DuckDB's JSON error from err. duckdb-go puts it in
// a *duckdb.Error's message after "<Type> Error: ", or joins it with the
// context's error; both forms hold the same JSON object.
func parseDuckError(err error) (duckError, bool) {
	var de *duckdb.Error
	msg := err.Error()
	if errors.As(err, &de) {
		msg = de.Msg
	}
	for i := strings.IndexByte(msg, '{'); i >= 0; {
		var d duckError
		dec := json.NewDecoder(strings.NewReader(msg[i:]))
		if dec.Decode(&d) == nil && d.Type != "" {
			return d, true
		}
		j := strings.IndexByte(msg[i+1:], '{')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return duckError{}, false
}

func (d duckError) reason() string {
	return strings.Join(strings.Fields(strings.ReplaceAll(d.Message, "\n", " ")), " ")
}

// compileKind classifies an error DuckDB raised while parsing or binding.
func (d duckError) compileKind() error {
	switch {
	case d.Type == "Parser":
		return ErrSyntax
	case d.Subtype == "COLUMN_NOT_FOUND",
		// A qualified name (source.x) whose table lacks it.
		d.Type == "Binder" && strings.Contains(d.Message, "does not have a column named"):
		return ErrUnknownColumn
	case d.Type == "Catalog" && strings.Contains(d.Entry, "Function"):
		return ErrUnknownFunction
	case d.Type == "Catalog" && (d.Entry == "Table" || d.Entry == "View"):
		return ErrUnknownTable
	case d.Type == "Permission":
		return ErrNotAllowed
	}
	return ErrInvalidQuery
}

// fromDuck turns an error DuckDB raised for sql (mapped back to the user's
// query by m) into a *QueryError of the given kind, or of the kind DuckDB's
// own classification gives when k is nil. Errors that are not DuckDB's are
// wrapped as they are.
func fromDuck(err error, query string, m posMap, k error) error {
	d, ok := parseDuckError(err)
	if !ok {
		return err
	}
	if k == nil {
		k = d.compileKind()
	}
	off := -1
	if p, err := strconv.Atoi(d.Position); err == nil {
		if o, ok := m.original(p); ok {
			off = o
		}
	}
	qe := queryErrorAt(query, off, k, d.reason())
	if k == ErrUnknownColumn && off >= 0 && off < len(query) && query[off] == '"' {
		// Spark reads "EUR" as a string; DuckDB (and standard SQL) as a column.
		qe.Reason += ` (double quotes name a column here: write a string as 'EUR')`
	}
	return qe
}
