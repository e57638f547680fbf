package kinesis

import (
	"context"
	"errors"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
)

var _ connectors.ArrowWriter = (*sinkWriter)(nil)

// WriteArrow sends rec's rows as Write sends the same rows, without a row
// map per record: the expressions are evaluated over the whole batch in one
// query (sinkexpr), and the default data, the row as encoding/json marshals
// it, is encoded from the columns (rowjson.ArrowEncoder, Std). As Write, it
// evaluates every row's expressions before sending any.
func (w *sinkWriter) WriteArrow(ctx context.Context, rec arrow.RecordBatch) error {
	if w.done {
		return errors.New("kinesis sink: write after commit or abort")
	}
	if err := columnar.CheckColumnNames(rec.Schema()); err != nil {
		return connectors.Permanent(fmt.Errorf("kinesis sink: rows from batch: %w", err))
	}
	var whole *rowjson.ArrowRows
	if w.s.set.data < 0 {
		enc := rowjson.ArrowEncoder{Dialect: rowjson.Std}
		var err error
		if whole, err = enc.Bind(rec); err != nil {
			return connectors.Permanent(fmt.Errorf("kinesis sink: %w", err))
		}
	}
	vals, err := w.s.set.exprs.Eval(ctx, w.s.mem, rec)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("kinesis sink: %w", err))
	}
	defer vals.Release()
	return w.send(ctx, vals, func(i int) ([]byte, error) { return whole.Append(nil, i) })
}
