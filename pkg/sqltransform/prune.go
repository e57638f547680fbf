//go:build duckdb_arrow

package sqltransform

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/sqlengine"
)

// pruneDecode returns p with its json decode narrowed to the fields the
// later steps read, when that changes nothing they produce: DuckDB cannot
// leave out a field of the STRUCT json_transform builds, so without this
// every task would extract every field of the schema (an inferred one holds
// all the records' fields) to use a few.
//
// A field can only be read if its name appears in a later step's text (or
// is the watermark or a dropDuplicates column). The decode is narrowed to
// those, compiled again, and kept only if the pipeline's output (columns,
// types, partial aggregates) is the same; a query that reads every column
// (SELECT *) changes its output without them, so the whole schema stays.
// Fields that stand in for a source column of the same name are always
// kept: without them the name would read the source's column instead.
//
// It returns the configuration of the pipeline it returns.
func pruneDecode(ctx context.Context, eng *sqlengine.Engine, cfg Config, p *Pipeline) (Config, *Pipeline) {
	if len(cfg.Steps) < 2 || cfg.Steps[0].Decode == nil || cfg.Steps[0].Decode.Format != "json" {
		return cfg, p
	}
	d := *cfg.Steps[0].Decode
	structure, fields, err := sqlengine.SparkSchema(d.Schema)
	if err != nil || len(fields) < 2 {
		return cfg, p
	}
	text := strings.ToLower(laterText(cfg))
	var keep []string
	for _, f := range fields {
		if hasField(cfg.Source, f) || mentions(text, strings.ToLower(f)) {
			keep = append(keep, f)
		}
	}
	if len(keep) == len(fields) {
		return cfg, p
	}
	if len(keep) == 0 {
		keep = fields[:1] // a STRUCT needs a field; the cheapest stand-in
	}
	narrow, err := subStructure(structure, keep)
	if err != nil {
		return cfg, p
	}
	d.Schema = narrow
	steps := slices.Clone(cfg.Steps)
	steps[0].Decode = &d
	narrowed := cfg
	narrowed.Steps = steps
	q, err := compile(ctx, eng, narrowed)
	if err != nil || !sameOutput(p, q) {
		return cfg, p
	}
	return narrowed, q
}

// pruneSource returns p with its task query narrowed to the source columns
// it reads: tasks then neither build nor convert the others (a count(*)
// over Kafka reads no key, value or topic bytes). Which columns a query
// reads comes from DuckDB's optimizer (sqlengine's ReadColumns), which sees
// whole-row references, SELECT *, DISTINCT * and COLUMNS(*) as reads of
// every column; the query itself is not compiled again (Narrow gives it the
// columns it does not read as NULLs), so it produces what it did. A query
// that reads no column keeps the source's cheapest one: a batch needs a
// column to carry its row count.
func pruneSource(ctx context.Context, cfg Config, p *Pipeline) *Pipeline {
	reads, ok, err := p.dist.Task.ReadColumns(ctx)
	if err != nil || !ok || len(reads) == cfg.Source.NumFields() {
		return p
	}
	if len(reads) == 0 {
		reads = []string{cheapestColumn(cfg.Source)}
	}
	task, err := p.dist.Task.Narrow(ctx, reads)
	if err != nil {
		return p
	}
	q, dist := *p, *p.dist
	dist.Task = task
	q.dist, q.source = &dist, task.InputSchema()
	return &q
}

// cheapestColumn is the name of s's narrowest fixed-width column (the first
// of them), or its first column when none is fixed-width.
func cheapestColumn(s *arrow.Schema) string {
	best, width := s.Field(0).Name, 0
	for _, f := range s.Fields() {
		fw, ok := f.Type.(arrow.FixedWidthDataType)
		if !ok {
			continue
		}
		if w := fw.BitWidth(); width == 0 || w < width {
			best, width = f.Name, w
		}
	}
	return best
}

// laterText is every text of the steps after the decode that may name a
// decoded field, and the job's own column options.
func laterText(cfg Config) string {
	var b strings.Builder
	for _, st := range cfg.Steps[1:] {
		switch {
		case st.SQL != nil:
			b.WriteString(st.SQL.Query)
		case st.Filter != "":
			b.WriteString(st.Filter)
		case st.Aggregate != nil:
			for _, k := range st.Aggregate.GroupBy {
				b.WriteString(k + "\n")
			}
			for _, a := range st.Aggregate.Aggregations {
				b.WriteString(a.Field + "\n")
			}
		}
		for _, f := range st.Select {
			b.WriteString(f.Name + "\n" + f.Expr + "\n")
		}
		b.WriteString("\n")
	}
	b.WriteString(cfg.WatermarkColumn + "\n")
	if cfg.DropDuplicates != nil {
		b.WriteString(strings.Join(cfg.DropDuplicates.Columns, "\n"))
	}
	return b.String()
}

// mentions reports whether name occurs in text as a whole word (a name with
// other characters than letters, digits and _ anywhere, as it is quoted).
func mentions(text, name string) bool {
	for i := 0; ; {
		j := strings.Index(text[i:], name)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(name)
		if (start == 0 || !isWordChar(text[start-1])) && (end == len(text) || !isWordChar(text[end])) {
			return true
		}
		if !isWordChar(name[0]) || !isWordChar(name[len(name)-1]) {
			return true
		}
		i = start + 1
	}
}

func isWordChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// subStructure is the json_transform structure (a JSON object of field to
// type) with only the keep fields, in the structure's order.
func subStructure(structure string, keep []string) (string, error) {
	dec := json.NewDecoder(strings.NewReader(structure))
	if _, err := dec.Token(); err != nil {
		return "", err
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", err
		}
		var typ json.RawMessage
		if err := dec.Decode(&typ); err != nil {
			return "", err
		}
		name, _ := tok.(string)
		if !slices.Contains(keep, name) {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		b.Write(k)
		b.WriteByte(':')
		b.Write(typ)
	}
	b.WriteByte('}')
	return b.String(), nil
}

// sameOutput reports whether two compilations of a job produce the same:
// the same columns of the same types, from tasks and from the merge.
func sameOutput(a, b *Pipeline) bool {
	if !slices.Equal(a.columns, b.columns) || !a.dist.Task.OutputSchema().Equal(b.dist.Task.OutputSchema()) {
		return false
	}
	if (a.dist.Final == nil) != (b.dist.Final == nil) {
		return false
	}
	return a.dist.Final == nil || a.dist.Final.OutputSchema().Equal(b.dist.Final.OutputSchema())
}
