package efotest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Server is an HTTPS server with HTTP/2 that speaks SubscribeToShard as the
// service does: an initial-response event, then SubscribeToShardEvent
// messages, or an exception message, or an error answer. A Handler scripts
// each call, for what kinesis-mock cannot show: ChildShards at the end of a
// closed shard, a subscription the service ends early (the five-minute
// renewal), ResourceInUse and other errors.
type Server struct {
	// URL is the server's https:// address, a client's BaseEndpoint.
	URL string

	srv *httptest.Server
	h   Handler

	mu    sync.Mutex
	calls []Call
}

// Call is one SubscribeToShard request the server received.
type Call struct {
	N                int // 1 for the first call, across shards
	ConsumerARN      string
	ShardID          string
	StartingPosition types.StartingPosition
}

// APIError is an error the server answers with: before any event (then
// Status is the HTTP status, 400 unless set), or inside the stream as an
// exception message (then Status is ignored). Type is the exception name,
// e.g. "ResourceInUseException", which the SDK turns into its typed error.
type APIError struct {
	Status  int
	Type    string
	Message string
}

func (e *APIError) Error() string { return e.Type + ": " + e.Message }

// Handler serves one call. It returns an *APIError before sending anything
// to refuse the call, sends events with Stream.Send, and returns to end the
// subscription normally (the client sees the stream end, as after the
// service's five minutes). Stream.Context ends when the client goes away.
type Handler func(call Call, s *Stream) error

// NewServer starts a server with handler h; it is closed when the test ends.
func NewServer(t testing.TB, h Handler) *Server {
	t.Helper()
	s := &Server{h: h}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.EnableHTTP2 = true
	s.srv.StartTLS()
	s.URL = s.srv.URL
	t.Cleanup(func() {
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
	return s
}

// Client is a Kinesis client for the server: it trusts the server's
// certificate, speaks HTTP/2, and does not retry by itself (the SDK's retries
// would hide the calls a test counts).
func (s *Server) Client() *kinesis.Client {
	return kinesis.New(kinesis.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(s.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("efo-test-key", "efo-test-secret", ""),
		HTTPClient:       s.srv.Client(),
		RetryMaxAttempts: 1,
	})
}

// Calls returns the calls received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// wire forms of the JSON 1.1 protocol.
type (
	wireStart struct {
		Type           string   `json:"Type"`
		SequenceNumber *string  `json:"SequenceNumber,omitempty"`
		Timestamp      *float64 `json:"Timestamp,omitempty"`
	}
	wireRequest struct {
		ConsumerARN      string    `json:"ConsumerARN"`
		ShardID          string    `json:"ShardId"`
		StartingPosition wireStart `json:"StartingPosition"`
	}
	wireRecord struct {
		SequenceNumber              string  `json:"SequenceNumber"`
		ApproximateArrivalTimestamp float64 `json:"ApproximateArrivalTimestamp,omitempty"`
		Data                        []byte  `json:"Data"`
		PartitionKey                string  `json:"PartitionKey"`
		EncryptionType              string  `json:"EncryptionType,omitempty"`
	}
	wireHashKeyRange struct {
		StartingHashKey string `json:"StartingHashKey"`
		EndingHashKey   string `json:"EndingHashKey"`
	}
	wireChildShard struct {
		ShardID      string            `json:"ShardId"`
		ParentShards []string          `json:"ParentShards"`
		HashKeyRange *wireHashKeyRange `json:"HashKeyRange,omitempty"`
	}
	wireEvent struct {
		Records                    []wireRecord     `json:"Records"`
		ContinuationSequenceNumber *string          `json:"ContinuationSequenceNumber,omitempty"`
		MillisBehindLatest         int64            `json:"MillisBehindLatest"`
		ChildShards                []wireChildShard `json:"ChildShards,omitempty"`
	}
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.Header.Get("X-Amz-Target"), ".SubscribeToShard") {
		writeError(w, &APIError{Type: "UnknownOperationException", Message: "the test server only serves SubscribeToShard"})
		return
	}
	var req wireRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, &APIError{Type: "SerializationException", Message: err.Error()})
		return
	}
	pos := types.StartingPosition{Type: types.ShardIteratorType(req.StartingPosition.Type), SequenceNumber: req.StartingPosition.SequenceNumber}
	if ts := req.StartingPosition.Timestamp; ts != nil {
		sec, frac := math.Modf(*ts)
		pos.Timestamp = aws.Time(time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)))
	}
	s.mu.Lock()
	call := Call{N: len(s.calls) + 1, ConsumerARN: req.ConsumerARN, ShardID: req.ShardID, StartingPosition: pos}
	s.calls = append(s.calls, call)
	s.mu.Unlock()

	st := &Stream{w: w, ctx: r.Context(), enc: eventstream.NewEncoder()}
	err := s.h(call, st)
	if ae, ok := err.(*APIError); ok && !st.started {
		writeError(w, ae)
		return
	}
	if err != nil && !st.started {
		writeError(w, &APIError{Status: http.StatusInternalServerError, Type: "InternalFailure", Message: err.Error()})
		return
	}
	_ = st.start()
}

