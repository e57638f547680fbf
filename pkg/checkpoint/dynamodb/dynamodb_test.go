package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore/casstoretest"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// config is a Config for table (and prefix) on d.
func config(d testenv.Dynalite, table, prefix string) Config {
	return Config{
		Table: table, Prefix: prefix, Region: d.Region, Endpoint: d.Endpoint,
		Auth: awsauth.Options{AccessKey: d.AccessKey, SecretKey: d.SecretKey},
	}
}

func openT(t *testing.T, cfg Config, o casstore.Options) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := open(ctx, cfg, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var prefixes atomic.Int64

func freshPrefix() string { return fmt.Sprintf("t%d/", prefixes.Add(1)) }

func TestContract(t *testing.T) {
	casstoretest.RunContract(t, namespaces(testenv.StartDynalite(t), "contract"))
}

func TestFencing(t *testing.T) {
	casstoretest.RunFencing(t, namespaces(testenv.StartDynalite(t), "fencing"))
}

// namespaces opens stores on a fresh prefix of table for each test.
func namespaces(d testenv.Dynalite, table string) casstoretest.Namespace {
	return func(t *testing.T) func(hook func(point, job string)) casstoretest.Store {
		cfg := config(d, table, freshPrefix())
		return func(hook func(point, job string)) casstoretest.Store {
			return openT(t, cfg, casstore.Options{Hook: hook})
		}
	}
}

// client is a raw DynamoDB client on the emulator, for looking behind the
// store.
func client(t *testing.T, d testenv.Dynalite) *dynamodb.Client {
	cfg, err := awsauth.Load(context.Background(), awsauth.Options{Region: d.Region, AccessKey: d.AccessKey, SecretKey: d.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	cfg.HTTPClient = &http.Client{Transport: tr}
	return dynamodb.NewFromConfig(cfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(d.Endpoint) })
}

// TestTableCreated: Open creates a missing table with on-demand billing and
// the expected keys, waits until it is ACTIVE (dynalite keeps new tables
// CREATING for a moment), and a second Open uses it as it is.
func TestTableCreated(t *testing.T) {
	d := testenv.StartDynalite(t)
	cfg := config(d, "created-by-open", "")
	s := openT(t, cfg, casstore.Options{})
	c := client(t, d)
	desc, err := c.DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String("created-by-open")})
	if err != nil {
		t.Fatal(err)
	}
	if desc.Table.TableStatus != types.TableStatusActive {
		t.Errorf("status %s, want ACTIVE", desc.Table.TableStatus)
	}
	if bm := desc.Table.BillingModeSummary; bm == nil || bm.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode %+v, want PAY_PER_REQUEST", bm)
	}
	if err := checkSchema("t", desc.Table); err != nil {
		t.Error(err)
	}
	ctx := context.Background()
	if err := s.PutJob(ctx, casstoretest.Old, checkpoint.JobRecord{Name: "j"}); err != nil {
		t.Fatal(err)
	}
	again := openT(t, cfg, casstore.Options{})
	if _, err := again.GetJob(ctx, "j"); err != nil {
		t.Fatalf("second store on the existing table: %v", err)
	}
}

func TestDefaultTable(t *testing.T) {
	d := testenv.StartDynalite(t)
	openT(t, config(d, "", ""), casstore.Options{})
	out, err := client(t, d).DescribeTable(context.Background(), &dynamodb.DescribeTableInput{TableName: aws.String(DefaultTable)})
	if err != nil {
		t.Fatalf("describe %s: %v", DefaultTable, err)
	}
	if aws.ToString(out.Table.TableName) != "sluice_checkpoints" {
		t.Fatalf("table %s", aws.ToString(out.Table.TableName))
	}
}

// TestForeignTableRefused: a table with other keys is someone else's.
func TestForeignTableRefused(t *testing.T) {
	d := testenv.StartDynalite(t)
	c := client(t, d)
	ctx := context.Background()
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String("foreign"),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
	})
	if err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = Open(octx, config(d, "foreign", ""))
	if err == nil || !strings.Contains(err.Error(), "not a checkpoint table") {
		t.Fatalf("open on a foreign table: got %v, want \"not a checkpoint table\"", err)
	}
}

