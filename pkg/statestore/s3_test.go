package statestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/sluicehq/sluice/pkg/awsauth"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/testenv"
)

const testBucket = "state"

// minioConfig is the S3Config that reaches m.
func minioConfig(m testenv.MinIO) S3Config {
	return S3Config{Endpoint: m.Endpoint, Options: awsauth.Options{Region: m.Region, AccessKey: m.AccessKey, SecretKey: m.SecretKey}}
}

// TestS3 runs everything that needs MinIO against one server.
func TestS3(t *testing.T) {
	m := testenv.StartMinIO(t)
	ctx := context.Background()
	client, err := NewS3Client(ctx, minioConfig(m))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(testBucket)}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	raw := func(t *testing.T, key string, data []byte) {
		t.Helper()
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: &key, Body: bytes.NewReader(data)}); err != nil {
			t.Fatalf("put %s: %v", key, err)
		}
	}

	for _, prefix := range []string{"contract/a", "/contract/b/", ""} {
		t.Run(fmt.Sprintf("contract prefix %q", prefix), func(t *testing.T) {
			if prefix == "" {
				// The bucket's root: a bucket of its own, so that the
				// other subtests' objects do not show.
				if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("root-" + testBucket)}); err != nil {
					t.Fatal(err)
				}
				loc, err := S3(client, "root-"+testBucket, "")
				if err != nil {
					t.Fatal(err)
				}
				testLocation(t, loc, func(name string, data []byte) {
					key := name
					if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("root-" + testBucket), Key: &key, Body: bytes.NewReader(data)}); err != nil {
						t.Fatal(err)
					}
				})
				return
			}
			loc, err := S3(client, testBucket, prefix)
			if err != nil {
				t.Fatal(err)
			}
			root := strings.Trim(prefix, "/") + "/"
			testLocation(t, loc, func(name string, data []byte) { raw(t, root+name, data) })
		})
	}

	t.Run("keys", func(t *testing.T) {
		loc, err := S3(client, testBucket, "keys/root")
		if err != nil {
			t.Fatal(err)
		}
		if err := loc.Put(ctx, "a/b", []byte("x")); err != nil {
			t.Fatal(err)
		}
		// The object's key is prefix/name, so a directory copied into the
		// bucket (aws s3 sync) is the same Location content.
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(testBucket), Key: aws.String("keys/root/a/b")})
		if err != nil {
			t.Fatal(err)
		}
		out.Body.Close()
		// Neighbours of the prefix do not show, nor do folder markers,
		// which no Dir could hold. (MinIO refuses keys with empty path
		// elements, "a//c", and hides objects under a key that is also an
		// object, "keys/root", so those are not tried.)
		raw(t, "keys/rooted/x", []byte("n"))
		raw(t, "keys/root.txt", []byte("n"))
		raw(t, "keys/root/m/", nil)
		names, err := loc.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a/b"}, names); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
			out, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(testBucket), Prefix: aws.String("keys/")})
			for _, o := range out.Contents {
				t.Logf("key %q", *o.Key)
			}
			t.Log(err)
		}
		// Two Locations on the same bucket and prefix see each other's files.
		other, err := S3(client, testBucket, "/keys/root/")
		if err != nil {
			t.Fatal(err)
		}
		if got, err := other.Get(ctx, "a/b"); err != nil || string(got) != "x" {
			t.Errorf("Get through another Location = %q, %v", got, err)
		}
	})

	t.Run("paging", func(t *testing.T) {
		loc, err := S3(client, testBucket, "paging")
		if err != nil {
			t.Fatal(err)
		}
		// More than one ListObjectsV2 page (1000 keys).
		var want []string
		for i := range 1203 {
			name := fmt.Sprintf("p/%06d", i)
			want = append(want, name)
			raw(t, "paging/"+name, []byte("x"))
		}
		names, err := loc.List(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, names); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
	})

	t.Run("store", func(t *testing.T) {
		loc, err := OpenLocation(ctx, "s3://"+testBucket+"/jobs/orders", minioConfig(m))
		if err != nil {
			t.Fatal(err)
		}
		w := openStore(t, loc, func(o *Options) { o.SnapshotInterval = 5 })
		h := commitRange(t, w, nil, 0, 12)
		checkState(t, w, h.at(12))
		var want []string
		for v := int64(0); v <= 12; v++ {
			want = append(want, fmt.Sprintf("%012d.delta", v))
			if v%5 == 0 {
				want = append(want, fmt.Sprintf("%012d.snapshot", v))
			}
		}
		if diff := cmp.Diff(want, listNames(t, loc)); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
		// A fresh Store with its own local directory restores from S3 alone.
		loc2, err := OpenLocation(ctx, "s3://"+testBucket+"/jobs/orders/", minioConfig(m))
		if err != nil {
			t.Fatal(err)
		}
		r := openStore(t, loc2, nil)
		for _, v := range []int64{12, 7} {
			restored, err := r.Load(ctx, v)
			if err != nil || !restored {
				t.Fatalf("Load(%d) = %v, %v; want restored", v, restored, err)
			}
			if r.Version() != v {
				t.Fatalf("Version() = %d, want %d", r.Version(), v)
			}
			checkState(t, r, h.at(v))
		}
		// The restored store carries on where the writer left off.
		if _, err := r.Load(ctx, 12); err != nil {
			t.Fatal(err)
		}
		h = commitRange(t, r, h, 13, 14)
		r2 := openStore(t, loc, nil)
		if _, err := r2.Load(ctx, 14); err != nil {
			t.Fatal(err)
		}
		checkState(t, r2, h.at(14))
	})

	t.Run("errors", func(t *testing.T) {
		cfg := minioConfig(m)
		cfg.SecretKey = "wrong-secret-do-not-print"
		loc, err := OpenLocation(ctx, "s3://"+testBucket+"/x", cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = loc.Get(ctx, "a")
		if err == nil || errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "credentials were refused") ||
			!strings.Contains(err.Error(), "s3://state/x/a") || strings.Contains(err.Error(), cfg.SecretKey) {
			t.Errorf("Get with a wrong secret = %v", err)
		}
		for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
			if strings.Contains(s, cfg.SecretKey) {
				t.Errorf("S3Config formats with its secret: %s", s)
			}
		}

		loc, err = OpenLocation(ctx, "s3://no-such-bucket/x", minioConfig(m))
		if err != nil {
			t.Fatal(err)
		}
		for name, err := range map[string]error{
			"Get":    func() error { _, err := loc.Get(ctx, "a"); return err }(),
			"List":   func() error { _, err := loc.List(ctx, "a"); return err }(),
			"Put":    loc.Put(ctx, "a", nil),
			"Delete": loc.Delete(ctx, "a"),
		} {
			// A missing bucket is no empty state.
			if err == nil || errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
				t.Errorf("%s in a missing bucket = %v", name, err)
			}
		}

		loc, err = OpenLocation(ctx, "s3://"+testBucket+"/x", S3Config{Endpoint: "http://127.0.0.1:1", Options: awsauth.Options{Region: m.Region, AccessKey: "a", SecretKey: "b"}})
		if err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if _, err := loc.Get(cctx, "a"); err == nil || !strings.Contains(err.Error(), "reachable") {
			t.Errorf("Get from a closed port = %v", err)
		}
	})
}

