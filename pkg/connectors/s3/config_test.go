package s3

import (
	"bytes"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{Bucket: "out"}
	with := func(f func(*Config)) Config {
		c := ok
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"minimal", ok, ""},
		{"full", with(func(c *Config) {
			c.Prefix, c.Region, c.Endpoint, c.Format, c.PartitionBy = "landing/zone/", "eu-west-1", "http://127.0.0.1:9000", "parquet", "date"
			c.Auth = awsauth.Options{AccessKey: "k", SecretKey: "s", RoleARN: "arn:aws:iam::1:role/r"}
		}), ""},
		{"no bucket", with(func(c *Config) { c.Bucket = "" }), "sink.s3.bucket: required"},
		{"bad bucket", with(func(c *Config) { c.Bucket = "My_Bucket" }), `sink.s3.bucket: "My_Bucket" is not a bucket name`},
		{"short bucket", with(func(c *Config) { c.Bucket = "ab" }), "is not a bucket name"},
		{"leading slash", with(func(c *Config) { c.Prefix = "/x" }), "sink.s3.prefix: \"/x\" must not start with '/'"},
		{"empty folder", with(func(c *Config) { c.Prefix = "a//b" }), "sink.s3.prefix: \"a//b\" holds an empty folder"},
		{"format", with(func(c *Config) { c.Format = "csv" }), `sink.s3.format: "csv" is not jsonl or parquet`},
		{"endpoint", with(func(c *Config) { c.Endpoint = "localhost:9000" }), `sink.s3.endpoint: "localhost:9000" is not an http:// or https:// URL`},
		{"partitionBy", with(func(c *Config) { c.PartitionBy = " date" }), "sink.s3.partitionBy:"},
		{"secret without key", with(func(c *Config) { c.Auth.SecretKey = "s" }), "sink.s3.auth.awsAccessKey: is required with awsSecretKey"},
		{"role options without role", with(func(c *Config) { c.Auth.RoleExternalID = "x" }), "sink.s3.auth.roleArn: is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestObjectKeys(t *testing.T) {
	s := &Sink{cfg: Config{Bucket: "b", Prefix: "land/", PartitionBy: "event date"}}
	if got, want := s.ObjectKey("treasury", 12, PartitionValue("2026-05-01"), "transaction/3#1"),
		"land/treasury/batch=12/event%20date=2026-05-01/part-transaction=3+1.jsonl"; got != want {
		t.Errorf("ObjectKey = %q, want %q", got, want)
	}
	s.cfg.PartitionBy, s.cfg.Prefix, s.cfg.Format = "", "", "parquet"
	if got, want := s.ObjectKey("j", 0, "", "aggregate"), "j/batch=0/part-aggregate.parquet"; got != want {
		t.Errorf("ObjectKey = %q, want %q", got, want)
	}
	values := map[any]string{
		nil:       DefaultPartition,
		"":        DefaultPartition,
		"a/b c":   "a%2Fb%20c",
		int64(-3): "-3",
		2.5:       "2.5",
		true:      "true",
		"..":      "%2E%2E",
		time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC): "2026-05-01T00%3A00%3A00Z",
	}
	for v, want := range values {
		if got := PartitionValue(v); got != want {
			t.Errorf("PartitionValue(%#v) = %q, want %q", v, got, want)
		}
	}
}

