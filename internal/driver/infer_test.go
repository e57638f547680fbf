package driver

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// inferSpec is a SQL job whose json decode gives no schema.
func inferSpec(name string, brokers []string, topic, out, query string) *sluicev1.JobSpec {
	s := spec(name, brokers, topic, out, availableNow)
	s.Transforms = []*sluicev1.Transform{
		{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json"}}},
		{Kind: &sluicev1.Transform_Sql{Sql: &sluicev1.Sql{Query: query}}},
	}
	return s
}

// TestSubmitInfersSchema: the driver reads the topic's first records,
// records the schema it inferred in the spec, checks the query against it
// and runs the job with it; a second submit under the name keeps it.
func TestSubmitInfersSchema(t *testing.T) {
	c := startCluster(t, t.TempDir())
	_, brokers := kafkaWith(t, "infer", 3, 60)
	out := t.TempDir()
	ctx := context.Background()

	j, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: inferSpec("inferred", brokers, "infer", out,
		"select id, amount * 10 as tens from source where amount > 0")})
	if err != nil {
		t.Fatal(err)
	}
	d := j.GetSpec().GetTransforms()[0].GetDecode()
	if d.GetSchema() != "amount BIGINT, id BIGINT" || !d.GetSchemaInferred() {
		t.Fatalf("spec's decode %v, want the inferred schema recorded", d)
	}
	waitState(t, c.api, "inferred", sluicev1.JobState_JOB_STATE_FINISHED)
	got := ids(t, out, "inferred")
	if len(got) != 48 { // ids whose amount (id % 5) is not 0
		t.Fatalf("%d ids written, want 48: %v", len(got), got)
	}

	// The records change shape; a second submit keeps the first schema,
	// so a query naming the new field is refused.
	produceJSON(t, brokers, "infer", `{"id": 100, "amount": 1, "note": "new"}`)
	_, err = c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: inferSpec("inferred", brokers, "infer", out,
		"select id, note from source")})
	if v := violation(t, err, "transforms[1].sql.query"); !strings.Contains(v, "note") {
		t.Fatalf("violation %q, want one naming the unknown column note", v)
	}
}

// TestSubmitInferenceRefusals: no records, or no JSON object among them, is
// InvalidArgument naming the schema; a decode that is not the first step is
// not inferred.
func TestSubmitInferenceRefusals(t *testing.T) {
	c := startCluster(t, t.TempDir())
	_, empty := kafkaWith(t, "empty", 1, 0)
	ctx := context.Background()
	_, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: inferSpec("nothing", empty, "empty", t.TempDir(), "select * from source")})
	if v := violation(t, err, "transforms[0].decode.schema"); !strings.Contains(v, "no records at its starting position") {
		t.Fatalf("violation %q", v)
	}

	_, arrays := kafkaWith(t, "arrays", 1, 0)
	produceJSON(t, arrays, "arrays", `[1, 2]`, `"text"`)
	_, err = c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: inferSpec("arrays", arrays, "arrays", t.TempDir(), "select * from source")})
	if v := violation(t, err, "transforms[0].decode.schema"); !strings.Contains(v, "none of the 2 sampled payloads is a JSON object") {
		t.Fatalf("violation %q", v)
	}

	_, brokers := kafkaWith(t, "later", 1, 5)
	s := inferSpec("later", brokers, "later", t.TempDir(), "select value from source")
	s.Transforms = append([]*sluicev1.Transform{{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "raw"}}}}, s.Transforms...)
	_, err = c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s})
	if v := violation(t, err, "transforms[1].decode.schema"); !strings.Contains(v, "is required") {
		t.Fatalf("violation %q", v)
	}
}

// violation is the description of err's violation of field; it fails the
// test unless err is InvalidArgument with one.
func violation(t *testing.T, err error, field string) string {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code %s, want InvalidArgument: %v", st.Code(), err)
	}
	var all []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return v.GetDescription()
				}
				all = append(all, v.GetField())
			}
		}
	}
	t.Fatalf("no violation of %s; got %v (%v)", field, all, err)
	return ""
}

