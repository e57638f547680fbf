package kinesis

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/stream"
)

// slowConsumerService speaks the Kinesis JSON protocol for what an efo
// Source's Plan calls: DescribeStreamSummary, ListShards and the consumer
// calls. RegisterStreamConsumer does not answer until release is closed,
// like a busy service; the consumer is then ACTIVE.
type slowConsumerService struct {
	srv         *httptest.Server
	registering chan struct{} // closed when RegisterStreamConsumer arrived
	release     chan struct{} // closed by answer: RegisterStreamConsumer answers
	releaseOnce sync.Once

	mu         sync.Mutex
	calls      map[string]int
	registered bool
	cutOff     int // RegisterStreamConsumer requests the client gave up on
}

const slowStreamARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"

func newSlowConsumerService(t *testing.T) *slowConsumerService {
	f := &slowConsumerService{registering: make(chan struct{}), release: make(chan struct{}), calls: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		f.answer()
		f.srv.Close()
	})
	return f
}

// answer lets RegisterStreamConsumer answer.
func (f *slowConsumerService) answer() { f.releaseOnce.Do(func() { close(f.release) }) }

func (f *slowConsumerService) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *slowConsumerService) serve(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "Kinesis_20131202.")
	_, _ = io.Copy(io.Discard, r.Body)
	f.mu.Lock()
	f.calls[op]++
	n := f.calls[op]
	f.mu.Unlock()
	created := float64(time.Unix(1_700_000_000, 0).Unix())
	consumer := map[string]any{"ConsumerName": "sluice_j", "ConsumerARN": slowStreamARN + "/consumer/sluice_j:1",
		"ConsumerStatus": "ACTIVE", "ConsumerCreationTimestamp": created, "StreamARN": slowStreamARN}
	var out any
	switch op {
	case "DescribeStreamSummary":
		out = map[string]any{"StreamDescriptionSummary": map[string]any{"StreamName": "s", "StreamARN": slowStreamARN,
			"StreamStatus": "ACTIVE", "StreamCreationTimestamp": created, "RetentionPeriodHours": 24,
			"OpenShardCount": 1, "EnhancedMonitoring": []any{}}}
	case "ListShards":
		out = map[string]any{"Shards": []any{map[string]any{"ShardId": "shardId-000000000000",
			"HashKeyRange":        map[string]any{"StartingHashKey": "0", "EndingHashKey": "340282366920938463463374607431768211455"},
			"SequenceNumberRange": map[string]any{"StartingSequenceNumber": "1"}}}}
	case "DescribeStreamConsumer":
		f.mu.Lock()
		registered := f.registered
		f.mu.Unlock()
		if !registered {
			w.Header().Set("X-Amzn-ErrorType", "ResourceNotFoundException")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"__type":"ResourceNotFoundException","message":"consumer sluice_j not found"}`)
			return
		}
		out = map[string]any{"ConsumerDescription": consumer}
	case "RegisterStreamConsumer":
		if n == 1 {
			close(f.registering)
		}
		select {
		case <-f.release:
		case <-r.Context().Done():
			f.mu.Lock()
			f.cutOff++
			f.mu.Unlock()
			return
		}
		f.mu.Lock()
		f.registered = true
		f.mu.Unlock()
		consumer["ConsumerStatus"] = "CREATING"
		out = map[string]any{"Consumer": consumer}
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"InvalidArgumentException","message":"fake does not do %s"}`, op)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

// TestEFOPlanRidesOutSlowRegistration: a RegisterStreamConsumer that the
// service is slow to answer (longer than Plan's wait for the consumer) is
// never cut off by that wait. Plans meanwhile fail with a retryable
// "waiting for enhanced fan-out consumer" error that says the registration
// was sent and not answered yet; the one registration goes on across plans
// (not made again by each), and once it is answered and the consumer is
// ACTIVE, Plan succeeds. Nothing here depends on how fast the machine is:
// the registration answers only when the test says so.
func TestEFOPlanRidesOutSlowRegistration(t *testing.T) {
	f := newSlowConsumerService(t)
	cfg := Config{StreamName: "s", Endpoint: f.srv.URL, Region: "us-east-1", AWSAccessKey: "k", AWSSecretKey: "s",
		InitialPosition: "trim_horizon", ConsumerMode: "efo", JobName: "j"}
	src, err := NewSource(cfg, WithLogger(testLog(t)), withConsumerWait(20*time.Millisecond, time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	req := connectors.PlanRequest{Committed: map[stream.PartitionID]stream.Position{}}
	const waiting = `waiting for enhanced fan-out consumer sluice_j on stream "s" to become ACTIVE: `
	plan := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := src.Plan(ctx, req)
		if err != nil && (connectors.IsPermanent(err) || !strings.HasPrefix(err.Error(), waiting) ||
			strings.Contains(err.Error(), "deadline exceeded") || strings.Contains(err.Error(), "canceled")) {
			t.Fatalf("Plan = %v, want a retryable %q error saying what is awaited", err, waiting)
		}
		return err
	}

	// Plans before the registration arrived: whatever they waited for (the
	// stream's or the consumer's description), they said so.
	for done := false; !done; {
		if err := plan(); err == nil {
			t.Fatal("Plan succeeded before the consumer was registered")
		}
		select {
		case <-f.registering:
			done = true
		default:
		}
	}
	// The registration is in flight: several plans give up waiting for it.
	for range 3 {
		err := plan()
		if err == nil {
			t.Fatal("Plan succeeded while RegisterStreamConsumer had not answered")
		}
		if want := "registering it (RegisterStreamConsumer sent, no answer yet)"; !strings.Contains(err.Error(), want) {
			t.Fatalf("Plan = %v, want it to say %q", err, want)
		}
	}

	f.answer()
	for err := plan(); err != nil; err = plan() {
	}
	f.mu.Lock()
	cutOff := f.cutOff
	f.mu.Unlock()
	if n := f.count("RegisterStreamConsumer"); n != 1 || cutOff != 0 {
		t.Fatalf("%d RegisterStreamConsumer calls, %d cut off by the client; want one, answered", n, cutOff)
	}
	if n := f.count("DescribeStreamSummary"); n != 2 {
		// One to resolve the stream's ARN, one for the listing: the
		// consumer's start is not redone by every plan.
		t.Errorf("%d DescribeStreamSummary calls", n)
	}
}
