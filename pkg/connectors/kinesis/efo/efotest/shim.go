package efotest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// InitialResponseShim wraps the transport of a Kinesis client talking to
// kinesis-mock so that SubscribeToShard works with aws-sdk-go-v2.
//
// Why it exists: the SDK reads the first event-stream message of a
// SubscribeToShard response as the operation's "initial-response" event (the
// real service sends one) and fails with "deserialize initial response:
// expected initial-response, got SubscribeToShardEvent" otherwise.
// kinesis-mock (kinesis-local 0.6.2) starts directly with a
// SubscribeToShardEvent. The shim looks at the first message of each
// successful SubscribeToShard response and, unless it already is an
// initial-response, puts one (`:message-type` event, `:event-type`
// initial-response, payload `{}`) in front of it. Every other request passes
// through untouched.
//
// It is test code: a production client never needs it, and it is never part
// of the production path.
func InitialResponseShim(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &shim{next: next}
}

type shim struct{ next http.RoundTripper }

func (s *shim) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusOK ||
		!strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".SubscribeToShard") {
		return resp, err
	}
	// The peek happens on the first Read, not here: kinesis-mock sends its
	// first event only after about two seconds, and the SDK's own read of the
	// initial response is where that wait belongs.
	resp.Body = &peekBody{orig: resp.Body}
	return resp, nil
}

// InitialResponseMessage is the encoded event-stream message the shim
// prepends; the test server sends the same one, as the real service does.
func InitialResponseMessage() []byte {
	var buf bytes.Buffer
	var msg eventstream.Message
	msg.Headers.Set(":message-type", eventstream.StringValue("event"))
	msg.Headers.Set(":event-type", eventstream.StringValue("initial-response"))
	msg.Headers.Set(":content-type", eventstream.StringValue("application/x-amz-json-1.1"))
	msg.Payload = []byte("{}")
	if err := eventstream.NewEncoder().Encode(&buf, msg); err != nil {
		// Encoding a fixed, valid message into memory cannot fail.
		panic(fmt.Sprintf("encode initial-response: %v", err))
	}
	return buf.Bytes()
}

// peekBody decodes the first message of the body once, then serves either
// the body as it was (it started with an initial-response) or an
// initial-response followed by the body.
type peekBody struct {
	orig io.ReadCloser

	once sync.Once
	r    io.Reader
}

func (b *peekBody) Read(p []byte) (int, error) {
	b.once.Do(b.peek)
	return b.r.Read(p)
}

func (b *peekBody) peek() {
	var first bytes.Buffer
	msg, err := eventstream.NewDecoder().Decode(io.TeeReader(b.orig, &first), nil)
	rest := io.Reader(b.orig)
	if err != nil && !errors.Is(err, io.EOF) {
		// Hand the bytes read so far and the error to the SDK, which reports
		// it as a broken stream.
		rest = io.MultiReader(&errReader{err: err})
	}
	if err == nil {
		if et := msg.Headers.Get(":event-type"); et != nil && et.String() == "initial-response" {
			b.r = io.MultiReader(&first, rest)
			return
		}
	}
	b.r = io.MultiReader(bytes.NewReader(InitialResponseMessage()), &first, rest)
}

func (b *peekBody) Close() error { return b.orig.Close() }

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }
