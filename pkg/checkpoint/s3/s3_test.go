package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore/casstoretest"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// config is a Config for bucket and prefix on m.
func config(m testenv.MinIO, bucket, prefix string) Config {
	return Config{
		Bucket: bucket, Prefix: prefix, Region: m.Region, Endpoint: m.Endpoint,
		Auth: awsauth.Options{AccessKey: m.AccessKey, SecretKey: m.SecretKey},
	}
}

// client is a raw S3 client on m, for making buckets and looking behind
// the store.
func client(t *testing.T, m testenv.MinIO) *s3.Client { return clientTB(t, m) }

func clientTB(t testing.TB, m testenv.MinIO) *s3.Client {
	t.Helper()
	cfg, err := awsauth.Load(context.Background(), awsauth.Options{Region: m.Region, AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	cfg.HTTPClient = &http.Client{Transport: tr}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(m.Endpoint)
		o.UsePathStyle = true
	})
}

// minio starts MinIO with the given buckets.
func minio(t *testing.T, buckets ...string) testenv.MinIO {
	t.Helper()
	m := testenv.StartMinIO(t)
	c := client(t, m)
	for _, b := range buckets {
		if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatalf("create bucket %s: %v", b, err)
		}
	}
	return m
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

func freshPrefix() string { return fmt.Sprintf("t%d", prefixes.Add(1)) }

func TestContract(t *testing.T) {
	casstoretest.RunContract(t, namespaces(minio(t, "contract"), "contract"))
}

func TestFencing(t *testing.T) {
	casstoretest.RunFencing(t, namespaces(minio(t, "fencing"), "fencing"))
}

// namespaces opens stores on a fresh prefix of bucket for each test.
func namespaces(m testenv.MinIO, bucket string) casstoretest.Namespace {
	return func(t *testing.T) func(hook func(point, job string)) casstoretest.Store {
		cfg := config(m, bucket, freshPrefix())
		return func(hook func(point, job string)) casstoretest.Store {
			return openT(t, cfg, casstore.Options{Hook: hook})
		}
	}
}

// keys lists every object under prefix, with incarnations and blob ids
// replaced by placeholders.
func keys(t *testing.T, c *s3.Client, bucket, prefix string) []string {
	t.Helper()
	out, err := c.ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, o := range out.Contents {
		parts := strings.Split(aws.ToString(o.Key), "/")
		if len(parts) >= 5 {
			parts[2] = "<inc>"
			if kind, _, ok := strings.Cut(parts[4], "-"); ok {
				parts[4] = kind + "-<id>.json"
			}
		}
		ks = append(ks, strings.Join(parts, "/"))
	}
	sort.Strings(ks)
	return ks
}

// TestLayout pins the object layout the package doc describes, and that
// Open leaves no probe behind.
func TestLayout(t *testing.T) {
	m := minio(t, "layout")
	s := openT(t, config(m, "layout", "/group-a"), casstore.Options{})
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
	got := keys(t, client(t, m), "layout", "")
	want := []string{
		"group-a/fence.json",
		"group-a/team%2Forders/<inc>/00000000000000000042/commit-<id>.json",
		"group-a/team%2Forders/<inc>/00000000000000000042/ends.json",
		"group-a/team%2Forders/<inc>/00000000000000000042/plan-<id>.json",
		"group-a/team%2Forders/head.json",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("objects:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A name whose escaped keys exceed S3's 1024 bytes is refused with the
	// reason.
	err := s.PutJob(ctx, f, checkpoint.JobRecord{Name: strings.Repeat("/", 320)})
	if err == nil || !strings.Contains(err.Error(), "too long for S3 keys") {
		t.Errorf("put job with a long name: got %v, want \"too long for S3 keys\"", err)
	}
}

// TestDeleteJobRemovesObjects: DeleteJob leaves a tombstone head and no
// log objects; Purge removes the objects of purged batches.
func TestDeleteJobRemovesObjects(t *testing.T) {
	m := minio(t, "deletes")
	s := openT(t, config(m, "deletes", ""), casstore.Options{})
	ctx := context.Background()
	f := casstoretest.Old
	for b := range stream.BatchID(3) {
		for _, err := range []error{
			s.PutPlan(ctx, f, "j", checkpoint.BatchPlan{Batch: b}),
			s.PutTaskEnd(ctx, f, "j", b, "k", []byte("e")),
			s.PutCommit(ctx, f, "j", checkpoint.Commit{Batch: b}),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Purge(ctx, f, "j", 2); err != nil {
		t.Fatal(err)
	}
	c := client(t, m)
	if got := len(keys(t, c, "deletes", "j/")); got != 1+3 {
		t.Fatalf("after purge below 2: %d objects under j/, want head + batch 2's three: %q", got, keys(t, c, "deletes", "j/"))
	}
	if err := s.DeleteJob(ctx, f, "j"); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, c, "deletes", "j/"); len(got) != 1 || got[0] != "j/head.json" {
		t.Fatalf("after delete: %q, want only the tombstone j/head.json", got)
	}
}

// TestMissingBucket: a bucket that does not exist is named in a clear
// error at Open, before anything is written.
func TestMissingBucket(t *testing.T) {
	m := minio(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Open(ctx, config(m, "no-such-bucket", ""))
	if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket"`) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("got %v, want an error saying bucket \"no-such-bucket\" does not exist", err)
	}
	t.Log(err)
}

// TestWrongCredentials: MinIO refuses unknown keys; the error says so and
// does not show the secret.
func TestWrongCredentials(t *testing.T) {
	m := minio(t, "creds")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct{ name, key, secret string }{
		{"unknown key", "AKIDNOSUCHKEY", "wrong-s3cr3t"},
		{"wrong secret", m.AccessKey, "wrong-s3cr3t"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(m, "creds", "")
			cfg.Auth = awsauth.Options{AccessKey: tc.key, SecretKey: tc.secret}
			_, err := Open(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), "credentials were refused") {
				t.Fatalf("got %v, want an error about the credentials", err)
			}
			if strings.Contains(err.Error(), "wrong-s3cr3t") {
				t.Fatalf("error shows the secret: %v", err)
			}
			t.Log(err)
		})
	}
}

