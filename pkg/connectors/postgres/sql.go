package postgres

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/pkg/stream"
)

// column is one output column of a chunk: its name and the field it reads.
type column struct {
	name, field string
}

// chunkColumns is the column list for rows: the configured columns, or else
// WriteKey.Columns followed by any other field the rows hold, sorted.
func (s *settings) chunkColumns(keyCols []string, rows []stream.Row) []column {
	if len(s.columns) > 0 {
		out := make([]column, len(s.columns))
		for i, c := range s.columns {
			out[i] = column{name: c.Name, field: c.Field}
		}
		return out
	}
	seen := make(map[string]bool, len(keyCols))
	out := make([]column, 0, len(keyCols))
	for _, c := range keyCols {
		if !seen[c] {
			seen[c] = true
			out = append(out, column{name: c, field: c})
		}
	}
	var extra []string
	for _, r := range rows {
		for k := range r {
			if !seen[k] {
				seen[k] = true
				extra = append(extra, k)
			}
		}
	}
	slices.Sort(extra)
	for _, k := range extra {
		out = append(out, column{name: k, field: k})
	}
	return out
}

// inferType is the column type CreateTable uses for a field whose first
// non-null value in the first rows is v.
func inferType(v any) string {
	switch v.(type) {
	case bool:
		return "boolean"
	case int64, int, int32, int16, int8, uint32, uint16, uint8:
		return "bigint"
	case uint64, uint:
		return "numeric(20)"
	case float64, float32:
		return "double precision"
	case []byte:
		return "bytea"
	case time.Time:
		return "timestamptz"
	case map[string]any, stream.Row, []any:
		return "jsonb"
	}
	return "text"
}

// createTableSQL is CREATE TABLE IF NOT EXISTS for the target, with column
// types from the config or inferred from rows, and the key columns as
// primary key in upsert mode.
func (s *settings) createTableSQL(cols []column, rows []stream.Row) string {
	return s.createTableSQLOf(cols, firstInRows(rows))
}

// firstInRows is the first non-null value of a field in rows, nil when
// there is none.
func firstInRows(rows []stream.Row) func(field string) any {
	return func(field string) any {
		for _, r := range rows {
			if v := r[field]; v != nil {
				return v
			}
		}
		return nil
	}
}

// createTableSQLOf is createTableSQL with a field's type inferred from
// first(field), its first non-null value.
func (s *settings) createTableSQLOf(cols []column, first func(field string) any) string {
	types := map[string]string{}
	for _, c := range s.columns {
		if c.Type != "" {
			types[c.Name] = c.Type
		}
	}
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS ")
	b.WriteString(s.table.Sanitize())
	b.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		typ := types[c.name]
		if typ == "" {
			typ = "text"
			if v := first(c.field); v != nil {
				typ = inferType(v)
			}
		}
		b.WriteString(pgx.Identifier{c.name}.Sanitize())
		b.WriteString(" ")
		b.WriteString(typ)
	}
	if s.upsert {
		b.WriteString(", PRIMARY KEY (")
		b.WriteString(identList(s.cfg.KeyColumns))
		b.WriteString(")")
	}
	b.WriteString(")")
	return b.String()
}

// createPositionsSQL creates the positions table: one row per (job, sink,
// part) holding the last batch committed to the target, the incarnation of
// the job that committed it, the task's end position (CommitEnd) and what
// it wrote.
func (s *settings) createPositionsSQL() string {
	return "CREATE TABLE IF NOT EXISTS " + s.positions.Sanitize() + ` (
	job text NOT NULL,
	sink text NOT NULL,
	part text NOT NULL,
	batch bigint NOT NULL,
	incarnation text NOT NULL DEFAULT '',
	end_position bytea,
	row_count bigint NOT NULL DEFAULT 0,
	target_table text NOT NULL DEFAULT '',
	committed_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (job, sink, part))`
}

// positionsColumnsSQL counts the columns of the positions table that the
// first layout lacked; migratePositionsSQL adds them. Rows of the first
// layout get the empty incarnation and no end.
const positionsColumnsSQL = `SELECT count(*) FROM pg_attribute
	WHERE attrelid = $1::regclass AND attname IN ('incarnation', 'end_position') AND attnum > 0 AND NOT attisdropped`

