package jobspec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/statestore"
)

const positionQuery = `select branch, currency, sum(amount) as position, count(*) as n from tx group by branch, currency`

func TestCompileState(t *testing.T) {
	sqlJob := func(query string) string {
		return `
name: open-position
source:
  kafka: {bootstrapServers: "127.0.0.1:9092", subscribe: [transaction], startingOffsets: earliest}
transforms:
  - decode: {format: json, schema: "branch STRING, currency STRING, amount BIGINT"}
  - sql: {view: tx, query: "` + query + `"}
sink:
  file: {path: /tmp/out, format: jsonl}
`
	}
	tests := []struct {
		name  string
		yaml  string
		want  *StateConfig
		field string // of the one expected error, "" for none
		err   string
	}{
		{name: "no output mode: no state", yaml: sqlJob(positionQuery)},
		{name: "update with defaults", yaml: sqlJob(positionQuery) + "outputMode: update\ncheckpoint: {state: /var/lib/sluice/state}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "/var/lib/sluice/state", MinBatchesToRetain: 100}},
		{name: "complete, everything set, file URL", yaml: sqlJob(positionQuery) +
			"outputMode: complete\nstate: {partitions: 4, snapshotInterval: 3}\ncheckpoint: {state: \"file:///shared/state/\", minBatchesToRetain: 7}\n",
			want: &StateConfig{Partitions: 4, SnapshotInterval: 3, Location: "/shared/state", MinBatchesToRetain: 7}},
		{name: "unknown mode", yaml: sqlJob(positionQuery) + "outputMode: upsert\ncheckpoint: {state: /s}\n", field: "outputMode", err: "not an output mode"},
		{name: "append needs a watermark", yaml: sqlJob(positionQuery) + "outputMode: append\ncheckpoint: {state: /s}\n", field: "outputMode", err: "watermark"},
		{name: "no location", yaml: sqlJob(positionQuery) + "outputMode: update\n", field: "checkpoint.state", err: "is required for a stateful job"},
		{name: "relative location", yaml: sqlJob(positionQuery) + "outputMode: update\ncheckpoint: {state: state}\n", field: "checkpoint.state", err: "absolute path"},
		{name: "s3 location", yaml: sqlJob(positionQuery) + "outputMode: update\ncheckpoint: {state: \"s3://b/p/\"}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "s3://b/p", MinBatchesToRetain: 100}},
		{name: "s3 location with the S3 store's access", yaml: sqlJob(positionQuery) +
			"outputMode: update\ncheckpoint: {state: \"s3://bkt/state\", s3: {bucket: bkt, prefix: log, region: eu-west-1, endpoint: \"http://127.0.0.1:9000\", auth: {awsAccessKey: AK, awsSecretKey: SK}}}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "s3://bkt/state", MinBatchesToRetain: 100,
				S3: statestore.S3Config{Endpoint: "http://127.0.0.1:9000", Options: awsauth.Options{Region: "eu-west-1", AccessKey: "AK", SecretKey: "SK"}}}},
		{name: "s3 location without a bucket", yaml: sqlJob(positionQuery) + "outputMode: update\ncheckpoint: {state: \"s3:///p\"}\n", field: "checkpoint.state", err: "names no bucket"},
		{name: "gs location", yaml: sqlJob(positionQuery) + "outputMode: update\ncheckpoint: {state: \"gs://b/p\"}\n", field: "checkpoint.state", err: "scheme gs is not supported"},
		{name: "too many partitions", yaml: sqlJob(positionQuery) + "outputMode: update\nstate: {partitions: 5000}\ncheckpoint: {state: /s}\n", field: "state.partitions", err: "1 to 1024"},
		{name: "negative snapshot interval", yaml: sqlJob(positionQuery) + "outputMode: update\nstate: {snapshotInterval: -1}\ncheckpoint: {state: /s}\n", field: "state.snapshotInterval", err: "1 to 10000"},
		{name: "state without output mode", yaml: sqlJob(positionQuery) + "state: {partitions: 4}\n", field: "state", err: "set outputMode"},
		{name: "checkpoint.state without output mode", yaml: sqlJob(positionQuery) + "checkpoint: {state: /s}\n", field: "checkpoint.state", err: "set outputMode"},
		{name: "row-wise query", yaml: sqlJob("select branch, amount from tx where amount > 0") + "outputMode: update\ncheckpoint: {state: /s}\n",
			field: "outputMode", err: "does not aggregate"},
		{name: "ORDER BY in a stateful query", yaml: sqlJob(positionQuery+" order by position desc") + "outputMode: complete\ncheckpoint: {state: /s}\n",
			field: "transforms[1].sql.query", err: "position 98"},
		{name: "append with a watermark", yaml: sqlJob("select window(timestamp, '1 minute') as w, count(*) as n from tx group by 1") +
			"outputMode: append\nwatermark: {column: timestamp, delay: 1 minute 30 seconds}\ncheckpoint: {state: /s}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "/s", MinBatchesToRetain: 100, Watermark: &Watermark{Column: "timestamp", Delay: 90 * time.Second}}},
		{name: "update with a Go-style delay", yaml: sqlJob(positionQuery) + "outputMode: update\nwatermark: {column: timestamp, delay: 10s}\ncheckpoint: {state: /s}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "/s", MinBatchesToRetain: 100, Watermark: &Watermark{Column: "timestamp", Delay: 10 * time.Second}}},
		{name: "watermark without output mode", yaml: sqlJob(positionQuery) + "watermark: {column: timestamp, delay: 10s}\n", field: "watermark", err: "set outputMode"},
		{name: "bad delay", yaml: sqlJob(positionQuery) + "outputMode: update\nwatermark: {column: timestamp, delay: 10 parsecs}\ncheckpoint: {state: /s}\n",
			field: "watermark.delay", err: "not a duration"},
		{name: "unknown watermark column", yaml: sqlJob(positionQuery) + "outputMode: update\nwatermark: {column: ts, delay: 10s}\ncheckpoint: {state: /s}\n",
			field: "watermark.column", err: "ts is not a column of the rows transforms[1].sql reads (its view tx)"},
		{name: "watermark column not a timestamp", yaml: sqlJob(positionQuery) + "outputMode: update\nwatermark: {column: amount, delay: 10s}\ncheckpoint: {state: /s}\n",
			field: "watermark.column", err: "amount is a int64"},
		{name: "append not grouped by event time", yaml: sqlJob(positionQuery) + "outputMode: append\nwatermark: {column: timestamp, delay: 10s}\ncheckpoint: {state: /s}\n",
			field: "outputMode", err: "group by the watermark column timestamp"},
		{name: "dropDuplicates for the job's life", yaml: sqlJob("select branch, amount from tx") + "dropDuplicates: {columns: [branch]}\ncheckpoint: {state: /s}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "/s", MinBatchesToRetain: 100, Dedup: []string{"branch"}}},
		{name: "dropDuplicates within the watermark", yaml: sqlJob("select branch, amount, timestamp from tx") +
			"dropDuplicates: {columns: [branch, amount]}\nwatermark: {column: timestamp, delay: 1 hour}\ncheckpoint: {state: /s}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "/s", MinBatchesToRetain: 100, Dedup: []string{"branch", "amount"},
				DedupWithin: time.Hour, Watermark: &Watermark{Column: "timestamp", Delay: time.Hour}}},
		{name: "dropDuplicates within needs a watermark", yaml: sqlJob("select branch, amount from tx") + "dropDuplicates: {columns: [branch], within: 1 hour}\ncheckpoint: {state: /s}\n",
			field: "dropDuplicates.within", err: "needs a watermark"},
		{name: "dropDuplicates of an unknown column", yaml: sqlJob("select branch, amount from tx") + "dropDuplicates: {columns: [branch, id]}\ncheckpoint: {state: /s}\n",
			field: "dropDuplicates.columns[1]", err: "id is not a column of the query's output (branch, amount)"},
		{name: "dropDuplicates of an aggregate", yaml: sqlJob(positionQuery) + "dropDuplicates: {columns: [branch]}\ncheckpoint: {state: /s}\n",
			field: "dropDuplicates", err: "aggregates"},
		{name: "dropDuplicates in update mode", yaml: sqlJob("select branch, amount from tx") + "outputMode: update\ndropDuplicates: {columns: [branch]}\ncheckpoint: {state: /s}\n",
			field: "outputMode", err: "dropDuplicates writes each row once"},
		{name: "dropDuplicates without a location", yaml: sqlJob("select branch, amount from tx") + "dropDuplicates: {columns: [branch]}\n",
			field: "checkpoint.state", err: "is required"},
		{name: "append grouped by an expression over the event time", yaml: sqlJob("select date_trunc('hour', timestamp) as h, count(*) as n from tx group by 1") +
			"outputMode: append\nwatermark: {column: timestamp, delay: 10s}\ncheckpoint: {state: /s}\n",
			field: "outputMode", err: "not an expression over it"},
		{name: "append grouped by the event time itself", yaml: sqlJob("select timestamp, count(*) as n from tx group by timestamp") +
			"outputMode: append\nwatermark: {column: timestamp, delay: 10s}\ncheckpoint: {state: /s}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "/s", MinBatchesToRetain: 100, Watermark: &Watermark{Column: "timestamp", Delay: 10 * time.Second}}},
		{name: "session windows in append mode", yaml: sqlJob("select branch, session_window(timestamp, '5 minutes') as s, count(*) as n from tx group by branch, session_window(timestamp, '5 minutes')") +
			"outputMode: append\nwatermark: {column: timestamp, delay: 1 minute}\ncheckpoint: {state: /s}\n",
			want: &StateConfig{Partitions: 16, SnapshotInterval: 10, Location: "/s", MinBatchesToRetain: 100, Watermark: &Watermark{Column: "timestamp", Delay: time.Minute}}},
		{name: "session windows per batch", yaml: sqlJob("select branch, session_window(timestamp, '5 minutes') as s, count(*) as n from tx group by branch, session_window(timestamp, '5 minutes')"),
			field: "transforms[1].sql.query", err: "session_window(ts, gap) is a GROUP BY key of a stateful aggregate"},
		{name: "no aggregate", yaml: strings.Replace(good, "  - aggregate: {groupBy: [branch, currency], aggregations: [{fn: sum, field: amount, as: batch_value}, {fn: count, as: n}]}\n", "", 1) + "outputMode: update\ncheckpoint: {state: /s}\n", field: "outputMode", err: "does not aggregate"},
		{name: "no transforms", yaml: cut(good, "transforms:", "sink:") + "outputMode: update\ncheckpoint: {state: /s}\n", field: "outputMode", err: "needs transforms ending in an aggregating step"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := ParseYAML([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			j, err := Compile(spec)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(tc.want, j.State); diff != "" {
					t.Fatalf("state (-want +got):\n%s", diff)
				}
				if stateful := j.SQL.Stateful(); stateful != (tc.want != nil) {
					t.Fatalf("SQL stateful %v, want %v", stateful, tc.want != nil)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || len(e.List) != 1 || e.List[0].Field != tc.field || !strings.Contains(e.List[0].Description, tc.err) {
				t.Fatalf("error %v, want one on %s containing %q", err, tc.field, tc.err)
			}
		})
	}
}
