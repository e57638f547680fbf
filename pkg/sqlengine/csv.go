//go:build duckdb_arrow

package sqlengine

import (
	"database/sql/driver"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	duckdb "github.com/duckdb/duckdb-go/v2"
)

// CSVFunction is a built-in Go function of every Engine for decode steps:
// __sluice_csv(text VARCHAR, delimiter VARCHAR) VARCHAR[][] splits text into
// CSV records (RFC 4180 quoting, any number of lines) and each into its
// fields. It returns NULL for text that is not CSV (a bare quote, a
// delimiter that is not one character), so that a decode can tell a bad
// record from an empty one; NULL text gives NULL.
const CSVFunction = "__sluice_csv"

type csvSplit struct{ in, out []duckdb.TypeInfo }

func newCSVSplit() (*csvSplit, error) {
	v, err := duckdb.NewTypeInfo(duckdb.TYPE_VARCHAR)
	if err != nil {
		return nil, err
	}
	row, err := duckdb.NewListInfo(v)
	if err != nil {
		return nil, err
	}
	rows, err := duckdb.NewListInfo(row)
	if err != nil {
		return nil, err
	}
	return &csvSplit{in: []duckdb.TypeInfo{v, v}, out: []duckdb.TypeInfo{rows}}, nil
}

func (c *csvSplit) Config() duckdb.ScalarFuncConfig {
	return duckdb.ScalarFuncConfig{InputTypeInfos: c.in, ResultTypeInfo: c.out[0]}
}

func (c *csvSplit) Executor() duckdb.ScalarFuncExecutor {
	return duckdb.ScalarFuncExecutor{RowExecutor: func(v []driver.Value) (any, error) {
		text, _ := v[0].(string)
		delim, _ := v[1].(string)
		recs, err := splitCSV(text, delim)
		if err != nil {
			return nil, nil // not CSV: NULL, for the decode to report or skip
		}
		out := make([]any, len(recs))
		for i, r := range recs {
			fields := make([]any, len(r))
			for j, f := range r {
				fields[j] = f
			}
			out[i] = fields
		}
		return out, nil
	}}
}

// splitCSV reads every record of text. Records may have different numbers
// of fields; blank lines are skipped, as encoding/csv does.
func splitCSV(text, delim string) ([][]string, error) {
	d, n := utf8.DecodeRuneInString(delim)
	if n == 0 || n != len(delim) || d == '"' || d == '\r' || d == '\n' {
		return nil, fmt.Errorf("delimiter %q: want one character other than a quote or a line break", delim)
	}
	r := csv.NewReader(strings.NewReader(text))
	r.Comma = d
	r.FieldsPerRecord = -1
	var out [][]string
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
}
