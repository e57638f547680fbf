package kafka_test

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	gocmp "github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/arrowtest"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

// rawRecord is a record read back with what consumed drops: whether key
// and value are null rather than empty, and the headers' null values.
type rawRecord struct {
	Partition          int32
	Key, Value         string
	NullKey, NullValue bool
	Headers            string
}

// readRaw reads every record of topic up to its end (read_committed with
// committed).
func (c *cluster) readRaw(topic string, committed bool) []rawRecord {
	c.t.Helper()
	byPartition := map[int32][]rawRecord{}
	c.eachRecord(topic, committed, func(r *kgo.Record) {
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, fmt.Sprintf("%s=%q", h.Key, h.Value))
		}
		byPartition[r.Partition] = append(byPartition[r.Partition], rawRecord{
			Partition: r.Partition, Key: string(r.Key), Value: string(r.Value),
			NullKey: r.Key == nil, NullValue: r.Value == nil, Headers: strings.Join(hs, ","),
		})
	})
	var out []rawRecord
	for p := range int32(len(byPartition) + 8) {
		out = append(out, byPartition[p]...)
	}
	return out
}

// kafkaBatch is a batch of columnar.KafkaSchema with headers, as a query
// that passes the source's records through (select * from source) gives:
// null and empty keys and values among them.
func kafkaBatch(t *testing.T, mem memory.Allocator) arrow.RecordBatch {
	t.Helper()
	b := columnar.NewBuilder(mem, columnar.KafkaSchema(true))
	defer b.Release()
	for i := range 10 {
		row := stream.Row{
			"topic": "in", "partition": int64(i % 2), "offset": int64(100 + i),
			"timestamp": stream.Timestamp(1_700_000_000_000 + int64(i)), "timestampType": int64(0),
		}
		switch i % 3 {
		case 0:
			row["key"], row["value"] = []byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf(`{"id":%d}`, i))
		case 1:
			row["key"], row["value"] = []byte{}, []byte{}
		}
		if i%2 == 0 {
			row["headers"] = []any{map[string]any{"key": "h", "value": []byte("v")}}
		}
		if err := b.Append(row); err != nil {
			t.Fatal(err)
		}
	}
	return b.NewRecordBatch()
}