// readParquet reads a Parquet file back with parquet-go: each row as a map
// of column to value (nil for null; strings for STRING and JSON columns;
// time.Time for timestamps).
func readParquet(t *testing.T, b []byte) (*parquet.Schema, []map[string]any) {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("open parquet: %v", err)
	}
	schema := f.Schema()
	leaves := map[int]parquet.Field{}
	for i, path := range schema.Columns() {
		leaf, _ := schema.Lookup(path...)
		leaves[i] = leaf.Node.(parquet.Field)
	}
	r := parquet.NewReader(f)
	defer r.Close()
	out := make([]map[string]any, 0, f.NumRows())
	buf := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(buf)
		for _, row := range buf[:n] {
			m := map[string]any{}
			for _, v := range row {
				field := leaves[v.Column()]
				if v.IsNull() {
					m[field.Name()] = nil
					continue
				}
				lt := ""
				if l := field.Type().LogicalType(); l != nil {
					lt = l.String()
				}
				switch {
				case strings.HasPrefix(lt, "TIMESTAMP("):
					m[field.Name()] = time.UnixMicro(v.Int64()).UTC()
				case lt == "STRING" || lt == "JSON":
					m[field.Name()] = string(v.ByteArray())
				default:
					switch v.Kind() {
					case parquet.Boolean:
						m[field.Name()] = v.Boolean()
					case parquet.Int64:
						m[field.Name()] = v.Int64()
					case parquet.Double:
						m[field.Name()] = v.Double()
					default:
						m[field.Name()] = append([]byte(nil), v.ByteArray()...)
					}
				}
			}
			out = append(out, m)
		}
		if err == io.EOF {
			return schema, out
		}
		if err != nil {
			t.Fatalf("read parquet: %v", err)
		}
	}
}

func TestParquetSchemaInference(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 30, 0, 123456789, time.UTC)
	rows := []stream.Row{
		{"branch": "SPB", "n": int64(3), "avg": int64(2), "ok": true, "at": at, "raw": []byte{1, 2}, "doc": map[string]any{"a": []any{int64(1)}}, "mixed": "x", "nothing": nil},
		{"branch": "Kazan", "n": nil, "avg": 2.5, "ok": false, "mixed": int64(7)},
		{"extra": math.Inf(1)},
	}
	var b bytes.Buffer
	if err := writeParquet(&b, rows); err != nil {
		t.Fatal(err)
	}
	schema, got := readParquet(t, b.Bytes())
	types := map[string]string{}
	for _, f := range schema.Fields() {
		lt := ""
		if l := f.Type().LogicalType(); l != nil {
			lt = l.String()
		}
		types[f.Name()] = f.Type().Kind().String() + " " + lt + " optional=" + map[bool]string{true: "yes", false: "no"}[f.Optional()]
	}
	wantTypes := map[string]string{
		"at":      "INT64 TIMESTAMP(isAdjustedToUTC=true,unit=MICROS) optional=yes",
		"avg":     "DOUBLE  optional=yes",
		"branch":  "BYTE_ARRAY STRING optional=yes",
		"doc":     "BYTE_ARRAY JSON optional=yes",
		"extra":   "DOUBLE  optional=yes",
		"mixed":   "BYTE_ARRAY STRING optional=yes",
		"n":       "INT64 INT(64,true) optional=yes",
		"nothing": "BYTE_ARRAY STRING optional=yes",
		"ok":      "BOOLEAN  optional=yes",
		"raw":     "BYTE_ARRAY  optional=yes",
	}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Fatalf("column types (-want +got):\n%s", diff)
	}
	if len(got) != 3 {
		t.Fatalf("read %d rows, want 3", len(got))
	}
	if got[0]["branch"] != "SPB" || got[0]["n"] != int64(3) || got[0]["avg"] != 2.0 || got[0]["ok"] != true ||
		got[0]["mixed"] != "x" || got[1]["mixed"] != "7" || got[1]["avg"] != 2.5 || got[1]["n"] != nil ||
		!math.IsInf(got[2]["extra"].(float64), 1) {
		t.Fatalf("rows read back: %#v", got)
	}
	if a, ok := got[0]["at"].(time.Time); !ok || !a.Equal(at.Truncate(time.Microsecond)) {
		t.Fatalf("at = %v, want %v (microseconds)", got[0]["at"], at.Truncate(time.Microsecond))
	}
	if d, ok := got[0]["doc"].(string); !ok || d != `{"a":[1]}` {
		t.Fatalf("doc = %#v, want the JSON text", got[0]["doc"])
	}
}