// TestLayout pins the item layout the package doc describes.
func TestLayout(t *testing.T) {
	d := testenv.StartDynalite(t)
	s := openT(t, config(d, "layout", "group-a"), casstore.Options{})
	ctx := context.Background()
	f := casstoretest.Old
	for _, err := range []error{
		s.PutJob(ctx, f, checkpoint.JobRecord{Name: "team/orders"}),
		s.PutPlan(ctx, f, "team/orders", checkpoint.BatchPlan{Batch: 42}),
		s.PutTaskEnd(ctx, f, "team/orders", 42, "orders/3#1", []byte("7")),
		s.PutCommit(ctx, f, "team/orders", checkpoint.Commit{Batch: 42}),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	out, err := client(t, d).Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("layout")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, it := range out.Items {
		pk := it[attrPK].(*types.AttributeValueMemberS).Value
		sk := it[attrSK].(*types.AttributeValueMemberS).Value
		if i := strings.Index(pk, "log#"); i >= 0 {
			pk = pk[:i] + "log#<inc>"
		}
		if i := strings.Index(sk, "#blob#"); i >= 0 {
			kind, _, _ := strings.Cut(sk[i+len("#blob#"):], "#")
			sk = sk[:i] + "#blob#" + kind + "#<id>#00000"
		}
		keys = append(keys, pk+" | "+sk)
	}
	want := []string{
		"group-a/fence | fence",
		"group-a/jobs | team/orders",
		"group-a/log#<inc> | 00000000000000000042#blob#plan#<id>#00000",
		"group-a/log#<inc> | 00000000000000000042#blob#commit#<id>#00000",
		"group-a/log#<inc> | 00000000000000000042#end#orders/3#1",
	}
	for _, w := range want {
		found := false
		for _, k := range keys {
			found = found || k == w
		}
		if !found {
			t.Errorf("item %q missing; items: %q", w, keys)
		}
	}
	if len(keys) != len(want) {
		t.Errorf("%d items, want %d: %q", len(keys), len(want), keys)
	}

	// Names DynamoDB keys cannot hold are refused with the reason.
	err = s.PutJob(ctx, f, checkpoint.JobRecord{Name: strings.Repeat("x", 1100)})
	if err == nil || !strings.Contains(err.Error(), "at most 1024") {
		t.Errorf("put job with a 1100-byte name: got %v, want \"at most 1024\"", err)
	}
	err = s.PutTaskEnd(ctx, f, "team/orders", 1, "bad\xff", []byte("7"))
	if err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("task end with a non-UTF-8 key: got %v, want \"not valid UTF-8\"", err)
	}
}