// TestSinkWriteArrowMatchesWrite produces the same batches through
// WriteArrow and, as rows, through Write, with each kind of expression, and
// reads back the very same records from both.
func TestSinkWriteArrowMatchesWrite(t *testing.T) {
	const partitions = 3
	tests := []struct {
		name  string
		cfg   func(topic string) kafka.SinkConfig
		batch func(t *testing.T, mem memory.Allocator) []arrow.RecordBatch
		txn   bool
	}{
		{"default value", func(topic string) kafka.SinkConfig {
			return kafka.SinkConfig{Topic: topic}
		}, queryBatches, false},
		{"pass-through of binary key and value", func(topic string) kafka.SinkConfig {
			return kafka.SinkConfig{Topic: topic, Key: "key", Value: "value", Partition: "partition"}
		}, func(t *testing.T, mem memory.Allocator) []arrow.RecordBatch {
			return []arrow.RecordBatch{kafkaBatch(t, mem)}
		}, false},
		{"pass-through, transactional", func(topic string) kafka.SinkConfig {
			return kafka.SinkConfig{Topic: topic, Key: "key", Value: "value", Transactional: true}
		}, func(t *testing.T, mem memory.Allocator) []arrow.RecordBatch {
			return []arrow.RecordBatch{kafkaBatch(t, mem)}
		}, true},
		{"default value, transactional", func(topic string) kafka.SinkConfig {
			return kafka.SinkConfig{Topic: topic, Transactional: true}
		}, queryBatches, true},
		{"expressions", func(topic string) kafka.SinkConfig {
			return kafka.SinkConfig{
				TopicExpr: fmt.Sprintf("'%s' || CASE WHEN ok THEN '-a' ELSE '-b' END", topic),
				Key:       "name", Value: `{'id': id, 'tags': tags, 'attrs': attrs, 'total': total}`,
				Headers: map[string]string{
					"payload": "payload", "amount": "amount", "ts": "ts", "id": `"id"`, "counts": "counts",
					"upper": "upper(name)", "cast": "CAST(amount AS STRING)", "null": "NULLIF(id % 2, 1)",
					"concat": "concat_ws('/', name, CAST(day AS STRING))", "json": "to_json(attrs)",
					"list": "list_transform(tags, lambda t: upper(t))", "map": "counts", "bool": "ok AND id > 2",
				},
				Partition: "CAST(id % 3 AS INT)",
				Schema:    arrowtest.Schema,
			}
		}, queryBatches, false},
		{"non-string key and value names", func(topic string) kafka.SinkConfig {
			return kafka.SinkConfig{Topic: topic, Key: "id", Value: "attrs", Headers: map[string]string{"day": "day", "price": "price"}}
		}, queryBatches, false},
		{"spark functions, nulls and the struct to JSON", func(topic string) kafka.SinkConfig {
			return kafka.SinkConfig{Topic: topic, Key: "nvl(name, 'anonymous')", Value: "attrs",
				Headers: map[string]string{"at": "date_format(ts, 'yyyy-MM-dd HH:mm')", "price": "price * 2", "nested": "attrs.s"},
				Schema:  arrowtest.Schema}
		}, queryBatches, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topics := []string{"rows", "arrow"}
			if tt.name == "expressions" {
				topics = []string{"rows-a", "rows-b", "arrow-a", "arrow-b"}
			}
			c := newCluster(t, partitions, topics...)
			mem := arrowtest.Mem(t)
			write := func(topic string, arrowPath bool) {
				cfg := tt.cfg(topic)
				cfg.BootstrapServers = c.addr
				s := newSink(t, cfg, kafka.WithSinkAllocator(mem))
				ctx := testCtx(t)
				// A job per path: transactional writers of one key would skip the
				// replay of a committed batch.
				w, err := s.OpenWriter(ctx, sinkKey("j-"+topic, 0, "p/0", arrowtest.Columns()...))
				if err != nil {
					t.Fatal(err)
				}
				for _, rec := range tt.batch(t, mem) {
					if arrowPath {
						err = w.(connectors.ArrowWriter).WriteArrow(ctx, rec)
					} else {
						err = w.Write(ctx, arrowtest.Rows(t, rec))
					}
					rec.Release()
					if err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			}
			write("rows", false)
			write("arrow", true)
			read := func(prefix string) []rawRecord {
				if tt.name != "expressions" {
					return c.readRaw(prefix, tt.txn)
				}
				return append(c.readRaw(prefix+"-a", tt.txn), c.readRaw(prefix+"-b", tt.txn)...)
			}
			want, got := read("rows"), read("arrow")
			if tt.cfg("").Partition == "" {
				// Records without a key go to any partition (sticky):
				// compare them without it.
				for _, recs := range [][]rawRecord{want, got} {
					for i := range recs {
						recs[i].Partition = 0
					}
					slices.SortStableFunc(recs, func(a, b rawRecord) int {
						return cmp.Compare(fmt.Sprint(a), fmt.Sprint(b))
					})
				}
			}
			if len(want) == 0 {
				t.Fatal("the row path wrote nothing")
			}
			if diff := gocmp.Diff(want, got); diff != "" {
				t.Errorf("records of WriteArrow (-Write +WriteArrow):\n%s", diff)
			}
		})
	}
}

// queryBatches are arrowtest batches: a full one, a slice and an empty one.
func queryBatches(_ *testing.T, mem memory.Allocator) []arrow.RecordBatch {
	full := arrowtest.Batch(mem, 0, 9)
	big := arrowtest.Batch(mem, 20, 10)
	slice := big.NewSlice(2, 9)
	big.Release()
	return []arrow.RecordBatch{full, slice, arrowtest.Batch(mem, 0, 0)}
}

