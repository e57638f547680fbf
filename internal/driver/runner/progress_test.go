package runner

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	storagev1 "github.com/sluicehq/sluice/proto/sluice/storage/v1"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// oldCommitProgress is a commit's progress as drivers wrote it before the
// storage message existed: the API's BatchProgress as protojson.
const oldCommitProgress = `{"batchId":"7","timestamp":"2026-12-01T10:00:00Z","numInputRows":"1200","numOutputRows":"16",` +
	`"inputBytes":"150000","skippedRows":"2","deadLetteredRows":"1","numTasks":3,"taskRetries":1,` +
	`"inputRowsPerSecond":600.5,"processedRowsPerSecond":800.25,"durationMs":{"plan":"3","execute":"40"},` +
	`"metrics":{"avgOffsetsBehindLatest":12},"partitions":[{"partition":"transaction/0","start":"100","end":"500",` +
	`"records":"400","executor":"e1","metrics":{"lastRecordOffset":499},"durationMs":"35","attempts":2}],"speculativeTasks":1}`

// TestProgressStorage: commits written before the storage message read as
// they were written (the migration is that nothing changes), so do those
// that stored it as protojson, what is stored now (the wire format) reads
// back whole, and every field of the API's BatchProgress and
// PartitionProgress has a place in the storage form.
func TestProgressStorage(t *testing.T) {
	want := &sluicev1.BatchProgress{
		BatchId: 7, Timestamp: timestamppb.New(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)), NumInputRows: 1200, NumOutputRows: 16,
		InputBytes: 150000, SkippedRows: 2, DeadLetteredRows: 1, NumTasks: 3, TaskRetries: 1, InputRowsPerSecond: 600.5,
		ProcessedRowsPerSecond: 800.25, DurationMs: map[string]int64{"plan": 3, "execute": 40},
		Metrics: map[string]float64{"avgOffsetsBehindLatest": 12}, SpeculativeTasks: 1,
		Partitions: []*sluicev1.PartitionProgress{{Partition: "transaction/0", Start: "100", End: "500", Records: 400,
			Executor: "e1", Metrics: map[string]float64{"lastRecordOffset": 499}, DurationMs: 35, Attempts: 2}},
	}
	if diff := cmp.Diff(want, LoadProgress(checkpoint.Commit{Batch: 7, Progress: []byte(oldCommitProgress)}), protocmp.Transform()); diff != "" {
		t.Fatalf("an old commit's progress (-want +got):\n%s", diff)
	}

	full := &sluicev1.BatchProgress{}
	fill(full.ProtoReflect())
	stored, err := storeProgress(full)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(full, LoadProgress(checkpoint.Commit{Progress: stored}), protocmp.Transform()); diff != "" {
		t.Fatalf("a field of the API's progress is not stored (-api +read back):\n%s", diff)
	}

	if stored[0] == '{' {
		t.Fatalf("progress is stored as %.20q…, want the wire format", stored)
	}
	// What drivers stored before the wire format: the storage message as
	// protojson.
	var asStored storagev1.BatchProgress
	if err := proto.Unmarshal(stored, &asStored); err != nil {
		t.Fatal(err)
	}
	storedJSON, err := protojson.Marshal(&asStored)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(full, LoadProgress(checkpoint.Commit{Progress: storedJSON}), protocmp.Transform()); diff != "" {
		t.Fatalf("progress stored as protojson (-stored +read back):\n%s", diff)
	}

	for _, bad := range []string{"{not json", "\xff\xff"} {
		if got := LoadProgress(checkpoint.Commit{Batch: 9, Progress: []byte(bad)}); !proto.Equal(got, &sluicev1.BatchProgress{BatchId: 9}) {
			t.Fatalf("unreadable progress %q gives %v, want the batch id alone", bad, got)
		}
	}
}

// fill sets every field of m, recursively, to a value that is not the
// default, so that a conversion that forgets one shows.
func fill(m protoreflect.Message) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			mp.Set(protoreflect.ValueOfString("k").MapKey(), scalar(fd.MapValue()))
		case fd.IsList():
			l := m.Mutable(fd).List()
			if fd.Kind() == protoreflect.MessageKind {
				e := l.NewElement()
				fill(e.Message())
				l.Append(e)
			} else {
				l.Append(scalar(fd))
			}
		case fd.Kind() == protoreflect.MessageKind:
			if fd.Message().FullName() == "google.protobuf.Timestamp" {
				m.Set(fd, protoreflect.ValueOfMessage(timestamppb.New(time.Unix(1700000000, 5)).ProtoReflect()))
				continue
			}
			fill(m.Mutable(fd).Message())
		default:
			m.Set(fd, scalar(fd))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.Int64Kind:
		return protoreflect.ValueOfInt64(42)
	case protoreflect.Int32Kind:
		return protoreflect.ValueOfInt32(7)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(1.5)
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	}
	panic("fill: add a value for kind " + fd.Kind().String())
}