// TestRefusesEndpointWithoutConditionalWrites: a server that ignores
// If-None-Match and If-Match (as s3rver does) cannot fence; Open refuses
// it. The server here is a minimal S3 that stores objects and ignores
// preconditions.
func TestRefusesEndpointWithoutConditionalWrites(t *testing.T) {
	objects := map[string][]byte{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodHead: // HeadBucket
			w.WriteHeader(http.StatusOK)
		case http.MethodPut:
			body, _ := io.ReadAll(r.Body)
			objects[r.URL.Path] = body
			w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
			w.WriteHeader(http.StatusOK)
		case http.MethodDelete:
			delete(objects, r.URL.Path)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Open(ctx, Config{Bucket: "ignores-preconditions", Endpoint: srv.URL, Auth: awsauth.Options{AccessKey: "AKID", SecretKey: "s"}})
	if !errors.Is(err, ErrNoConditionalWrites) {
		t.Fatalf("got %v, want ErrNoConditionalWrites", err)
	}
	t.Log(err)
}

func TestOpenValidates(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no bucket", Config{}, "bucket: is required"},
		{"bad bucket", Config{Bucket: "My_Bucket"}, `bucket: "My_Bucket" is not a bucket name`},
		{"dot segment", Config{Bucket: "b12", Prefix: "a/../b"}, "prefix:"},
		{"bad endpoint", Config{Bucket: "b12", Endpoint: "minio:9000"}, "endpoint:"},
		{"key without secret", Config{Bucket: "b12", Auth: awsauth.Options{AccessKey: "AKID"}}, "auth.awsSecretKey: is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(ctx, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"orders", "orders"},
		{"team/clicks#2", "team%2Fclicks%232"},
		{"..", "%2E%2E"},
		{"a b%c", "a%20b%25c"},
		{"ünï", "%C3%BCn%C3%AF"},
		{"Job_1-x", "Job_1-x"},
	} {
		if got := escape(tc.in); got != tc.want {
			t.Errorf("escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if back, ok := unescape(tc.want); !ok || back != tc.in {
			t.Errorf("unescape(%q) = %q, %v", tc.want, back, ok)
		}
	}
	for _, foreign := range []string{"a.b", "a%2fb", "%zz"} {
		if _, ok := unescape(foreign); ok {
			t.Errorf("unescape(%q) accepted a name escape never makes", foreign)
		}
	}
}

// BenchmarkBatch measures the store's share of one micro-batch: record the
// plan, one task end, the commit (what the driver writes per batch).
func BenchmarkBatch(b *testing.B) {
	m := testenv.StartMinIO(b)
	c := clientTB(b, m)
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("bench")}); err != nil {
		b.Fatal(err)
	}
	s, err := Open(context.Background(), config(m, "bench", ""))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	f := casstoretest.Old
	b.ResetTimer()
	for i := range b.N {
		batch := stream.BatchID(i)
		if err := s.PutPlan(ctx, f, "j", checkpoint.BatchPlan{Batch: batch}); err != nil {
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