func writeError(w http.ResponseWriter, e *APIError) {
	status := e.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	body, _ := json.Marshal(map[string]string{"__type": e.Type, "message": e.Message})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Stream writes one subscription's messages, each flushed at once.
type Stream struct {
	w       http.ResponseWriter
	ctx     context.Context
	enc     *eventstream.Encoder
	started bool
	err     error
}

// Context ends when the client closed the subscription or went away.
func (s *Stream) Context() context.Context { return s.ctx }

func (s *Stream) start() error {
	if s.started {
		return s.err
	}
	s.started = true
	s.w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	s.w.WriteHeader(http.StatusOK)
	s.err = s.write(InitialResponseMessage())
	return s.err
}

func (s *Stream) write(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
	return s.ctx.Err()
}

// Send writes one SubscribeToShardEvent. It fails once the client is gone.
func (s *Stream) Send(ev types.SubscribeToShardEvent) error {
	if err := s.start(); err != nil {
		return err
	}
	we := wireEvent{Records: []wireRecord{}, ContinuationSequenceNumber: ev.ContinuationSequenceNumber, MillisBehindLatest: aws.ToInt64(ev.MillisBehindLatest)}
	for _, r := range ev.Records {
		wr := wireRecord{SequenceNumber: aws.ToString(r.SequenceNumber), Data: r.Data, PartitionKey: aws.ToString(r.PartitionKey),
			EncryptionType: string(r.EncryptionType)}
		if t := r.ApproximateArrivalTimestamp; t != nil {
			wr.ApproximateArrivalTimestamp = float64(t.UnixMilli()) / 1e3
		}
		we.Records = append(we.Records, wr)
	}
	for _, c := range ev.ChildShards {
		wc := wireChildShard{ShardID: aws.ToString(c.ShardId), ParentShards: c.ParentShards}
		if h := c.HashKeyRange; h != nil {
			wc.HashKeyRange = &wireHashKeyRange{StartingHashKey: aws.ToString(h.StartingHashKey), EndingHashKey: aws.ToString(h.EndingHashKey)}
		}
		we.ChildShards = append(we.ChildShards, wc)
	}
	payload, err := json.Marshal(we)
	if err != nil {
		return err
	}
	var msg eventstream.Message
	msg.Headers.Set(":message-type", eventstream.StringValue("event"))
	msg.Headers.Set(":event-type", eventstream.StringValue("SubscribeToShardEvent"))
	msg.Headers.Set(":content-type", eventstream.StringValue("application/json"))
	msg.Payload = payload
	return s.encode(msg)
}

// SendException writes an exception message (e.g. ResourceInUseException
// when another subscription took the shard over); the client's stream fails
// with the typed error. Return from the Handler afterwards.
func (s *Stream) SendException(e *APIError) error {
	if err := s.start(); err != nil {
		return err
	}
	payload, _ := json.Marshal(map[string]string{"message": e.Message})
	var msg eventstream.Message
	msg.Headers.Set(":message-type", eventstream.StringValue("exception"))
	msg.Headers.Set(":exception-type", eventstream.StringValue(e.Type))
	msg.Headers.Set(":content-type", eventstream.StringValue("application/json"))
	msg.Payload = payload
	return s.encode(msg)
}

func (s *Stream) encode(msg eventstream.Message) error {
	var buf bytes.Buffer
	if err := s.enc.Encode(&buf, msg); err != nil {
		return err
	}
	return s.write(buf.Bytes())
}

// Shard is a scripted shard for ShardHandler.
type Shard struct {
	// Records in ascending sequence order (see Records).
	Records []types.Record
	// PerEvent is how many records an event carries; default 2.
	PerEvent int
	// EventsPerCall ends each subscription after this many events, as the
	// service does after five minutes; 0 never ends it early.
	EventsPerCall int
	// Children, when set, close the shard: after the last record an event
	// carries them (with no continuation number, as the service sends it)
	// and the subscription ends. Without them the shard is open: once
	// caught up, empty events with MillisBehindLatest 0 follow every
	// Interval.
	Children []types.ChildShard
	// Interval is the pause between events; default 20ms.
	Interval time.Duration
	// Refuse, when it returns non-nil for a call, answers it with that
	// error instead of a stream.
	Refuse func(Call) *APIError
	// Interrupt, when it returns non-nil after sent events of a call, sends
	// that exception and ends the stream.
	Interrupt func(call Call, sent int) *APIError
}

// ShardHandler serves sh for every call, whatever the shard id, from each
// call's starting position.
func ShardHandler(sh *Shard) Handler {
	perEvent := sh.PerEvent
	if perEvent <= 0 {
		perEvent = 2
	}
	interval := sh.Interval
	if interval == 0 {
		interval = 20 * time.Millisecond
	}
	return func(call Call, st *Stream) error {
		if sh.Refuse != nil {
			if e := sh.Refuse(call); e != nil {
				return e
			}
		}
		i, err := startIndex(sh.Records, call.StartingPosition)
		if err != nil {
			return &APIError{Type: "InvalidArgumentException", Message: err.Error()}
		}
		// cont is the position reached: the last record sent, or the one
		// before the start.
		cont := ""
		if i > 0 {
			cont = aws.ToString(sh.Records[i-1].SequenceNumber)
		} else if p := call.StartingPosition; p.Type == types.ShardIteratorTypeAfterSequenceNumber || p.Type == types.ShardIteratorTypeAtSequenceNumber {
			cont = aws.ToString(p.SequenceNumber)
		}
		for sent := 0; sh.EventsPerCall == 0 || sent < sh.EventsPerCall; sent++ {
			if sent > 0 {
				select {
				case <-st.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
			if sh.Interrupt != nil {
				if e := sh.Interrupt(call, sent); e != nil {
					return st.SendException(e)
				}
			}
			end := min(i+perEvent, len(sh.Records))
			ev := types.SubscribeToShardEvent{Records: sh.Records[i:end]}
			if end > i {
				cont = aws.ToString(sh.Records[end-1].SequenceNumber)
			}
			i = end
			last := i == len(sh.Records)
			ev.MillisBehindLatest = aws.Int64(int64(len(sh.Records)-i) * 1000)
			if last && len(sh.Children) > 0 {
				ev.ChildShards = sh.Children
				return st.Send(ev)
			}
			if cont != "" {
				ev.ContinuationSequenceNumber = aws.String(cont)
			}
			if err := st.Send(ev); err != nil {
				return nil // the client left
			}
		}
		return nil
	}
}

// startIndex is the index of the first record a subscription from p gets.
func startIndex(recs []types.Record, p types.StartingPosition) (int, error) {
	find := func(ok func(types.Record) bool) int {
		for i, r := range recs {
			if ok(r) {
				return i
			}
		}
		return len(recs)
	}
	seq := aws.ToString(p.SequenceNumber)
	cmp := func(r types.Record) int { return compareSeq(aws.ToString(r.SequenceNumber), seq) }
	switch p.Type {
	case types.ShardIteratorTypeTrimHorizon:
		return 0, nil
	case types.ShardIteratorTypeLatest:
		return len(recs), nil
	case types.ShardIteratorTypeAtSequenceNumber:
		return find(func(r types.Record) bool { return cmp(r) >= 0 }), nil
	case types.ShardIteratorTypeAfterSequenceNumber:
		return find(func(r types.Record) bool { return cmp(r) > 0 }), nil
	case types.ShardIteratorTypeAtTimestamp:
		t := aws.ToTime(p.Timestamp)
		return find(func(r types.Record) bool { return !aws.ToTime(r.ApproximateArrivalTimestamp).Before(t) }), nil
	}
	return 0, fmt.Errorf("unknown starting position type %q", p.Type)
}

func compareSeq(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// Records makes n records for a scripted shard: sequence numbers
// increasing (and as long as real ones), data "r<i>", partition key
// "k<i>", one arrival second apart from base.
func Records(n int, base time.Time) []types.Record {
	out := make([]types.Record, n)
	for i := range out {
		out[i] = types.Record{
			SequenceNumber:              aws.String(Seq(i)),
			Data:                        []byte("r" + strconv.Itoa(i)),
			PartitionKey:                aws.String("k" + strconv.Itoa(i)),
			ApproximateArrivalTimestamp: aws.Time(base.Add(time.Duration(i) * time.Second).Truncate(time.Millisecond)),
		}
	}
	return out
}

// Seq is the sequence number Records gives record i.
func Seq(i int) string { return fmt.Sprintf("4968043013095242228327528864%028d", (i+1)*1000) }