// produceJSON produces each value as one record of topic.
func produceJSON(t *testing.T, brokers []string, topic string, values ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Value: []byte(v)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestSubmitInfersSchemaFromKinesis: a Kinesis source's open-ended first
// ranges are sampled by polling even when the job reads by enhanced
// fan-out, so a refused submit leaves no consumer registered.
func TestSubmitInfersSchemaFromKinesis(t *testing.T) {
	c := startCluster(t, t.TempDir())
	k := testenv.StartKinesis(t)
	admin := k.Client(t, "")
	arn := testenv.CreateStream(t, admin, "payments", 2)
	ctx := context.Background()
	for i := range 20 {
		if _, err := admin.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String("payments"),
			PartitionKey: aws.String(fmt.Sprint("k", i)), Data: fmt.Appendf(nil, `{"id":%d,"amount":%d.5}`, i, i)}); err != nil {
			t.Fatal(err)
		}
	}
	s := &sluicev1.JobSpec{
		Name: "kinesis-inferred",
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kinesis{Kinesis: &sluicev1.KinesisSource{
			StreamName: "payments", Region: k.Region, Endpoint: k.Endpoint, AwsAccessKey: k.AccessKey, AwsSecretKey: k.SecretKey,
			InitialPosition: "trim_horizon", ConsumerMode: "efo", ConsumerName: "sampler-check"}}},
		Transforms: []*sluicev1.Transform{
			{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json"}}},
			// A column the records lack: the submit is refused once the
			// schema is inferred.
			{Kind: &sluicev1.Transform_Sql{Sql: &sluicev1.Sql{Query: "select id, amount, missing from source"}}},
		},
		Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
	}
	_, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s})
	if v := violation(t, err, "transforms[1].sql.query"); !strings.Contains(v, "missing") {
		t.Fatalf("violation %q, want one naming the unknown column", v)
	}
	consumers, err := admin.ListStreamConsumers(ctx, &kinesis.ListStreamConsumersInput{StreamARN: aws.String(arn)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(consumers.Consumers); n != 0 {
		t.Fatalf("%d consumers registered by a refused submit, want 0", n)
	}

	s.Transforms[1] = &sluicev1.Transform{Kind: &sluicev1.Transform_Sql{Sql: &sluicev1.Sql{Query: "select id, amount from source"}}}
	s.GetSource().GetKinesis().ConsumerMode, s.GetSource().GetKinesis().ConsumerName = "", ""
	j, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: s})
	if err != nil {
		t.Fatal(err)
	}
	if d := j.GetSpec().GetTransforms()[0].GetDecode(); d.GetSchema() != "amount DOUBLE, id BIGINT" {
		t.Fatalf("inferred %q, want both fields of the records", d.GetSchema())
	}
	if _, err := c.api.StopJob(ctx, &sluicev1.StopJobRequest{Name: "kinesis-inferred"}); err != nil {
		t.Fatal(err)
	}
}

// TestSQLShorthandJob: a job with a typed decode is a SQL job, and its
// filter and aggregate steps run as SQL, merged exactly across tasks.
func TestSQLShorthandJob(t *testing.T) {
	c := startCluster(t, t.TempDir())
	_, brokers := kafkaWith(t, "short", 3, 100)
	out := t.TempDir()
	s := spec("shorthand", brokers, "short", out, availableNow)
	s.Transforms = []*sluicev1.Transform{
		{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}},
		{Kind: &sluicev1.Transform_Filter{Filter: "amount <> 0 AND id % 2 = 0"}},
		{Kind: &sluicev1.Transform_Aggregate{Aggregate: &sluicev1.Aggregate{GroupBy: []string{"amount"},
			Aggregations: []*sluicev1.Aggregation{{Fn: "count", As: "n"}, {Fn: "sum", Field: "id"}}}}},
	}
	if _, err := c.api.SubmitJob(context.Background(), &sluicev1.SubmitJobRequest{Spec: s}); err != nil {
		t.Fatal(err)
	}
	waitState(t, c.api, "shorthand", sluicev1.JobState_JOB_STATE_FINISHED)
	rows, err := file.ReadAll(out, "shorthand")
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64][2]int64{} // amount → count, sum of ids
	for id := int64(0); id < 100; id++ {
		if a := id % 5; a != 0 && id%2 == 0 {
			w := want[a]
			want[a] = [2]int64{w[0] + 1, w[1] + id}
		}
	}
	got := map[int64][2]int64{}
	for _, r := range rows {
		a, n, sum := r["amount"].(int64), r["n"].(int64), r["sum_id"].(int64)
		g := got[a]
		got[a] = [2]int64{g[0] + n, g[1] + sum}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("per amount (count, sum of ids) %v, want %v", got, want)
	}
}
