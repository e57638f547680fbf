package jobspec

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/task"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// sqlCompileTimeout bounds compiling a job's SQL at submit (parsing and
// binding a query takes milliseconds; this only guards a stuck engine).
const sqlCompileTimeout = time.Minute

// compileSQL compiles a SQL job's transforms against its source's schema,
// adding every problem to e under its field.
func compileSQL(j *Job, spec *sluicev1.JobSpec, e *Error) {
	source := sourceSchema(spec.GetSource())
	if j.source != nil {
		source = j.source.schema()
	}
	if source == nil {
		return // no source: its error is reported; nothing to compile against
	}
	before := len(e.List)
	steps := make([]sqltransform.Step, 0, len(spec.GetTransforms()))
	for i, t := range spec.GetTransforms() {
		st := sqltransform.Step{Path: fmt.Sprintf("transforms[%d]", i)}
		switch k := t.GetKind().(type) {
		case *sluicev1.Transform_Decode:
			d := k.Decode
			if d.GetFormat() != "csv" && (len(d.GetColumns()) > 0 || d.GetHeader() || d.GetDelimiter() != "") {
				e.add(st.Path+".decode", "columns, header and delimiter apply to format csv")
				continue
			}
			st.Decode = &sqltransform.Decode{Format: d.GetFormat(), Field: d.GetField(), Schema: d.GetSchema(),
				Columns: d.GetColumns(), Header: d.GetHeader(), Delimiter: d.GetDelimiter()}
		case *sluicev1.Transform_Sql:
			if k.Sql.GetQuery() == "" {
				e.add(st.Path+".sql.query", "is required: one SELECT statement")
				continue
			}
			st.SQL = &sqltransform.SQL{View: k.Sql.GetView(), Query: k.Sql.GetQuery()}
		case *sluicev1.Transform_Filter:
			if k.Filter == "" {
				e.add(st.Path+".filter", "is empty: a SQL condition, like amount > 0")
				continue
			}
			st.Filter = k.Filter
		case *sluicev1.Transform_Select:
			st.Select = []sqltransform.SelectField{}
			for _, f := range k.Select.GetFields() {
				st.Select = append(st.Select, sqltransform.SelectField{Name: f.GetName(), Expr: f.GetExpr()})
			}
		case *sluicev1.Transform_Aggregate:
			a := k.Aggregate
			if a.GetMaxGroups() != 0 {
				e.add(st.Path+".aggregate.maxGroups", "applies to CEL steps; a SQL job's groups are bounded by the executors' SQL memory limit")
				continue
			}
			st.Aggregate = &sqltransform.Aggregate{GroupBy: a.GetGroupBy()}
			for _, ag := range a.GetAggregations() {
				st.Aggregate.Aggregations = append(st.Aggregate.Aggregations, sqltransform.Aggregation{Fn: ag.GetFn(), Field: ag.GetField(), As: ag.GetAs()})
			}
		default:
			e.add(st.Path, "empty transform (one of decode, sql, filter, select, aggregate)")
			continue
		}
		steps = append(steps, st)
	}
	if len(e.List) > before {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqlCompileTimeout)
	defer cancel()
	p, err := sqltransform.CompileShared(ctx, sqltransform.Config{
		Source: source, Steps: steps, OnBad: onBad(spec.GetOnError()),
		OutputMode: outputMode(j), WatermarkColumn: watermarkColumn(j), DropDuplicates: dedup(j),
	})
	if err != nil {
		addFieldErrors(e, err)
		return
	}
	j.SQL = p
}

// sourceSchema is the columns of a source whose options are wrong (their
// errors are reported by compileSource), so that the transforms are checked
// too: they depend only on the source's kind.
func sourceSchema(s *sluicev1.Source) *arrow.Schema {
	switch {
	case s.GetKafka() != nil:
		return columnar.KafkaSchema(s.GetKafka().GetIncludeHeaders())
	case s.GetKinesis() != nil:
		return columnar.KinesisSchema()
	}
	return nil
}

// outputSchema is the schema of the rows the job's sink receives: its
// query's output, or the source's records for a job without transforms.
// Nil when it is not known (the source or the transforms are invalid:
// their errors are reported).
func outputSchema(j *Job, spec *sluicev1.JobSpec) *arrow.Schema {
	if len(spec.GetTransforms()) > 0 {
		if j.SQL == nil {
			return nil
		}
		return j.SQL.OutputSchema()
	}
	if j.source != nil {
		return j.source.schema()
	}
	return nil
}

// deadLetterErrorColumn is the column of a dead-letter row that says why
// the record was refused (pkg/task); the others are the source record's.
const deadLetterErrorColumn = "error"

// deadLetterSchema is the schema of the rows a dead-letter sink receives:
// the source's records, and the error.
func deadLetterSchema(j *Job) *arrow.Schema {
	if j.source == nil {
		return nil
	}
	src := j.source.schema()
	fields := append(src.Fields(), arrow.Field{Name: deadLetterErrorColumn, Type: arrow.BinaryTypes.String, Nullable: true})
	return arrow.NewSchema(fields, nil)
}

// Aggregating reports whether the job's last step aggregates: tasks then
// return partial aggregates which the driver merges and writes.
func (j *Job) Aggregating() bool {
	return j.SQL != nil && j.SQL.Aggregating()
}

// Columns is the job's output column order, its query's; nil for a job
// without transforms, whose rows are the source's.
func (j *Job) Columns() []string {
	if j.SQL != nil {
		return j.SQL.Columns()
	}
	return nil
}

// onBad is what a SQL decode does with bad records under onError.
func onBad(onError string) sqltransform.BadRecords {
	switch onError {
	case task.OnErrorSkip:
		return sqltransform.SkipBad
	case task.OnErrorDeadLetter:
		return sqltransform.KeepBad
	}
	return sqltransform.FailOnBad
}

// outputMode is the SQL output mode of a job whose outputMode is valid
// (compileState), else none: an invalid one is reported there once.
func outputMode(j *Job) sqltransform.OutputMode {
	if j.State == nil {
		return sqltransform.PerBatch
	}
	return sqltransform.OutputMode(j.Spec.GetOutputMode())
}

// watermarkColumn is the event-time column of a stateful job with a valid
// watermark, else "".
func watermarkColumn(j *Job) string {
	if j.State == nil || j.State.Watermark == nil {
		return ""
	}
	return j.State.Watermark.Column
}

// dedup is the dropDuplicates of a job whose state options are valid.
func dedup(j *Job) *sqltransform.Dedup {
	if j.State == nil || len(j.State.Dedup) == 0 {
		return nil
	}
	return &sqltransform.Dedup{Columns: j.State.Dedup, Within: j.State.DedupWithin}
}
