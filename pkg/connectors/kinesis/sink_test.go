package kinesis

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// testSchema is the schema of the rows the sink tests write.
var testSchema = arrow.NewSchema([]arrow.Field{
	{Name: "id", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "country", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "payload", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

func TestSinkConfigValidate(t *testing.T) {
	base := func() SinkConfig { return SinkConfig{StreamName: "out", PartitionKey: "country", Schema: testSchema} }
	tests := []struct {
		name  string
		edit  func(*SinkConfig)
		field string
		want  string
	}{
		{"no stream", func(c *SinkConfig) { c.StreamName = "" }, "streamName", "required"},
		{"no key", func(c *SinkConfig) { c.PartitionKey = "" }, "partitionKey", "required"},
		{"bad key", func(c *SinkConfig) { c.PartitionKey = "country +" }, "partitionKey", "position 9: syntax error"},
		{"bad hash", func(c *SinkConfig) { c.ExplicitHashKey = "((" }, "explicitHashKey", "position 2: a '(' is not closed"},
		{"bad data", func(c *SinkConfig) { c.Data = "id = " }, "data", "position 5: syntax error"},
		{"unknown column", func(c *SinkConfig) { c.Data = "upper(contry)" }, "data", `position 6: unknown column: Referenced column "contry" not found`},
		{"key not a string", func(c *SinkConfig) { c.PartitionKey = "[id]" }, "partitionKey", "gives list<l: int64, nullable>, want a string"},
		{"hash not a number", func(c *SinkConfig) { c.ExplicitHashKey = "1.5" }, "explicitHashKey", "want a decimal string or an integer"},
		{"old CEL", func(c *SinkConfig) { c.PartitionKey = "string(id)" }, "partitionKey", "position 0: unknown function"},
		{"old CEL ternary", func(c *SinkConfig) { c.Data = "id > 1 ? 'a' : 'b'" }, "data", "CASE WHEN c THEN a ELSE b END"},
		{"too many per request", func(c *SinkConfig) { c.MaxRecordsPerRequest = 1000 }, "maxRecordsPerRequest", "between 1 and 500"},
		{"retries", func(c *SinkConfig) { c.MaxRetries = -1 }, "maxRetries", "negative"},
		{"endpoint", func(c *SinkConfig) { c.Endpoint = "nowhere" }, "endpoint", "URL"},
		{"keys", func(c *SinkConfig) { c.AWSAccessKey = "a" }, "awsSecretKey", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.edit(&c)
			err := c.Validate()
			found := false
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, sub := range j.Unwrap() {
					var fe *FieldError
					if errors.As(sub, &fe) && fe.Field == tt.field && strings.Contains(fe.Reason, tt.want) {
						found = true
					}
				}
			}
			if !found {
				t.Fatalf("err = %v, want %s: ...%s...", err, tt.field, tt.want)
			}
		})
	}
	if err := base().Validate(); err != nil {
		t.Fatal(err)
	}
}

func rowsOf(n int, f func(i int) stream.Row) []stream.Row {
	out := make([]stream.Row, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func writeAll(t *testing.T, s *Sink, rows []stream.Row) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := s.OpenWriter(ctx, connectors.WriteKey{Job: "j", Batch: 1, Part: "p"})
	if err != nil {
		return err
	}
	if err := w.Write(ctx, rows); err != nil {
		w.Abort()
		return err
	}
	return w.Commit(ctx)
}

// TestSinkRetriesFailedEntries: entries that PutRecords reports as failed
// are sent again, and only they; a throttled call is retried whole; an
// entry that keeps failing fails the write after maxRetries.
func TestSinkRetriesFailedEntries(t *testing.T) {
	f := newFakeKinesis(t)
	f.fail = func(op string, n int) (string, int) {
		if op == "PutRecords" && n == 1 {
			return "ProvisionedThroughputExceededException", 400
		}
		return "", 0
	}
	f.failEntry = func(call, i int) bool { return call == 1 && (i == 1 || i == 3) || call == 2 && i == 0 }
	sl := newSleeps()
	s, err := NewSink(SinkConfig{StreamName: "s", Endpoint: f.srv.URL, Region: "us-east-1", AWSAccessKey: "k", AWSSecretKey: "s",
		PartitionKey: "CAST(id AS STRING)", Data: "CAST(id AS STRING)", MaxRetries: 3, Schema: testSchema}, sl.option())
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAll(t, s, rowsOf(6, func(i int) stream.Row { return stream.Row{"id": int64(i)} })); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	calls, accepted := f.putCalls, append([]string(nil), f.accepted...)
	f.mu.Unlock()
	want := [][]string{{"0", "1", "2", "3", "4", "5"}, {"1", "3"}, {"1"}}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Fatalf("PutRecords calls (-want +got):\n%s", diff)
	}
	sort.Strings(accepted)
	if diff := cmp.Diff([]string{"0", "1", "2", "3", "4", "5"}, accepted); diff != "" {
		t.Fatalf("accepted (-want +got):\n%s", diff)
	}
	if len(sl.list) != 3 {
		t.Fatalf("slept %v, want one back-off per retry", sl.list)
	}

	f.failEntry = func(call, i int) bool { return i == 0 }
	err = writeAll(t, s, []stream.Row{{"id": int64(9)}})
	if err == nil || connectors.IsPermanent(err) || !strings.Contains(err.Error(), "after 3 retries") {
		t.Fatalf("err = %v, want a retryable error after 3 retries", err)
	}
}

// TestSinkToKinesis writes to kinesis-mock: the 500-records-per-call limit
// holds although the emulator would take 1000, so does the 5 MiB request
// limit; partition keys and explicit hash keys come from the expressions;
// the default data is the row as JSON; bad rows fail the write permanently.
func TestSinkToKinesis(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "out", 2)
	rec, hc := newRecorder(t)
	sink := func(cfg SinkConfig) *Sink {
		cfg.StreamName, cfg.Region, cfg.Endpoint, cfg.AWSAccessKey, cfg.AWSSecretKey = "out", e.k.Region, e.k.Endpoint, e.k.AccessKey, e.k.SecretKey
		cfg.Schema = testSchema
		s, err := NewSink(cfg, e.opts(WithHTTPClient(hc))...)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// 1200 small rows: calls of 500, 500 and 200.
	s := sink(SinkConfig{PartitionKey: "country"})
	countries := []string{"PT", "BR", "DE", "FR", "JP"}
	rows := rowsOf(1200, func(i int) stream.Row { return stream.Row{"id": int64(i), "country": countries[i%5]} })
	if err := writeAll(t, s, rows); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{500, 500, 200}, rec.putSizes()); diff != "" {
		t.Fatalf("entries per PutRecords (-want +got):\n%s", diff)
	}
	got := readStream(t, e, "out")
	if len(got) != 1200 {
		t.Fatalf("stream holds %d records", len(got))
	}
	for _, r := range got[:10] {
		var row map[string]any
		if err := json.Unmarshal(r.Data, &row); err != nil || row["country"] != aws.ToString(r.PartitionKey) {
			t.Fatalf("record %s with key %s", r.Data, aws.ToString(r.PartitionKey))
		}
	}

	// 30 rows of 200 KiB: at most 5 MiB per call (25 rows and their keys
	// fit, 26 do not).
	before := len(rec.putSizes())
	big := strings.Repeat("x", 200<<10)
	s = sink(SinkConfig{PartitionKey: "CAST(id AS STRING)", Data: "payload"})
	if err := writeAll(t, s, rowsOf(30, func(i int) stream.Row { return stream.Row{"id": int64(i), "payload": big} })); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{25, 5}, rec.putSizes()[before:]); diff != "" {
		t.Fatalf("entries per PutRecords of big rows (-want +got):\n%s", diff)
	}

	// An explicit hash key in the upper half of the key space lands in the
	// second shard.
	s = sink(SinkConfig{PartitionKey: "'k'", ExplicitHashKey: `'170141183460469231731687303715884105800'`, Data: "CAST(id AS STRING)"})
	if err := writeAll(t, s, rowsOf(5, func(i int) stream.Row { return stream.Row{"id": int64(i)} })); err != nil {
		t.Fatal(err)
	}
	out, err := e.admin.PutRecords(context.Background(), &kinesis.PutRecordsInput{StreamName: aws.String("out"),
		Records: []types.PutRecordsRequestEntry{{PartitionKey: aws.String("probe"), ExplicitHashKey: aws.String("170141183460469231731687303715884105800"), Data: []byte("p")}}})
	if err != nil || aws.ToString(out.Records[0].ShardId) != "shardId-000000000001" {
		t.Fatalf("probe: %v %v", out, err)
	}

	// Bad rows.
	for _, tt := range []struct {
		cfg  SinkConfig
		row  stream.Row
		want string
	}{
		{SinkConfig{PartitionKey: "country"}, stream.Row{"id": int64(1)}, `partitionKey: the expression gave null`},
		{SinkConfig{PartitionKey: "upper(country)"}, stream.Row{"id": int64(1)}, `partitionKey: the expression gave null`},
		{SinkConfig{PartitionKey: "CAST(country AS INT)"}, stream.Row{"country": "PT"}, `Could not convert string 'PT' to INT32`},
		{SinkConfig{PartitionKey: "country"}, stream.Row{"country": ""}, "partitionKey: must be 1-256 characters"},
		{SinkConfig{PartitionKey: "'k'", Data: "payload"}, stream.Row{"payload": strings.Repeat("x", 1<<20)}, "over the 1 MiB Kinesis limit"},
		{SinkConfig{PartitionKey: "'k'", ExplicitHashKey: "'-1'"}, stream.Row{}, "explicitHashKey"},
	} {
		err := writeAll(t, sink(tt.cfg), []stream.Row{tt.row})
		if !connectors.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("row %v: err = %v, want a permanent error with %q", tt.row, err, tt.want)
		}
	}
}

// readStream returns every record of every shard of a stream.
func readStream(t *testing.T, e *env, name string) []types.Record {
	t.Helper()
	ctx := context.Background()
	shards, err := e.admin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	var out []types.Record
	for _, sh := range shards.Shards {
		it, err := e.admin.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{StreamName: aws.String(name), ShardId: sh.ShardId,
			ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		for iter != nil {
			r, err := e.admin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r.Records...)
			if aws.ToInt64(r.MillisBehindLatest) == 0 && len(r.Records) == 0 {
				break
			}
			iter = r.NextShardIterator
		}
	}
	return out
}