func TestOpenLocation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, uri := range []string{filepath.Join(dir, "a"), "file://" + filepath.Join(dir, "b"), "file://localhost" + filepath.Join(dir, "c") + "/"} {
		loc, err := OpenLocation(ctx, uri, S3Config{})
		if err != nil {
			t.Fatalf("OpenLocation(%q): %v", uri, err)
		}
		if _, ok := loc.(*dirLocation); !ok {
			t.Errorf("OpenLocation(%q) = %T, want a Dir", uri, loc)
		}
	}
	loc, err := OpenLocation(ctx, "s3://my-bucket/some/prefix/", S3Config{Options: awsauth.Options{Region: "eu-west-1", AccessKey: "a", SecretKey: "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if l, ok := loc.(*s3Location); !ok || l.bucket != "my-bucket" || l.root != "some/prefix/" {
		t.Errorf("OpenLocation(s3) = %#v", loc)
	}
	check := checkOpenError(t)
	for _, tc := range []struct {
		uri, want string
	}{
		{"", "absolute path"},
		{"relative/dir", "absolute path"},
		{"file://host/x", "names no host"},
		{"file:relative", "absolute path"},
		{"gs://b/p", `scheme "gs" is not supported`},
		{"s3:///p", "no bucket"},
		{"s3://Bad_Bucket/p", "not an S3 bucket name"},
		{"s3://b/p", "not an S3 bucket name"},
		{"s3://bucket/a//b", "must not contain"},
		{"s3://bucket/a/../b", "must not contain"},
		{"s3://bucket/p?region=x&key=topsecret", "query"},
		{"s3://AKIAKEY:topsecret@bucket/p", "credentials in the URL"},
	} {
		_, err := OpenLocation(ctx, tc.uri, S3Config{})
		check(tc.uri, err, tc.want)
	}
	for _, tc := range []struct {
		cfg  S3Config
		want string
	}{
		{S3Config{Options: awsauth.Options{SecretKey: "topsecret"}}, "awsAccessKey"},
		{S3Config{Endpoint: "127.0.0.1:9000"}, "http:// or https://"},
		{S3Config{Endpoint: "http://AKIAKEY:topsecret@127.0.0.1:9000"}, "must not hold credentials"},
	} {
		_, err := OpenLocation(ctx, "s3://bucket/p", tc.cfg)
		check(fmt.Sprint(tc.cfg), err, tc.want)
	}
}

func checkOpenError(t *testing.T) func(what string, err error, want string) {
	return func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("OpenLocation(%s) = %v, want an error with %q", what, err, want)
			return
		}
		if strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "AKIAKEY") {
			t.Errorf("OpenLocation(%s) error shows credentials: %v", what, err)
		}
	}
}

// fakeS3 answers every call with err.
type fakeS3 struct {
	S3API
	err error
}

func (f fakeS3) GetObject(context.Context, *s3.GetObjectInput, ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	return nil, f.err
}

func (f fakeS3) DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	return nil, f.err
}

// TestS3NotFound checks the error shapes that mean "absent" and one that
// must not: servers differ in how they say it.
func TestS3NotFound(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err    error
		absent bool
	}{
		{&types.NoSuchKey{}, true},
		{&types.NotFound{}, true},
		{&smithy.GenericAPIError{Code: "NoSuchKey"}, true},
		{&smithy.GenericAPIError{Code: "NoSuchBucket"}, false},
		{&smithy.GenericAPIError{Code: "AccessDenied"}, false},
		{errors.New("boom"), false},
	} {
		loc, err := S3(fakeS3{err: tc.err}, "bucket", "p")
		if err != nil {
			t.Fatal(err)
		}
		_, err = loc.Get(ctx, "a")
		if got := errors.Is(err, ErrNotExist); got != tc.absent {
			t.Errorf("Get on %v: %v; want absent %v", tc.err, err, tc.absent)
		}
		if !strings.Contains(err.Error(), "s3://bucket/p/a") {
			t.Errorf("Get on %v: %v; want the object named", tc.err, err)
		}
		if err := loc.Delete(ctx, "a"); (err == nil) != tc.absent {
			t.Errorf("Delete on %v = %v", tc.err, err)
		}
	}
}
