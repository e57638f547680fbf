package task

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/discard"
	"github.com/sluicehq/sluice/pkg/connectors/file"
	"github.com/sluicehq/sluice/pkg/stream"
)

// fakePool serves a fixed list of payloads as one range, two per Read.
type fakePool struct{ values []string }

func (p *fakePool) Open(_ context.Context, r stream.Range) (connectors.Reader, error) {
	return &fakeReader{values: p.values}, nil
}
func (p *fakePool) Close() error { return nil }

type fakeReader struct {
	values []string
	pos    int
}

func (r *fakeReader) Read(context.Context) ([]stream.Record, error) {
	if r.pos >= len(r.values) {
		return nil, io.EOF
	}
	end := min(r.pos+2, len(r.values))
	var out []stream.Record
	for i := r.pos; i < end; i++ {
		rec := stream.Record{Fields: stream.Row{"value": []byte(r.values[i]), "offset": int64(i)}, Size: len(r.values[i])}
		if r.values[i] == corrupt {
			rec.Err = errors.New("corrupt aggregate")
		}
		out = append(out, rec)
	}
	r.pos = end
	return out, nil
}
func (r *fakeReader) End() stream.Position { return stream.Position(strings.Repeat("x", r.pos)) }
func (r *fakeReader) Close() error         { return nil }

// corrupt is a value the fake reader could not unpack (Record.Err).
const corrupt = "\xf3\x89\x9a\xc2 truncated"

// input is a range whose second record the reader could not unpack.
var input = []string{`{"a":1}`, corrupt, `{"a":2}`, `{"a":3}`}

// attempt is a task of a job without transforms: its records go to the
// sink as the reader's rows.
func attempt(t *testing.T, onError string) Attempt {
	return Attempt{Job: "j", Batch: 3, Range: stream.Range{Partition: "t/0"}, Readers: &fakePool{values: input},
		Sink: discard.New(), OnError: onError}
}

func TestOnErrorFail(t *testing.T) {
	_, err := Run(context.Background(), attempt(t, OnErrorFail))
	if !connectors.IsPermanent(err) || !strings.Contains(err.Error(), "offset 1") || !strings.Contains(err.Error(), "onError") {
		t.Fatalf("err = %v, want a permanent error naming offset 1 and the onError option", err)
	}
}

func TestOnErrorSkip(t *testing.T) {
	res, err := Run(context.Background(), attempt(t, OnErrorSkip))
	if err != nil {
		t.Fatal(err)
	}
	if res.RecordsIn != 4 || res.RecordsOut != 3 || res.Skipped != 1 || string(res.End) != "xxxx" {
		t.Fatalf("result %+v", res)
	}
}

