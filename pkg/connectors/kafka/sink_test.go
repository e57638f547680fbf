package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kafka"
	"github.com/sluicehq/sluice/pkg/stream"
)

// rowSchema is the schema of the rows TestSinkProducesRecords writes.
var rowSchema = arrow.NewSchema([]arrow.Field{
	{Name: "branch", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "currency", Type: arrow.BinaryTypes.String, Nullable: true},
	{Name: "amount", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "ratio", Type: arrow.PrimitiveTypes.Float64, Nullable: true},
	{Name: "at", Type: &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}, Nullable: true},
	{Name: "offset", Type: arrow.PrimitiveTypes.Int64, Nullable: true},
	{Name: "trace", Type: arrow.BinaryTypes.String, Nullable: true},
}, nil)

func TestSinkConfigValidate(t *testing.T) {
	ok := kafka.SinkConfig{BootstrapServers: "127.0.0.1:9092", Topic: "out", Schema: rowSchema}
	with := func(f func(*kafka.SinkConfig)) kafka.SinkConfig {
		c := ok
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  kafka.SinkConfig
		want string
	}{
		{"minimal", ok, ""},
		{"expressions", with(func(c *kafka.SinkConfig) {
			c.Topic, c.TopicExpr = "", `'out-' || lower(currency)`
			c.Key, c.Value, c.Partition = "branch", `CAST(amount AS STRING)`, "CAST(amount AS INT) % 3"
			c.Headers = map[string]string{"trace": "trace", "weird": `"offset"`}
		}), ""},
		{"expressions without a schema", with(func(c *kafka.SinkConfig) {
			c.Schema = nil
			c.Key, c.Value = "nope", "anything(at_all)"
		}), ""},
		{"transactional properties", with(func(c *kafka.SinkConfig) {
			c.Transactional = true
			c.Properties = map[string]string{"transaction.timeout.ms": "30000", "sluice.commits.topic": "commits", "kafka.compression.type": "zstd", "linger.ms": "5"}
		}), ""},
		{"no brokers", with(func(c *kafka.SinkConfig) { c.BootstrapServers = "" }), "sink.kafka.bootstrapServers: required"},
		{"bad broker", with(func(c *kafka.SinkConfig) { c.BootstrapServers = "nohost" }), `sink.kafka.bootstrapServers: "nohost" is not host:port`},
		{"no topic", with(func(c *kafka.SinkConfig) { c.Topic = "" }), "sink.kafka.topic: required (or topicExpr)"},
		{"both topics", with(func(c *kafka.SinkConfig) { c.TopicExpr = `'x'` }), "sink.kafka.topic: set either topic or topicExpr"},
		{"bad topic", with(func(c *kafka.SinkConfig) { c.Topic = "a b" }), "sink.kafka.topic: topic \"a b\" may only contain"},
		{"bad topicExpr", with(func(c *kafka.SinkConfig) { c.Topic, c.TopicExpr = "", "1 +" }), "sink.kafka.topicExpr: position 3: syntax error"},
		{"topicExpr not a string", with(func(c *kafka.SinkConfig) { c.Topic, c.TopicExpr = "", "1 + 2" }), "sink.kafka.topicExpr: gives int32, want a string"},
		{"bad key", with(func(c *kafka.SinkConfig) { c.Key = "branch +" }), "sink.kafka.key: position 8: syntax error"},
		{"unknown column", with(func(c *kafka.SinkConfig) { c.Key = "upper(brnch)" }), `sink.kafka.key: position 6: unknown column: Referenced column "brnch" not found`},
		{"unknown function", with(func(c *kafka.SinkConfig) { c.Value = "amount + nope(1)" }), "sink.kafka.value: position 9: unknown function"},
		{"bad value", with(func(c *kafka.SinkConfig) { c.Value = "(" }), "sink.kafka.value: position 1: a '(' is not closed"},
		{"two statements", with(func(c *kafka.SinkConfig) { c.Value = "1; DROP TABLE x" }), "sink.kafka.value: position 1: ';' ends a statement"},
		{"aggregate", with(func(c *kafka.SinkConfig) { c.Key = "count(*)" }), "sink.kafka.key: aggregates the rows"},
		{"bad header", with(func(c *kafka.SinkConfig) { c.Headers = map[string]string{"h": "1 +"} }), "sink.kafka.headers.h: position 3: syntax error"},
		{"empty header", with(func(c *kafka.SinkConfig) { c.Headers = map[string]string{"h": ""} }), "sink.kafka.headers.h: empty expression"},
		{"partition not an int", with(func(c *kafka.SinkConfig) { c.Partition = `'3'` }), "sink.kafka.partition: gives utf8, want an integer"},
		{"partition column not an int", with(func(c *kafka.SinkConfig) { c.Partition = `branch` }), "sink.kafka.partition: gives utf8, want an integer"},
		{"old CEL cast", with(func(c *kafka.SinkConfig) { c.Key = "string(amount)" }), "sink.kafka.key: position 0: unknown function"},
		{"old CEL cast hint", with(func(c *kafka.SinkConfig) { c.Key = "string(amount)" }), "no longer CEL: string( → CAST(x AS STRING)"},
		{"old CEL row", with(func(c *kafka.SinkConfig) { c.Key = "row.branch" }), "row. → the column's name"},
		{"old CEL string", with(func(c *kafka.SinkConfig) { c.Value = `"id-" + branch` }), `sink.kafka.value: position 0: unknown column`},
		{"old CEL ternary", with(func(c *kafka.SinkConfig) { c.Partition = `amount < 0 ? 1 : 0` }), `sink.kafka.partition: position 11: syntax error`},
		{"old CEL and", with(func(c *kafka.SinkConfig) { c.Value = `amount > 0 && ratio > 1` }), `&& → AND`},
		{"unknown property", with(func(c *kafka.SinkConfig) { c.Properties = map[string]string{"acks": "1"} }), `sink.kafka.properties: unknown property "acks"`},
		{"consumer property", with(func(c *kafka.SinkConfig) { c.Properties = map[string]string{"isolation.level": "read_committed"} }), "sink.kafka.properties.isolation.level: is a consumer property"},
		{"bad compression", with(func(c *kafka.SinkConfig) { c.Properties = map[string]string{"compression.type": "brotli"} }), `sink.kafka.properties.compression.type: "brotli" is not one of`},
		{"bad linger", with(func(c *kafka.SinkConfig) { c.Properties = map[string]string{"linger.ms": "-1"} }), "sink.kafka.properties.linger.ms: want a number"},
		{"txn timeout without transactions", with(func(c *kafka.SinkConfig) { c.Properties = map[string]string{"transaction.timeout.ms": "1000"} }), "only applies with transactional: true"},
		{"bad txn timeout", with(func(c *kafka.SinkConfig) {
			c.Transactional, c.Properties = true, map[string]string{"transaction.timeout.ms": "0"}
		}), "sink.kafka.properties.transaction.timeout.ms: want a positive number"},
		{"sasl without password", with(func(c *kafka.SinkConfig) {
			c.Properties = map[string]string{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "u"}
		}), "sink.kafka.properties.sasl.password: required with security.protocol SASL_SSL"},
		{"topic is the commits topic", with(func(c *kafka.SinkConfig) { c.Topic = kafka.DefaultCommitsTopic }), "is the commits topic"},
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

func newSink(t testing.TB, cfg kafka.SinkConfig, opts ...kafka.SinkOption) *kafka.Sink {
	t.Helper()
	s, err := kafka.NewSink(cfg, opts...)
	if err != nil {
		t.Fatalf("NewSink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func sinkKey(job string, batch int64, part string, columns ...string) connectors.WriteKey {
	return connectors.WriteKey{Job: stream.JobID(job), Batch: stream.BatchID(batch), Part: part, Columns: columns}
}

// attempt runs one writer: open, write, then commit (or abort).
func attempt(t *testing.T, s *kafka.Sink, key connectors.WriteKey, rows []stream.Row, commit bool) error {
	t.Helper()
	ctx := testCtx(t)
	w, err := s.OpenWriter(ctx, key)
	if err != nil {
		return err
	}
	if err := w.Write(ctx, rows); err != nil {
		_ = w.Abort()
		return err
	}
	if !commit {
		return w.Abort()
	}
	return w.Commit(ctx)
}

// consumed is a record as a test reads it back.
type consumed struct {
	Partition int32
	Key       string
	Value     string
	Headers   string
}

// readTopic reads every record of topic up to its end. With committed it
// reads read_committed up to the last stable offset, as an exactly-once
// consumer would; otherwise read_uncommitted up to the high watermark.
func (c *cluster) readTopic(topic string, committed bool) []consumed {
	c.t.Helper()
	var out []consumed
	c.eachRecord(topic, committed, func(r *kgo.Record) {
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key+"="+string(h.Value))
		}
		out = append(out, consumed{Partition: r.Partition, Key: string(r.Key), Value: string(r.Value), Headers: strings.Join(hs, ",")})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Partition < out[j].Partition })
	return out
}

// eachRecord hands fn every data record of topic up to its end, in fetch
// order (read_committed up to the last stable offset with committed).
func (c *cluster) eachRecord(topic string, committed bool, fn func(*kgo.Record)) {
	c.t.Helper()
	ctx := testCtx(c.t)
	var ends kadm.ListedOffsets
	var err error
	if committed {
		ends, err = c.adm.ListCommittedOffsets(ctx, topic)
	} else {
		ends, err = c.adm.ListEndOffsets(ctx, topic)
	}
	if err != nil {
		c.t.Fatalf("list offsets of %s: %v", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	opts := []kgo.Opt{kgo.SeedBrokers(c.addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords()}
	if committed {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		c.t.Fatal(err)
	}
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			c.t.Fatalf("reading %s: %v (still waiting for %v)", topic, err, want)
		}
		fs.EachError(func(_ string, _ int32, err error) { c.t.Fatalf("fetch %s: %v", topic, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := want[r.Partition]; ok && r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if !r.Attrs.IsControl() {
				fn(r)
			}
		})
	}
}

func TestSinkProducesRecords(t *testing.T) {
	c := newCluster(t, 3, "out")
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	rows := []stream.Row{
		{"branch": "SPB", "currency": "RUB", "amount": int64(5), "ratio": 2.0, "at": at, "offset": int64(10)},
		{"branch": "Kazan", "currency": "USD", "amount": int64(-7), "ratio": 0.25, "at": at, "offset": int64(11), "trace": "t-1"},
	}

	t.Run("default value is the row as JSON", func(t *testing.T) {
		s := newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Partition: "0", Schema: rowSchema})
		if err := attempt(t, s, sinkKey("j", 0, "transaction/0", "branch", "amount"), rows[:1], true); err != nil {
			t.Fatal(err)
		}
		got := c.readTopic("out", false)
		want := []consumed{{Partition: 0, Value: `{"branch":"SPB","amount":5,"at":"2026-05-01T12:00:00Z","currency":"RUB","offset":10,"ratio":2.0}`}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("records (-want +got):\n%s", diff)
		}
	})

	t.Run("key, value, headers, partition and topic from expressions", func(t *testing.T) {
		s := newSink(t, kafka.SinkConfig{
			BootstrapServers: c.addr, TopicExpr: `'fx-' || lower(currency)`,
			Key: "branch", Value: `to_json({'amount': amount, 'ratio': ratio})`,
			Headers:   map[string]string{"trace": "trace", "currency": "currency"},
			Partition: "CASE WHEN amount < 0 THEN 1 ELSE 0 END",
			Schema:    rowSchema,
		})
		c.adm.CreateTopic(testCtx(t), 2, 1, nil, "fx-rub")
		c.adm.CreateTopic(testCtx(t), 2, 1, nil, "fx-usd")
		if err := attempt(t, s, sinkKey("j", 0, "transaction/0"), rows, true); err != nil {
			t.Fatal(err)
		}
		c.refreshProducer()
		if diff := cmp.Diff([]consumed{{Partition: 0, Key: "SPB", Value: `{"amount":5,"ratio":2.0}`, Headers: "currency=RUB"}}, c.readTopic("fx-rub", false)); diff != "" {
			t.Fatalf("fx-rub (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]consumed{{Partition: 1, Key: "Kazan", Value: `{"amount":-7,"ratio":0.25}`, Headers: "currency=USD,trace=t-1"}}, c.readTopic("fx-usd", false)); diff != "" {
			t.Fatalf("fx-usd (-want +got):\n%s", diff)
		}
	})

	t.Run("an expression failing on a row fails the task permanently", func(t *testing.T) {
		s := newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Partition: "CAST(amount AS INT) - 6", Schema: rowSchema})
		err := attempt(t, s, sinkKey("j", 0, "p"), rows[:1], true)
		if err == nil || !connectors.IsPermanent(err) || !strings.Contains(err.Error(), `sink.kafka.partition at the row of offset 10: gave -1, want a partition number`) {
			t.Fatalf("err = %v, want a permanent error naming the partition expression and the offset", err)
		}
		s = newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Key: "CAST(branch AS INT)", Schema: rowSchema})
		err = attempt(t, s, sinkKey("j", 0, "p"), rows[:1], true)
		if err == nil || !connectors.IsPermanent(err) || !strings.Contains(err.Error(), `Could not convert string 'SPB' to INT32`) {
			t.Fatalf("err = %v, want a permanent error of the cast", err)
		}
	})

	t.Run("an expression needs the rows' schema", func(t *testing.T) {
		_, err := kafka.NewSink(kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Key: "upper(branch)"})
		if err == nil || !strings.Contains(err.Error(), "sink.kafka.schema: is required") {
			t.Fatalf("NewSink = %v, want the schema required", err)
		}
	})

	t.Run("unreachable brokers", func(t *testing.T) {
		for _, txn := range []bool{false, true} {
			s := newSink(t, kafka.SinkConfig{BootstrapServers: "127.0.0.1:1", Topic: "out", Transactional: txn})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			w, err := s.OpenWriter(ctx, sinkKey("j", 0, "p"))
			if err == nil {
				if err = w.Write(ctx, rows[:1]); err == nil {
					err = w.Commit(ctx)
				}
			}
			cancel()
			if err == nil || !strings.Contains(err.Error(), "are bootstrapServers (127.0.0.1:1) right and reachable?") {
				t.Fatalf("transactional %v: err = %v, want a hint about the brokers", txn, err)
			}
		}
	})
}

// TestSinkTransactional runs the transactional sink against kfake and reads
// the output as a read_committed consumer would.
func TestSinkTransactional(t *testing.T) {
	c := newCluster(t, 2, "out")
	rows := func(from, to int) []stream.Row {
		var out []stream.Row
		for i := from; i < to; i++ {
			out = append(out, stream.Row{"id": int64(i)})
		}
		return out
	}
	ids := func(recs []consumed) []int {
		var out []int
		for _, r := range recs {
			var m map[string]int
			if err := json.Unmarshal([]byte(r.Value), &m); err != nil {
				t.Fatalf("value %q: %v", r.Value, err)
			}
			out = append(out, m["id"])
		}
		sort.Ints(out)
		return out
	}
	seq := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	logger, logs := logBuffer()
	s := newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Key: "CAST(id AS STRING)", Transactional: true,
		Schema: arrow.NewSchema([]arrow.Field{{Name: "id", Type: arrow.PrimitiveTypes.Int64}}, nil)},
		kafka.WithSinkLogger(logger))

	// Batch 0 on two parts; part b's first attempt aborts and is retried.
	if err := attempt(t, s, sinkKey("job", 0, "in/0"), rows(0, 10), true); err != nil {
		t.Fatal(err)
	}
	if err := attempt(t, s, sinkKey("job", 0, "in/1"), rows(10, 20), false); err != nil {
		t.Fatal(err)
	}
	if err := attempt(t, s, sinkKey("job", 0, "in/1"), rows(10, 20), true); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(seq(0, 20), ids(c.readTopic("out", true))); diff != "" {
		t.Fatalf("read_committed after batch 0 (-want +got):\n%s", diff)
	}

	t.Run("a replayed attempt writes nothing", func(t *testing.T) {
		if err := attempt(t, s, sinkKey("job", 0, "in/0"), rows(0, 10), true); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(seq(0, 20), ids(c.readTopic("out", true))); diff != "" {
			t.Fatalf("read_committed after the replay (-want +got):\n%s", diff)
		}
		if !strings.Contains(logs.String(), "batch already committed") {
			t.Fatalf("no log line about the skipped replay: %s", logs.String())
		}
	})

	t.Run("a new attempt fences a zombie", func(t *testing.T) {
		ctx := testCtx(t)
		zombie, err := s.OpenWriter(ctx, sinkKey("job", 1, "in/0"))
		if err != nil {
			t.Fatal(err)
		}
		if err := zombie.Write(ctx, rows(100, 105)); err != nil {
			t.Fatal(err)
		}
		// The retry starts while the zombie's transaction is open.
		if err := attempt(t, s, sinkKey("job", 1, "in/0"), rows(100, 105), true); err != nil {
			t.Fatal(err)
		}
		if err := zombie.Commit(ctx); err == nil {
			t.Fatal("the fenced zombie committed")
		}
		want := append(seq(0, 20), seq(100, 105)...)
		if diff := cmp.Diff(want, ids(c.readTopic("out", true))); diff != "" {
			t.Fatalf("read_committed (-want +got):\n%s", diff)
		}
	})

	t.Run("a zombie opening after the commit writes nothing", func(t *testing.T) {
		if err := attempt(t, s, sinkKey("job", 1, "in/0"), rows(100, 105), true); err != nil {
			t.Fatal(err)
		}
		if err := attempt(t, s, sinkKey("job", 0, "in/0"), rows(0, 10), true); err != nil { // an older batch
			t.Fatal(err)
		}
		want := append(seq(0, 20), seq(100, 105)...)
		if diff := cmp.Diff(want, ids(c.readTopic("out", true))); diff != "" {
			t.Fatalf("read_committed (-want +got):\n%s", diff)
		}
		if !strings.Contains(logs.String(), "holds a later batch") {
			t.Fatalf("no warning about the later batch: %s", logs.String())
		}
	})

	t.Run("the dead-letter sink has its own markers", func(t *testing.T) {
		dead := newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Transactional: true, Name: "deadLetter"})
		if err := attempt(t, dead, sinkKey("job", 1, "in/0"), rows(200, 201), true); err != nil {
			t.Fatal(err)
		}
		want := append(append(seq(0, 20), seq(100, 105)...), 200)
		if diff := cmp.Diff(want, ids(c.readTopic("out", true))); diff != "" {
			t.Fatalf("read_committed (-want +got):\n%s", diff)
		}
	})
}