// TestLargePlan: a plan larger than a DynamoDB item (400 KB) is split into
// parts and read back whole.
func TestLargePlan(t *testing.T) {
	s := openT(t, config(testenv.StartDynalite(t), "large", ""), casstore.Options{})
	ctx := context.Background()
	p := checkpoint.BatchPlan{Batch: 3}
	for i := range 6000 {
		p.Ranges = append(p.Ranges, checkpointRange(i))
	}
	if err := s.PutPlan(ctx, casstoretest.Old, "big", p); err != nil {
		t.Fatal(err)
	}
	got, err := s.LatestPlan(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Ranges) != 6000 || string(got.Ranges[5999].From) != string(p.Ranges[5999].From) {
		t.Fatalf("read back %d ranges", len(got.Ranges))
	}
	if err := s.Purge(ctx, casstoretest.Old, "big", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LatestPlan(ctx, "big"); !errors.Is(err, checkpoint.ErrNotFound) {
		t.Fatalf("after purge: %v", err)
	}
}

// TestRetentionKeepsRecentBatches drives Purge the way the driver does
// (every 10th batch, keeping minBatchesToRetain) and checks what is left.
func TestRetentionKeepsRecentBatches(t *testing.T) {
	s := openT(t, config(testenv.StartDynalite(t), "retention", ""), casstore.Options{})
	ctx := context.Background()
	f := casstoretest.Old
	const retain = 5
	for b := range 31 {
		batch := streamBatch(b)
		if err := s.PutPlan(ctx, f, "j", checkpoint.BatchPlan{Batch: batch}); err != nil {
			t.Fatal(err)
		}
		if err := s.PutTaskEnd(ctx, f, "j", batch, "k", []byte("e")); err != nil {
			t.Fatal(err)
		}
		if err := s.PutCommit(ctx, f, "j", checkpoint.Commit{Batch: batch}); err != nil {
			t.Fatal(err)
		}
		if b > retain && b%10 == 0 {
			if err := s.Purge(ctx, f, "j", batch-retain); err != nil {
				t.Fatal(err)
			}
		}
	}
	for b := range 31 {
		ends, err := s.TaskEnds(ctx, "j", streamBatch(b))
		if err != nil {
			t.Fatal(err)
		}
		if kept := len(ends) == 1; kept != (b >= 30-retain) {
			t.Errorf("batch %d: task ends kept = %v", b, kept)
		}
	}
	c, err := s.LatestCommit(ctx, "j")
	if err != nil || c.Batch != 30 {
		t.Fatalf("latest commit %d, %v", c.Batch, err)
	}
}

func TestOpenErrors(t *testing.T) {
	d := testenv.StartDynalite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad table", Config{Table: "a!", Endpoint: d.Endpoint}, `table: "a!" must be 3-255`},
		{"bad endpoint", Config{Endpoint: "localhost:8000"}, "endpoint:"},
		{"secret without key", Config{Auth: awsauth.Options{SecretKey: "s3cr3t"}}, "auth.awsAccessKey: is required"},
		{"bad region", Config{Region: "EU West", Endpoint: d.Endpoint}, `region: "EU West"`},
		{"nothing listening", Config{Endpoint: "http://" + testenv.Addr(testenv.FreePort(t)),
			Auth: awsauth.Options{AccessKey: "AKID", SecretKey: "s3cr3t"}}, "is the endpoint right and reachable?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(ctx, tc.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("open succeeded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Fatalf("error shows the secret: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestWrongCredentials: dynalite accepts any key, so the refusal AWS sends
// for unknown credentials is played by a server that answers every request
// like DynamoDB does then.
func TestWrongCredentials(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.0")
		w.Header().Set("X-Amzn-Requestid", "TEST")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"The security token included in the request is invalid."}`)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Open(ctx, Config{Endpoint: srv.URL, Auth: awsauth.Options{AccessKey: "AKIDWRONG", SecretKey: "wrong-s3cr3t"}})
	if err == nil || !strings.Contains(err.Error(), "credentials were refused") {
		t.Fatalf("got %v, want a \"credentials were refused\" error", err)
	}
	if strings.Contains(err.Error(), "wrong-s3cr3t") {
		t.Fatalf("error shows the secret: %v", err)
	}
	t.Log(err)
}

func checkpointRange(i int) stream.Range {
	return stream.Range{
		Partition: stream.PartitionID(fmt.Sprintf("shardId-%012d", i)),
		From:      stream.Position(fmt.Sprintf("4959033827149025660855969253836157109592157598913658%04d", i)),
	}
}

func streamBatch(b int) stream.BatchID { return stream.BatchID(b) }

// BenchmarkBatch measures the store's share of one micro-batch: record the
// plan, one task end, the commit (what the driver writes per batch).
func BenchmarkBatch(b *testing.B) {
	s, err := Open(context.Background(), config(testenv.StartDynalite(b), "bench", ""))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	f := casstoretest.Old
	b.ResetTimer()
	for i := range b.N {
		batch := streamBatch(i)
		if err := s.PutPlan(ctx, f, "j", checkpoint.BatchPlan{Batch: batch, Ranges: []stream.Range{checkpointRange(i)}}); err != nil {
			b.Fatal(err)
		}
		if err := s.PutTaskEnd(ctx, f, "j", batch, "k", []byte("e")); err != nil {
			b.Fatal(err)
		}
		if err := s.PutCommit(ctx, f, "j", checkpoint.Commit{Batch: batch}); err != nil {
			b.Fatal(err)
		}
	}
}