func (s *settings) migratePositionsSQL() string {
	return "ALTER TABLE " + s.positions.Sanitize() + " ADD COLUMN IF NOT EXISTS incarnation text NOT NULL DEFAULT '', " +
		"ADD COLUMN IF NOT EXISTS end_position bytea"
}

func identList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = pgx.Identifier{n}.Sanitize()
	}
	return strings.Join(q, ", ")
}

func colNames(cols []column) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = c.name
	}
	return out
}

// conflictClause is the ON CONFLICT clause of an upsert: update every
// non-key column from the new row, or do nothing when all columns are keys.
func (s *settings) conflictClause(cols []column) string {
	var sets []string
	for _, c := range cols {
		if slices.Contains(s.cfg.KeyColumns, c.name) {
			continue
		}
		id := pgx.Identifier{c.name}.Sanitize()
		sets = append(sets, id+" = EXCLUDED."+id)
	}
	clause := " ON CONFLICT (" + identList(s.cfg.KeyColumns) + ")"
	if len(sets) == 0 {
		return clause + " DO NOTHING"
	}
	return clause + " DO UPDATE SET " + strings.Join(sets, ", ")
}

// maxParams is the most bind parameters one statement may carry in the
// PostgreSQL protocol (a 16-bit count).
const maxParams = 65535

// insertSQL is a multi-row INSERT of n rows of cols into the table, with
// the upsert's conflict clause in upsert mode.
func (s *settings) insertSQL(cols []column, n int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(s.table.Sanitize())
	b.WriteString(" (")
	b.WriteString(identList(colNames(cols)))
	b.WriteString(") VALUES ")
	p := 1
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := range cols {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(p))
			p++
		}
		b.WriteByte(')')
	}
	if s.upsert {
		b.WriteString(s.conflictClause(cols))
	}
	return b.String()
}

// values converts rows to column values pgx encodes: scalars as they are,
// nested maps and lists as JSON text (which json, jsonb and text columns
// all accept).
func values(cols []column, rows []stream.Row) ([][]any, error) {
	out := make([][]any, len(rows))
	for i, r := range rows {
		vals := make([]any, len(cols))
		for j, c := range cols {
			v, err := pgValue(r[c.field])
			if err != nil {
				return nil, fmt.Errorf("row %d field %q: %w", i+1, c.field, err)
			}
			vals[j] = v
		}
		out[i] = vals
	}
	return out, nil
}

func pgValue(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any, stream.Row, []any:
		b, err := json.Marshal(jsonSafe(x))
		if err != nil {
			return nil, err
		}
		return string(b), nil
	}
	return v, nil
}

// jsonSafe replaces what encoding/json refuses (NaN, infinities) by strings,
// as the file sink writes them.
func jsonSafe(v any) any {
	switch x := v.(type) {
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "Infinity"
		case math.IsInf(x, -1):
			return "-Infinity"
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonSafe(e)
		}
		return out
	case stream.Row:
		return jsonSafe(map[string]any(x))
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonSafe(e)
		}
		return out
	}
	return v
}

// dedupe keeps the last row of each key, in the order of their last
// occurrence: one INSERT ... ON CONFLICT DO UPDATE may not touch a row
// twice, and the last write of a key is the one that must win.
func dedupe(rows [][]any, keyIdx []int) [][]any {
	last := make(map[string]int, len(rows))
	var kb strings.Builder
	keys := make([]string, len(rows))
	for i, r := range rows {
		kb.Reset()
		for _, k := range keyIdx {
			fmt.Fprintf(&kb, "%T\x00%v\x00", r[k], r[k])
		}
		keys[i] = kb.String()
		last[keys[i]] = i
	}
	if len(last) == len(rows) {
		return rows
	}
	out := rows[:0:0]
	for i, r := range rows {
		if last[keys[i]] == i {
			out = append(out, r)
		}
	}
	return out
}
