package efotest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func message(t *testing.T, eventType string) []byte {
	t.Helper()
	var msg eventstream.Message
	msg.Headers.Set(":message-type", eventstream.StringValue("event"))
	msg.Headers.Set(":event-type", eventstream.StringValue(eventType))
	msg.Payload = []byte(`{"Records":[]}`)
	var buf bytes.Buffer
	if err := eventstream.NewEncoder().Encode(&buf, msg); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// eventTypes decodes every message of body.
func eventTypes(t *testing.T, body []byte) []string {
	t.Helper()
	var out []string
	r := bytes.NewReader(body)
	for r.Len() > 0 {
		msg, err := eventstream.NewDecoder().Decode(r, nil)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		out = append(out, msg.Headers.Get(":event-type").String())
	}
	return out
}

func TestInitialResponseShim(t *testing.T) {
	first := message(t, "SubscribeToShardEvent")
	initial := InitialResponseMessage()
	for _, tc := range []struct {
		name   string
		target string
		status int
		body   []byte
		want   []string // event types; nil: body untouched
	}{
		{"kinesis-mock's answer gets an initial-response", "Kinesis_20131202.SubscribeToShard", 200, append(append([]byte{}, first...), first...),
			[]string{"initial-response", "SubscribeToShardEvent", "SubscribeToShardEvent"}},
		{"an answer that has one is left alone", "Kinesis_20131202.SubscribeToShard", 200, append(append([]byte{}, initial...), first...),
			[]string{"initial-response", "SubscribeToShardEvent"}},
		{"an empty stream gets one", "Kinesis_20131202.SubscribeToShard", 200, nil, []string{"initial-response"}},
		{"errors pass through", "Kinesis_20131202.SubscribeToShard", 400, []byte(`{"__type":"ResourceInUseException"}`), nil},
		{"other operations pass through", "Kinesis_20131202.GetRecords", 200, []byte(`{"Records":[]}`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write(tc.body)
			}))
			defer srv.Close()
			tr := &http.Transport{}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: InitialResponseShim(tr)}
			req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
			req.Header.Set("X-Amz-Target", tc.target)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if !bytes.Equal(body, tc.body) {
					t.Fatalf("body changed: %q", body)
				}
				return
			}
			got := eventTypes(t, body)
			if len(got) != len(tc.want) {
				t.Fatalf("events %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("events %v, want %v", got, tc.want)
				}
			}
		})
	}
}
