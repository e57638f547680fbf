package kinesis

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/stream"
)

// fakeKinesis speaks just enough of the Kinesis JSON protocol for one
// shard: GetShardIterator, GetRecords and PutRecords, with scripted
// failures. It is for what the emulator cannot do: throttle, expire
// iterators, fail single PutRecords entries.
type fakeKinesis struct {
	t   *testing.T
	srv *httptest.Server

	mu      sync.Mutex
	records []string // data of the shard's records; sequence number = index+1
	// fail, when set, may answer a call instead of the normal handler: it
	// gets the operation and the call's number (from 1, per operation) and
	// returns an error type ("" = no failure) and HTTP status.
	fail      func(op string, n int) (errType string, status int)
	calls     map[string]int
	iterators []map[string]any // GetShardIterator requests
	putCalls  [][]string       // data of each PutRecords call
	accepted  []string         // data PutRecords accepted
	failEntry func(call, i int) bool
	limits    []int // Limit of each GetRecords call
}

func newFakeKinesis(t *testing.T) *fakeKinesis {
	f := &fakeKinesis{t: t, calls: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeKinesis) config() Config {
	return Config{StreamName: "s", Endpoint: f.srv.URL, Region: "us-east-1", AWSAccessKey: "k", AWSSecretKey: "s",
		InitialPosition: "trim_horizon", FailOnDataLoss: true}
}

func (f *fakeKinesis) serve(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	body, _ := io.ReadAll(r.Body)
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	if op == "GetRecords" {
		f.limits = append(f.limits, int(in["Limit"].(float64)))
	}
	if f.fail != nil {
		if typ, status := f.fail(op, f.calls[op]); typ != "" || status != 0 {
			w.Header().Set("X-Amzn-ErrorType", typ)
			w.WriteHeader(status)
			if typ != "" {
				fmt.Fprintf(w, `{"__type":%q,"message":"scripted failure"}`, typ)
			}
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch op {
	case "GetShardIterator":
		f.iterators = append(f.iterators, in)
		start := 0
		switch in["ShardIteratorType"] {
		case "AFTER_SEQUENCE_NUMBER":
			n, _ := strconv.Atoi(in["StartingSequenceNumber"].(string))
			start = n
		case "AT_SEQUENCE_NUMBER":
			n, _ := strconv.Atoi(in["StartingSequenceNumber"].(string))
			start = n - 1
		}
		fmt.Fprintf(w, `{"ShardIterator":"it-%d"}`, start)
	case "GetRecords":
		from, _ := strconv.Atoi(strings.TrimPrefix(in["ShardIterator"].(string), "it-"))
		limit := int(in["Limit"].(float64))
		to := min(from+limit, len(f.records))
		type rec struct {
			SequenceNumber              string
			Data                        []byte
			PartitionKey                string
			ApproximateArrivalTimestamp float64
		}
		out := struct {
			Records            []rec
			NextShardIterator  string
			MillisBehindLatest int64
		}{Records: []rec{}, NextShardIterator: fmt.Sprintf("it-%d", to), MillisBehindLatest: int64(len(f.records)-to) * 1000}
		for i := from; i < to; i++ {
			out.Records = append(out.Records, rec{SequenceNumber: strconv.Itoa(i + 1), Data: []byte(f.records[i]), PartitionKey: "k",
				ApproximateArrivalTimestamp: float64(time.Now().Unix())})
		}
		_ = json.NewEncoder(w).Encode(out)
	case "PutRecords":
		var req struct {
			Records []struct{ Data []byte }
		}
		_ = json.Unmarshal(body, &req)
		call := len(f.putCalls) + 1
		var datas []string
		type res struct {
			SequenceNumber, ShardId string `json:",omitempty"`
			ErrorCode, ErrorMessage string `json:",omitempty"`
		}
		var out struct {
			FailedRecordCount int
			Records           []res
		}
		for i, e := range req.Records {
			datas = append(datas, string(e.Data))
			if f.failEntry != nil && f.failEntry(call, i) {
				out.FailedRecordCount++
				out.Records = append(out.Records, res{ErrorCode: "ProvisionedThroughputExceededException", ErrorMessage: "Rate exceeded"})
				continue
			}
			f.accepted = append(f.accepted, string(e.Data))
			out.Records = append(out.Records, res{SequenceNumber: strconv.Itoa(len(f.accepted)), ShardId: "shardId-000000000000"})
		}
		f.putCalls = append(f.putCalls, datas)
		_ = json.NewEncoder(w).Encode(out)
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"InvalidArgumentException","message":"fake does not do %s"}`, op)
	}
}

// sleeps records the sleeps of the code under test and advances a fake
// clock by them, so back-off is checked without waiting.
type sleeps struct {
	clock fakeClock
	mu    sync.Mutex
	list  []time.Duration
}

func newSleeps() *sleeps { return &sleeps{clock: fakeClock{t: time.Unix(1_700_000_000, 0)}} }

func (s *sleeps) option() Option {
	return withClock(s.clock.now, func(ctx context.Context, d time.Duration) error {
		s.mu.Lock()
		s.list = append(s.list, d)
		s.mu.Unlock()
		s.clock.advance(d)
		return ctx.Err()
	})
}

// logCounter counts log messages containing a substring.
type logCounter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCounter) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// TestThrottlingBacksOff: GetRecords answered with
// ProvisionedThroughputExceededException three times halves the shard's
// rate and records per call each time, waits a growing back-off before
// each retry, logs the episode once, and recovers gradually; an expired
// iterator is renewed after the last record read; a 500 with an empty body
// (kinesis-mock's answer to a bad iterator) is retried.
func TestThrottlingBacksOff(t *testing.T) {
	f := newFakeKinesis(t)
	for i := range 40 {
		f.records = append(f.records, fmt.Sprintf("r%d", i))
	}
	f.fail = func(op string, n int) (string, int) {
		switch {
		case op == "GetRecords" && n <= 3:
			return "ProvisionedThroughputExceededException", 400
		case op == "GetRecords" && n == 5:
			return "ExpiredIteratorException", 400
		case op == "GetRecords" && n == 7:
			return "", 500
		}
		return "", 0
	}
	logs := &logCounter{}
	sl := newSleeps()
	cfg := f.config()
	cfg.MaxRecordsPerFetch = 16
	cfg.MaxFetchDuration = "1h"
	pool, err := NewReaderPool(cfg, sl.option(), withBackoff(100*time.Millisecond, 10*time.Second),
		WithLogger(slog.New(slog.NewTextHandler(logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	var got []stream.Record
	from := position{Start: startTrimHorizon}.encode()
	for i := 0; i < 20; i++ {
		recs, end := readRange(t, pool, stream.Range{Partition: "s/shardId-000000000000", From: from})
		got = append(got, recs...)
		from = end
		if len(got) == 40 {
			break
		}
	}
	if diff := cmp.Diff(f.records, datas(got)); diff != "" {
		t.Fatalf("records (-want +got):\n%s", diff)
	}

	st := pool.limiterStats(Shard{Stream: "s", ShardID: "shardId-000000000000"})
	if st.Throttled != 3 || st.Episodes != 1 {
		t.Fatalf("limiter %+v, want 3 throttled calls in 1 episode", st)
	}
	if n := logs.count("shard throttled"); n != 1 {
		t.Fatalf("throttling logged %d times, want once per episode:\n%s", n, logs.buf.String())
	}
	// Records per call: 16, halved to 8, 4, 2 by the throttles, then growing
	// again by a quarter (+1) per successful call (the fifth call, whose
	// iterator expired, is made again with the same limit).
	f.mu.Lock()
	defer f.mu.Unlock()
	if diff := cmp.Diff([]int{16, 8, 4, 2, 3, 3, 4}, f.limits[:7]); diff != "" {
		t.Fatalf("records per call (-want +got):\n%s\nall: %v", diff, f.limits)
	}
	var renewal map[string]any
	for _, it := range f.iterators {
		if it["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER" {
			renewal = it
		}
	}
	if renewal == nil {
		t.Fatalf("no iterator renewed after the last record; iterator calls: %v", f.iterators)
	}
	// Back-off before each throttled retry: full jitter in (0, 100ms·2^n].
	var backoffs []time.Duration
	for _, d := range sl.list {
		if d != 400*time.Millisecond {
			backoffs = append(backoffs, d)
		}
	}
	if len(backoffs) < 3 || backoffs[0] > 100*time.Millisecond || backoffs[1] > 200*time.Millisecond || backoffs[2] > 400*time.Millisecond {
		t.Fatalf("back-offs %v", backoffs)
	}
}

// TestLimiterRecovers: after an episode the rate and the records per call
// grow back to the maximum, and the recovery is logged.
func TestLimiterRecovers(t *testing.T) {
	logs := &logCounter{}
	o := defaultOptions()
	o.logger = slog.New(slog.NewTextHandler(logs, nil))
	l := newLimiter(1<<20, 200*time.Millisecond, 10000)
	now := time.Unix(0, 0)
	s := Shard{Stream: "s", ShardID: "x"}
	for range 4 {
		l.throttled(now, o, s)
	}
	if l.rate != (1<<20)/16 || l.lim != 625 {
		t.Fatalf("after 4 throttles: rate %v, limit %d", l.rate, l.lim)
	}
	for range 6 {
		l.throttled(now, o, s)
	}
	if l.rate != (1<<20)/64 || l.lim != 9 {
		t.Fatalf("the rate must not fall below 1/64 of the maximum: rate %v, limit %d", l.rate, l.lim)
	}
	calls := 0
	for l.episode {
		l.fetched(now, 1000, o.logger, s)
		calls++
		if calls > 100 {
			t.Fatal("never recovered")
		}
	}
	if l.rate != 1<<20 || l.lim != 10000 || calls < 10 {
		t.Fatalf("recovered in %d calls to rate %v, limit %d", calls, l.rate, l.lim)
	}
	if logs.count("shard throttled") != 1 || logs.count("recovered") != 1 {
		t.Fatalf("logs:\n%s", logs.buf.String())
	}
	// The next call waits n/rate, at least minFetchPeriod.
	l.fetched(now, 1<<20, o.logger, s)
	if d := l.next.Sub(now); d != time.Second {
		t.Fatalf("after 1 MiB at 1 MiB/s the next call waits %s", d)
	}
	l.fetched(now, 10, o.logger, s)
	if d := l.next.Sub(now); d != 200*time.Millisecond {
		t.Fatalf("after 10 bytes the next call waits %s, want minFetchPeriod", d)
	}
}
