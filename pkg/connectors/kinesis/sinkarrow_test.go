package kinesis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/arrowtest"
)

// TestSinkWriteArrowMatchesWrite sends the same batches to kinesis-mock
// through WriteArrow and, as rows, through Write, with each kind of
// expression, and reads back the same records (shard, partition key, data)
// from both streams.
func TestSinkWriteArrowMatchesWrite(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		cfg  SinkConfig
	}{
		// The default data is the row as encoding/json marshals it; the
		// batch's floats (1e21, -1e-7) have no NaN, which it refuses.
		{"default data", SinkConfig{PartitionKey: "CAST(id AS STRING)"}},
		{"bytes and strings", SinkConfig{PartitionKey: `coalesce(name, 'none')`, Data: `CASE WHEN payload IS NULL THEN encode('null') ELSE payload END`}},
		{"expressions", SinkConfig{PartitionKey: `CASE WHEN ok THEN 'a' ELSE 'b' END`, ExplicitHashKey: `CAST(id * 1000 AS STRING)`,
			Data: `{'id': id, 'tags': tags, 'attrs': attrs, 'counts': counts, 'whole': total}`}},
		{"numbers as keys and strings as data", SinkConfig{PartitionKey: "id", Data: "nvl(name, 'null')"}},
		{"spark functions and integer hash keys", SinkConfig{PartitionKey: "coalesce(date_format(ts, 'yyyy-MM-dd HH:mm'), 'none')", ExplicitHashKey: "id * 7",
			Data: "concat_ws(',', upper(name), CAST(amount AS STRING), CAST(day AS STRING))"}},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := arrowtest.Mem(t)
			rowsStream, arrowStream := fmt.Sprintf("rows%d", k), fmt.Sprintf("arrow%d", k)
			testenv.CreateStream(t, e.admin, rowsStream, 2)
			testenv.CreateStream(t, e.admin, arrowStream, 2)
			write := func(stream string, arrowPath bool) {
				cfg := tt.cfg
				cfg.StreamName, cfg.Region, cfg.Endpoint, cfg.AWSAccessKey, cfg.AWSSecretKey = stream, e.k.Region, e.k.Endpoint, e.k.AccessKey, e.k.SecretKey
				cfg.Schema = arrowtest.Schema
				s, err := NewSink(cfg, e.opts(WithAllocator(mem))...)
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Batch: 1, Part: "p", Columns: arrowtest.Columns()})
				if err != nil {
					t.Fatal(err)
				}
				recs := arrowtest.Batches(mem)
				defer func() {
					for _, rec := range recs {
						rec.Release()
					}
				}()
				arrowtest.Write(t, ctx, w, recs, arrowPath)
				if err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			write(rowsStream, false)
			write(arrowStream, true)
			read := func(stream string) []string {
				var out []string
				for _, r := range readStream(t, e, stream) {
					out = append(out, fmt.Sprintf("%s %s", aws.ToString(r.PartitionKey), r.Data))
				}
				slices.Sort(out)
				return out
			}
			want, got := read(rowsStream), read(arrowStream)
			if len(want) != 16 {
				t.Fatalf("the row path wrote %d records, want 16", len(want))
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("records (-Write +WriteArrow):\n%s", diff)
			}
		})
	}
}

// TestSinkWriteArrowErrors: a row the expressions fail on fails WriteArrow
// permanently with Write's words, before anything is sent.
func TestSinkWriteArrowErrors(t *testing.T) {
	f := newFakeKinesis(t)
	mem := arrowtest.Mem(t)
	for _, tt := range []struct {
		cfg  SinkConfig
		want string
	}{
		{SinkConfig{PartitionKey: "name"}, "partitionKey: the expression gave null"},
		{SinkConfig{PartitionKey: "upper(name)"}, "partitionKey: the expression gave null"},
		{SinkConfig{PartitionKey: "'k'", Data: "CAST(name AS INT)"}, "Could not convert string"},
		{SinkConfig{PartitionKey: "'k'", ExplicitHashKey: "'-1'"}, "explicitHashKey"},
	} {
		cfg := tt.cfg
		cfg.StreamName, cfg.Endpoint, cfg.Region, cfg.AWSAccessKey, cfg.AWSSecretKey = "s", f.srv.URL, "us-east-1", "k", "s"
		cfg.Schema = arrowtest.Schema
		s, err := NewSink(cfg, WithAllocator(mem))
		if err != nil {
			t.Fatal(err)
		}
		rec := arrowtest.Batch(mem, 0, 4)
		ctx := context.Background()
		w, _ := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Batch: 1, Part: "p"})
		rowErr := w.Write(ctx, arrowtest.Rows(t, rec))
		w, _ = s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Batch: 1, Part: "p"})
		err = w.(connectors.ArrowWriter).WriteArrow(ctx, rec)
		rec.Release()
		if !connectors.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: err = %v, want a permanent error with %q", tt.cfg, err, tt.want)
		}
		if rowErr == nil || err == nil || rowErr.Error() != err.Error() {
			t.Errorf("%+v: WriteArrow's error\n%v\nis not Write's\n%v", tt.cfg, err, rowErr)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.putCalls) != 0 {
		t.Errorf("PutRecords calls %v, want none", f.putCalls)
	}
}