// TestSinkMarkerBehindOpenTransaction pins the reason the marker read waits
// for the last stable offset: a marker committed after another key's
// transaction began on the same commits partition is invisible to
// read_committed readers until that transaction ends, and a replay that read
// too early would write its batch twice.
func TestSinkMarkerBehindOpenTransaction(t *testing.T) {
	c := newCluster(t, 1, "out")
	ctx := testCtx(t)
	// One commits partition, so every key shares it.
	if _, err := c.adm.CreateTopic(ctx, 1, 1, nil, "commits"); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Transactional: true,
		Properties: map[string]string{"sluice.commits.topic": "commits"}})

	// Batch 0 of part p opens (reading the marker) before another
	// writer's transaction starts on the commits partition, and commits
	// behind it.
	first, err := s.OpenWriter(ctx, sinkKey("job", 0, "p"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := kgo.NewClient(kgo.SeedBrokers(c.addr), kgo.TransactionalID("other"),
		kgo.TransactionTimeout(5*time.Minute), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := other.ProduceSync(ctx, &kgo.Record{Topic: "commits", Key: []byte("other"), Value: []byte(`{"batch":0}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	row := []stream.Row{{"id": int64(1)}}
	if err := first.Write(ctx, row); err != nil {
		t.Fatal(err)
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// A replay must wait until the other transaction ends, then skip.
	replayed := make(chan error, 1)
	go func() { replayed <- attempt(t, s, sinkKey("job", 0, "p"), row, true) }()
	select {
	case err := <-replayed:
		t.Fatalf("the replay finished (%v) while the marker was still hidden behind an open transaction", err)
	case <-time.After(time.Second):
	}
	if err := other.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if err := <-replayed; err != nil {
		t.Fatal(err)
	}
	if n := len(c.readTopic("out", true)); n != 1 {
		t.Fatalf("read_committed sees %d records, want 1", n)
	}
}

func TestSinkTransactionalCreatesCommitsTopic(t *testing.T) {
	c := newCluster(t, 1, "out")
	s := newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: "out", Transactional: true})
	if err := attempt(t, s, sinkKey("job", 0, "p"), []stream.Row{{"id": int64(1)}}, true); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	td, err := c.adm.ListTopics(ctx, kafka.DefaultCommitsTopic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(td[kafka.DefaultCommitsTopic].Partitions); n != 8 {
		t.Fatalf("commits topic has %d partitions, want 8", n)
	}
	cfgs, err := c.adm.DescribeTopicConfigs(ctx, kafka.DefaultCommitsTopic)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := cfgs.On(kafka.DefaultCommitsTopic, nil)
	if err != nil {
		t.Fatal(err)
	}
	var policy string
	for _, cfg := range rc.Configs {
		if cfg.Key == "cleanup.policy" && cfg.Value != nil {
			policy = *cfg.Value
		}
	}
	if policy != "compact" {
		t.Fatalf("commits topic cleanup.policy = %q, want compact", policy)
	}
	if got := kafka.TransactionalID("job", "sink", "t/0#1"); got != "sluice/job/sink/t/0#1" {
		t.Fatalf("TransactionalID = %q", got)
	}
}

// commitEnd runs one writer that commits through CommitEnd.
func commitEnd(t *testing.T, s *kafka.Sink, key connectors.WriteKey, end string, rows []stream.Row) (stream.Position, error) {
	t.Helper()
	ctx := testCtx(t)
	w, err := s.OpenWriter(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := w.Write(ctx, rows); err != nil {
		_ = w.Abort()
		return nil, err
	}
	ec, ok := w.(connectors.EndCommitter)
	if !ok {
		t.Fatalf("%T does not implement connectors.EndCommitter", w)
	}
	return ec.CommitEnd(ctx, stream.Position(end))
}

// TestSinkTransactionalEndsAndIncarnations checks what commit markers hold
// besides the batch: the task end CommitEnd stored, which a replay of the
// same batch reports instead of its own, and the job's incarnation, so that
// a job deleted and submitted again under the same name is not taken for a
// replay of the old one. Markers of sink versions before either was stored
// still count as commits of jobs without an incarnation.
func TestSinkTransactionalEndsAndIncarnations(t *testing.T) {
	c := newCluster(t, 1, "seed")
	ids := func(from, to int) []stream.Row {
		var out []stream.Row
		for i := from; i < to; i++ {
			out = append(out, stream.Row{"id": int64(i)})
		}
		return out
	}
	key := func(incarnation string, batch int64) connectors.WriteKey {
		k := sinkKey("job", batch, "s-0")
		k.Incarnation = incarnation
		return k
	}
	type step struct {
		key     connectors.WriteKey
		end     string
		rows    []stream.Row
		wantEnd string // what CommitEnd returns
		want    int    // records a read_committed consumer sees afterwards
	}
	tests := []struct {
		name string
		// legacy is the value of a marker of the first layout written
		// before the steps ("" for none).
		legacy string
		steps  []step
	}{
		{
			name: "a replay reports the end the first attempt stored",
			steps: []step{
				{key: key("inc1", 0), end: "e0", rows: ids(0, 3), wantEnd: "e0", want: 3},
				// It read further (an open-ended Kinesis range): its
				// records are dropped and the stored end is the task's.
				{key: key("inc1", 0), end: "e0-further", rows: ids(0, 5), wantEnd: "e0", want: 3},
				{key: key("inc1", 1), end: "e1", rows: ids(3, 5), wantEnd: "e1", want: 5},
			},
		},
		{
			name: "a zombie of an earlier batch keeps its own end",
			steps: []step{
				{key: key("inc1", 5), end: "e5", rows: ids(0, 2), wantEnd: "e5", want: 2},
				{key: key("inc1", 4), end: "e4", rows: ids(0, 2), wantEnd: "e4", want: 2},
			},
		},
		{
			name: "a re-created job is not taken for a replay of the old one",
			steps: []step{
				{key: key("old", 7), end: "old7", rows: ids(0, 2), wantEnd: "old7", want: 2},
				{key: key("new", 0), end: "new0", rows: ids(2, 5), wantEnd: "new0", want: 5},
				{key: key("new", 0), end: "new0-again", rows: ids(2, 5), wantEnd: "new0", want: 5},
				{key: key("new", 7), end: "new7", rows: ids(5, 6), wantEnd: "new7", want: 6},
			},
		},
		{
			name:   "a marker of the first layout",
			legacy: `{"job":"job","sink":"sink","part":"s-0","batch":3,"records":2}`,
			steps: []step{
				// A job without an incarnation sees its own commit; no
				// end was stored, so it reports its own.
				{key: key("", 3), end: "e3", rows: ids(0, 2), wantEnd: "e3", want: 0},
				{key: key("inc", 0), end: "e0", rows: ids(0, 2), wantEnd: "e0", want: 2},
			},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			out, commits := fmt.Sprintf("out%d", i), fmt.Sprintf("commits%d", i)
			for _, topic := range []string{out, commits} {
				if _, err := c.adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
					t.Fatal(err)
				}
			}
			if tt.legacy != "" {
				if err := c.cl.ProduceSync(ctx, &kgo.Record{Topic: commits, Key: []byte("job/sink/s-0"), Value: []byte(tt.legacy)}).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
			s := newSink(t, kafka.SinkConfig{BootstrapServers: c.addr, Topic: out, Transactional: true,
				Properties: map[string]string{"sluice.commits.topic": commits}})
			for n, st := range tt.steps {
				got, err := commitEnd(t, s, st.key, st.end, st.rows)
				if err != nil {
					t.Fatalf("step %d: %v", n+1, err)
				}
				if string(got) != st.wantEnd {
					t.Fatalf("step %d (%+v): CommitEnd = %q, want %q", n+1, st.key, got, st.wantEnd)
				}
				if seen := len(c.readTopic(out, true)); seen != st.want {
					t.Fatalf("after step %d read_committed sees %d records, want %d", n+1, seen, st.want)
				}
			}
		})
	}
}
