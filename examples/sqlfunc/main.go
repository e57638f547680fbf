//go:build duckdb_arrow

// Command sqlfunc shows how a Go program adds its own scalar functions to
// Sluice's SQL: it registers two Go functions, builds an Arrow batch of
// payments, and runs a Spark-style query that calls them.
//
//	go run -tags duckdb_arrow ./examples/sqlfunc
//
// The functions live in package payments, so that sluice-fn (a driver and
// executor binary with them, for real jobs) uses the same ones. Functions
// must be deterministic and safe to call from several threads; a NULL
// argument gives NULL without calling them.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/examples/sqlfunc/payments"
	"github.com/sluicehq/sluice/pkg/sqlengine"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sqlfunc:", err)
		os.Exit(1)
	}
}

var paymentsSchema = arrow.NewSchema([]arrow.Field{
	{Name: "branch", Type: arrow.BinaryTypes.String},
	{Name: "iban", Type: arrow.BinaryTypes.String},
	{Name: "currency", Type: arrow.BinaryTypes.String},
	{Name: "amount", Type: arrow.PrimitiveTypes.Int64},
}, nil)

// paymentBatch builds the input batch, as a source would hand it to the SQL step.
func paymentBatch(mem memory.Allocator) arrow.RecordBatch {
	b := array.NewRecordBuilder(mem, paymentsSchema)
	defer b.Release()
	for _, p := range []struct {
		branch, iban, currency string
		amount                 int64
	}{
		{"lisbon", "PT50000201231234567890154", "EUR", 1200},
		{"lisbon", "PT50000201231234567890154", "USD", 500},
		{"london", "GB29NWBK60161331926819", "GBP", 300},
		{"london", "GB29NWBK60161331926819", "EUR", 100},
		{"london", "GB94BARC10201530093459", "GBP", 50},
	} {
		b.Field(0).(*array.StringBuilder).Append(p.branch)
		b.Field(1).(*array.StringBuilder).Append(p.iban)
		b.Field(2).(*array.StringBuilder).Append(p.currency)
		b.Field(3).(*array.Int64Builder).Append(p.amount)
	}
	return b.NewRecordBatch()
}

const query = `select branch, mask_iban(iban) as account, round(sum(to_eur(amount, currency)), 2) as eur, count(*) as payments
from payments group by branch, iban order by branch, account`

// run opens an engine with the functions, runs the query over one batch and
// prints the result as a table.
func run(ctx context.Context, w io.Writer) (err error) {
	fns, err := payments.Functions()
	if err != nil {
		return err
	}
	engine, err := sqlengine.Open(ctx, sqlengine.WithThreads(2), sqlengine.WithMemoryLimit(256<<20), sqlengine.WithFunctions(fns))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, engine.Close(ctx)) }()

	compiled, err := engine.Compile(ctx, query, paymentsSchema, sqlengine.WithView("payments"))
	if err != nil {
		return err // a *sqlengine.QueryError with the position of the problem
	}
	batch := paymentBatch(memory.DefaultAllocator)
	defer batch.Release()
	out, err := compiled.RunBatches(ctx, []arrow.RecordBatch{batch})
	if err != nil {
		return err
	}
	defer func() {
		for _, r := range out {
			r.Release()
		}
	}()

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var header []string
	for _, f := range compiled.OutputSchema().Fields() {
		header = append(header, f.Name)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range out {
		for i := range int(r.NumRows()) {
			cells := make([]string, r.NumCols())
			for j := range cells {
				cells[j] = r.Column(j).ValueStr(i)
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t"))
		}
	}
	return tw.Flush()
}