// TestSinkWriteArrowErrors: an expression failing on a row of a batch fails
// the task permanently with the row path's words.
func TestSinkWriteArrowErrors(t *testing.T) {
	c := newCluster(t, 1, "out")
	mem := arrowtest.Mem(t)
	tests := []struct {
		name string
		cfg  kafka.SinkConfig
		want string
	}{
		{"bad partition", kafka.SinkConfig{Partition: "-id - 1", Schema: arrowtest.Schema}, "sink.kafka.partition at a row: gave -1, want a partition number"},
		{"null partition", kafka.SinkConfig{Partition: "CAST(NULL AS INT)", Schema: arrowtest.Schema}, "sink.kafka.partition at a row: gave NULL, want a partition number"},
		{"bad topic", kafka.SinkConfig{TopicExpr: "CAST(id AS STRING) || name", Schema: arrowtest.Schema}, `sink.kafka.topicExpr at a row: topic "0name <0> \"q\" é" may only contain`},
		{"failed cast", kafka.SinkConfig{Key: "CAST(name AS INT)", Schema: arrowtest.Schema}, `query failed: Could not convert string 'name <0> "q" é' to INT32`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.BootstrapServers = c.addr
			if cfg.TopicExpr == "" {
				cfg.Topic = "out"
			}
			s := newSink(t, cfg, kafka.WithSinkAllocator(mem))
			ctx := testCtx(t)
			rec := arrowtest.Batch(mem, 0, 4)
			defer rec.Release()
			// The row path's error, for the same rows.
			rw, err := s.OpenWriter(ctx, sinkKey("j", 0, "p"))
			if err != nil {
				t.Fatal(err)
			}
			rowErr := rw.Write(ctx, arrowtest.Rows(t, rec))
			_ = rw.Abort()
			aw, err := s.OpenWriter(ctx, sinkKey("j", 0, "p"))
			if err != nil {
				t.Fatal(err)
			}
			defer aw.Abort()
			err = aw.(connectors.ArrowWriter).WriteArrow(ctx, rec)
			if err == nil || !connectors.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("WriteArrow = %v, want a permanent error containing %q", err, tt.want)
			}
			if rowErr == nil || rowErr.Error() != err.Error() {
				t.Errorf("WriteArrow's error\n%v\nis not Write's\n%v", err, rowErr)
			}
		})
	}
}

// TestSinkRecordTimestamps: the records of one write, by either path, carry
// one timestamp (CreateTime), the time of that write.
func TestSinkRecordTimestamps(t *testing.T) {
	c := newCluster(t, 1, "ts")
	mem := arrowtest.Mem(t)
	s := newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "ts", Key: "key", Value: "value"}, kafka.WithSinkAllocator(mem))
	ctx := testCtx(t)
	w, err := s.OpenWriter(ctx, sinkKey("j", 0, "p/0"))
	if err != nil {
		t.Fatal(err)
	}
	var spans [2][2]time.Time
	for i, arrowPath := range []bool{true, false} {
		rec := kafkaBatch(t, mem)
		spans[i][0] = time.Now().Truncate(time.Millisecond)
		if arrowPath {
			err = w.(connectors.ArrowWriter).WriteArrow(ctx, rec)
		} else {
			err = w.Write(ctx, arrowtest.Rows(t, rec))
		}
		spans[i][1] = time.Now()
		rec.Release()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // the second write's records get another millisecond
	}
	if err := w.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var stamps []time.Time
	c.eachRecord("ts", false, func(r *kgo.Record) { stamps = append(stamps, r.Timestamp) })
	half := len(stamps) / 2
	if half == 0 || len(stamps) != 2*half {
		t.Fatalf("%d records", len(stamps))
	}
	for i, write := range [][]time.Time{stamps[:half], stamps[half:]} {
		for _, ts := range write {
			if !ts.Equal(write[0]) || ts.Before(spans[i][0]) || ts.After(spans[i][1]) {
				t.Fatalf("write %d: timestamps %v, want one within [%v, %v]", i, write, spans[i][0], spans[i][1])
			}
		}
	}
	if stamps[0].Equal(stamps[half]) {
		t.Fatalf("both writes stamped %v", stamps[0])
	}
}

// TestSinkReadsColumns: with column options the sink names the columns it
// reads (and offset and sequenceNumber, for its errors); without a value
// option or with an expression it reads every column.
func TestSinkReadsColumns(t *testing.T) {
	tests := []struct {
		name string
		cfg  kafka.SinkConfig
		want string // comma-separated; "!" for every column
	}{
		{"key and value", kafka.SinkConfig{Key: "key", Value: "value"}, "key,value,offset,sequenceNumber"},
		{"with partition and a header", kafka.SinkConfig{Value: "value", Partition: "partition", Headers: map[string]string{"t": "topic"}},
			"value,topic,partition,offset,sequenceNumber"},
		{"default value", kafka.SinkConfig{Key: "key"}, "!"},
		{"an expression", kafka.SinkConfig{Key: "key", Value: "upper(decode(value))"}, "!"},
		{"unknown rows", kafka.SinkConfig{Key: "key", Value: "value", Schema: nil}, "!"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.BootstrapServers, cfg.Topic = "127.0.0.1:9", "out"
			if tc.name != "unknown rows" {
				cfg.Schema = columnar.KafkaSchema(true)
			}
			names, ok := newSink(t, cfg).ReadsColumns()
			got := strings.Join(names, ",")
			if !ok {
				got = "!"
			}
			if got != tc.want {
				t.Errorf("ReadsColumns() = %q, want %q", got, tc.want)
			}
		})
	}
}
