package kinesis

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/transform"
)

var _ connectors.ArrowWriter = (*sinkWriter)(nil)

// WriteArrow sends rec's rows as Write sends the same rows, without a row
// map per record: the expressions read the batch's columns at each row
// (columnar.RowFields), and the default data, the row as encoding/json
// marshals it, is encoded from the columns (rowjson.ArrowEncoder, Std).
// As Write, it evaluates every row's expressions before sending any.
func (w *sinkWriter) WriteArrow(ctx context.Context, rec arrow.RecordBatch) error {
	if w.done {
		return errors.New("kinesis sink: write after commit or abort")
	}
	set := w.s.set
	fields, err := columnar.NewRowFields(rec)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("kinesis sink: %w", err))
	}
	var whole *rowjson.ArrowRows
	if set.data == nil {
		enc := rowjson.ArrowEncoder{Dialect: rowjson.Std}
		if whole, err = enc.Bind(rec); err != nil {
			return connectors.Permanent(fmt.Errorf("kinesis sink: %w", err))
		}
	}
	n := int(rec.NumRows())
	type values struct{ pk, hash, data any }
	vals := make([]values, n)
	eval := func(name string, e *transform.Expr) (any, error) {
		if e == nil {
			return nil, nil
		}
		v, err := e.EvalFields(fields)
		if ferr := fields.Err(); ferr != nil {
			err = ferr
		}
		if err != nil {
			return nil, connectors.Permanent(fmt.Errorf("kinesis sink: %s: %v", name, err))
		}
		return v, nil
	}
	for i := range n {
		fields.At(i)
		v := &vals[i]
		if v.pk, err = eval("partitionKey", set.partitionKey); err != nil {
			return err
		}
		if v.hash, err = eval("explicitHashKey", set.hash); err != nil {
			return err
		}
		if v.data, err = eval("data", set.data); err != nil {
			return err
		}
	}
	for i, v := range vals {
		e, err := w.s.entryOf(v.pk, v.hash, v.data, func() ([]byte, error) { return whole.Append(nil, i) })
		if err != nil {
			return connectors.Permanent(fmt.Errorf("kinesis sink: %w", err))
		}
		if err := w.add(ctx, e); err != nil {
			return err
		}
	}
	return nil
}
