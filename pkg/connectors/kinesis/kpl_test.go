package kinesis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/kinesis/kpl"
	"github.com/sluicehq/sluice/pkg/stream"
)

// TestKPLAggregates reads KPL aggregates (20 user records each) mixed with
// plain records, with a byte budget that makes tasks stop inside
// aggregates: every user record arrives once, in order, with its own
// partition key and sub-sequence number; replaying a batch on a cold pool
// stops at exactly the same user record; a corrupt aggregate arrives as one
// raw record with stream.Record.Err set (so it meets onError).
func TestKPLAggregates(t *testing.T) {
	e := newEnv(t)
	testenv.CreateStream(t, e.admin, "kpl", 1)
	var puts []putRec
	var want []string
	n := 0
	for a := range 15 {
		var users []kpl.Record
		for range 20 {
			data := fmt.Sprintf(`{"n":%d,"pad":"%s"}`, n, strings.Repeat("x", 20))
			users = append(users, kpl.Record{PartitionKey: fmt.Sprintf("user-%d", n%7), Data: []byte(data)})
			want = append(want, data)
			n++
		}
		agg, err := kpl.Aggregate(users)
		if err != nil {
			t.Fatal(err)
		}
		puts = append(puts, putRec{key: "agg", data: agg})
		if a%5 == 4 { // a plain record now and then
			data := fmt.Sprintf(`{"n":%d,"pad":"plain"}`, n)
			puts = append(puts, putRec{key: "plain", data: []byte(data)})
			want = append(want, data)
			n++
		}
	}
	corrupt, _ := kpl.Aggregate([]kpl.Record{{PartitionKey: "c", Data: []byte(`{"n":-1}`)}})
	corrupt[len(corrupt)-1] ^= 0xff
	puts = append(puts, putRec{key: "corrupt", data: corrupt})
	e.put("kpl", puts)

	cfg := e.config("kpl")
	cfg.InitialPosition = "trim_horizon"
	cfg.FetchBufferSize = "1kb" // ~25 user records of ~40 bytes: tasks end inside aggregates
	cfg.MaxRecordsPerFetch = 4
	clock := &fakeClock{t: time.Now()}
	fast := withClock(clock.now, func(ctx context.Context, d time.Duration) error { clock.advance(d); return ctx.Err() })
	pool := e.pool(cfg, fast)
	d := newDriver(t, e.source(cfg), pool)

	type batch struct {
		r    stream.Range
		end  stream.Position
		data []string
	}
	var batches []batch
	var got []stream.Record
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("still reading after 100 batches")
		}
		recs := d.step()["kpl/shardId-000000000000"]
		if len(recs) == 0 {
			break
		}
		got = append(got, recs...)
		r := d.lastPlan.Ranges[0]
		batches = append(batches, batch{r: r, end: d.lastEnds[r.Partition], data: datas(recs)})
	}

	// The corrupt aggregate is the last record, delivered raw with Err set
	// (the task applies onError to it), its position fields intact; no
	// other record carries an error.
	last := got[len(got)-1]
	got = got[:len(got)-1]
	if last.Err == nil || !strings.Contains(last.Err.Error(), "corrupt KPL aggregate") {
		t.Fatalf("corrupt aggregate delivered with Err %v", last.Err)
	}
	if !bytes.Equal(last.Fields["data"].([]byte), corrupt) || last.Fields["subSequenceNumber"] != int64(0) ||
		last.Fields["partitionKey"] != "corrupt" || last.Fields["sequenceNumber"] == "" {
		t.Fatalf("corrupt aggregate delivered as %v", last.Fields)
	}
	for _, r := range got {
		if r.Err != nil {
			t.Fatalf("record %v has Err %v", r.Fields["sequenceNumber"], r.Err)
		}
	}

	if diff := cmp.Diff(want, datas(got)); diff != "" {
		t.Fatalf("user records (-want +got):\n%s", diff)
	}
	for i, r := range got {
		if i < 20 && (r.Fields["subSequenceNumber"] != int64(i) || r.Fields["partitionKey"] != fmt.Sprintf("user-%d", i%7)) {
			t.Fatalf("user record %d: %v", i, r.Fields)
		}
	}

	// Batch boundaries inside aggregates, and exact replays of them.
	inside := 0
	cold := e.pool(cfg, fast)
	for _, b := range batches {
		if pos, _ := decodePosition(b.end); pos.Sub != nil {
			inside++
		}
		r := b.r
		r.Until = b.end
		replayed, end := readRange(t, cold, r)
		if diff := cmp.Diff(b.data, datas(replayed)); diff != "" || string(end) != string(b.end) {
			t.Fatalf("replay from %s to %s ended at %s (-first +replay):\n%s", r.From, r.Until, end, diff)
		}
	}
	if inside < 3 {
		t.Fatalf("only %d of %d batches ended inside an aggregate", inside, len(batches))
	}

	// The Arrow path reads the same ranges to the same records and ends,
	// the corrupt aggregate handed back as a row with Err.
	arrowPool := e.pool(cfg, fast)
	var arrowBad []stream.Record
	for _, b := range batches {
		r := b.r
		r.Until = b.end
		rows, _ := readRange(t, cold, r)
		good, bad, end := readRangeArrow(t, arrowPool, r)
		if string(end) != string(b.end) {
			t.Fatalf("Arrow read from %s to %s ended at %s", r.From, r.Until, end)
		}
		var want []stream.Row
		for _, rec := range rows {
			if rec.Err == nil {
				want = append(want, rec.Fields)
			}
		}
		if fmt.Sprint(good) != fmt.Sprint(want) {
			t.Fatalf("Arrow read from %s to %s:\n got %v\nwant %v", r.From, r.Until, good, want)
		}
		arrowBad = append(arrowBad, bad...)
	}
	if len(arrowBad) != 1 || fmt.Sprint(arrowBad[0].Fields) != fmt.Sprint(last.Fields) || arrowBad[0].Err == nil ||
		arrowBad[0].Err.Error() != last.Err.Error() || arrowBad[0].Size != last.Size {
		t.Fatalf("Arrow read's bad records %v, want the corrupt aggregate %v", arrowBad, last)
	}
}

// readRangeArrow reads r to its end through pool's ReadKinesisArrow, into a
// checked allocator: the records appended, as rows, those handed back as
// bad, and the end.
func readRangeArrow(t *testing.T, pool connectors.ReaderPool, r stream.Range) (good []stream.Row, bad []stream.Record, end stream.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rd, err := pool.Open(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	kb, _ := columnar.NewKinesisBuilderFor(mem, columnar.KinesisSchema())
	defer kb.Release()
	var bytes int64
	for {
		before := kb.Len()
		n, nb, b, err := rd.(connectors.KinesisArrowReader).ReadKinesisArrow(ctx, kb)
		bytes += nb
		bad = append(bad, b...)
		if appended := kb.Len() - before; n != appended+len(b) {
			t.Fatalf("ReadKinesisArrow said %d records, with %d bad and %d appended", n, len(b), appended)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s from %s: %v", r.Partition, r.From, err)
		}
	}
	rec := kb.NewRecordBatch()
	defer rec.Release()
	good, err = columnar.AppendRows(nil, rec)
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, g := range good {
		want += int64(len(g["data"].([]byte)))
	}
	for _, b := range bad {
		want += int64(b.Size)
	}
	if bytes != want {
		t.Fatalf("ReadKinesisArrow said %d bytes, the records hold %d", bytes, want)
	}
	return good, bad, rd.End()
}