func TestOnErrorDeadLetter(t *testing.T) {
	dir := t.TempDir()
	dl, err := file.New(file.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	a := attempt(t, OnErrorDeadLetter)
	a.DeadLetter = dl
	res, err := Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := file.ReadAll(dir, "j")
	if err != nil {
		t.Fatal(err)
	}
	if res.DeadLettered != 1 || len(rows) != 1 || rows[0]["error"] != "read: corrupt aggregate" || rows[0]["offset"] != int64(1) {
		t.Fatalf("dead letters %d, rows %v", res.DeadLettered, rows)
	}
}

func TestCollectRows(t *testing.T) {
	a := attempt(t, OnErrorSkip)
	a.CollectRows = 2
	res, err := Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if res.RowsTotal != 3 || strings.Count(string(res.Rows), "\n") != 2 {
		t.Fatalf("collected %q of %d", res.Rows, res.RowsTotal)
	}
}

func TestSinkFailureIsRetryable(t *testing.T) {
	a := attempt(t, OnErrorSkip)
	a.Sink = failingSink{}
	_, err := Run(context.Background(), a)
	if err == nil || connectors.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
}

type failingSink struct{}

func (failingSink) OpenWriter(context.Context, connectors.WriteKey) (connectors.Writer, error) {
	return nil, errors.New("disk full")
}
func (failingSink) Close() error { return nil }

// endSink stores one end per write key, as the PostgreSQL positions table
// does: the first committed end wins.
type endSink struct{ ends map[string]stream.Position }

func (s *endSink) OpenWriter(_ context.Context, k connectors.WriteKey) (connectors.Writer, error) {
	return &endWriter{s: s, key: k.Part}, nil
}
func (s *endSink) Close() error { return nil }

type endWriter struct {
	s   *endSink
	key string
}

func (w *endWriter) Write(context.Context, []stream.Row) error { return nil }
func (w *endWriter) Commit(context.Context) error              { panic("CommitEnd must be used") }
func (w *endWriter) Abort() error                              { return nil }
func (w *endWriter) CommitEnd(_ context.Context, end stream.Position) (stream.Position, error) {
	if old, ok := w.s.ends[w.key]; ok {
		return old, nil
	}
	w.s.ends[w.key] = end
	return end, nil
}

// TestReplayReportsStoredEnd: an attempt whose output an earlier attempt
// already committed (with a shorter end, as an open-ended Kinesis range can
// give) reports the stored end, so the records it read beyond it are left
// to the next batch rather than lost.
func TestReplayReportsStoredEnd(t *testing.T) {
	sink := &endSink{ends: map[string]stream.Position{"t/0": stream.Position("xx")}}
	a := attempt(t, OnErrorSkip)
	a.Sink = sink
	res, err := Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.End) != "xx" {
		t.Fatalf("end = %q, want the stored end %q", res.End, "xx")
	}
	a.Range.Partition = "t/1"
	res, err = Run(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if string(res.End) != "xxxx" || string(sink.ends["t/1"]) != "xxxx" {
		t.Fatalf("first commit: end %q, stored %q; want xxxx", res.End, sink.ends["t/1"])
	}
}

// TestReaderBadRecord: a record the reader could not unpack follows onError,
// with the cause in the error.
func TestReaderBadRecord(t *testing.T) {
	for _, tc := range []struct {
		onError string
		wantErr bool
	}{{OnErrorFail, true}, {OnErrorSkip, false}} {
		a := attempt(t, tc.onError)
		a.Readers = &fakePool{values: []string{`{"a":1}`, corrupt, `{"a":2}`}}
		res, err := Run(context.Background(), a)
		if tc.wantErr {
			if !connectors.IsPermanent(err) || !strings.Contains(err.Error(), "corrupt aggregate") {
				t.Fatalf("%s: err = %v, want a permanent error naming the cause", tc.onError, err)
			}
			continue
		}
		if err != nil || res.Skipped != 1 || res.RecordsOut != 2 || res.RecordsIn != 3 {
			t.Fatalf("%s: res %+v, err %v; want 1 skipped of 3", tc.onError, res, err)
		}
	}
}

// TestStaleAttemptDoesNotCommit pins the zombie bug: an attempt whose
// executor no longer heard the driver still committed its file, possibly
// over the output of its replacement. An attempt that is no longer current
// commits nothing.
func TestStaleAttemptDoesNotCommit(t *testing.T) {
	for _, current := range []bool{true, false} {
		dir := t.TempDir()
		sink, err := file.New(file.Config{Path: dir})
		if err != nil {
			t.Fatal(err)
		}
		a := attempt(t, OnErrorSkip)
		a.Sink = sink
		a.Current = func() error {
			if current {
				return nil
			}
			return errors.New("fenced")
		}
		_, err = Run(context.Background(), a)
		rows, _ := file.ReadAll(dir, "j")
		switch {
		case current && (err != nil || len(rows) != 3):
			t.Fatalf("current attempt: err %v, %d rows, want 3", err, len(rows))
		case !current && (err == nil || len(rows) != 0):
			t.Fatalf("stale attempt: err %v, %d rows, want an error and none", err, len(rows))
		}
	}
}
