package jobspec

import (
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The connector tables: one adapter per case of the `kind` oneof of
// Source, Sink and Checkpoint, keyed by the case's proto field name. Each
// adapter lives in its connector's file (kafka.go, kinesis.go, file.go,
// ...), which owns the conversion of its proto block into the engine's
// config, the validation reported relative to that block, and what the
// config does once compiled (its connectors, a source's identity and
// schema). Adding a connector is one file and one line here;
// TestEveryKindHasAnAdapter fails for a oneof case without one.
//
// Secret-bearing options are marked once, in secrets.Fields, by proto
// full name: Redact, Seal, Resolve and Check all read that table, so the
// adapters do not repeat it.
var (
	sourceAdapters = map[protoreflect.Name]sourceAdapter{
		"kafka":   sourceOf(compileKafkaSource),
		"kinesis": kinesisSourceAdapter,
	}
	sinkAdapters = map[protoreflect.Name]sinkAdapter{
		"console":  sinkOf(compileConsoleSink),
		"file":     sinkOf(compileFileSink),
		"discard":  sinkOf(compileDiscardSink),
		"kinesis":  sinkOf(compileKinesisSink),
		"postgres": sinkOf(compilePostgresSink),
		"s3":       sinkOf(compileS3Sink),
		"kafka":    sinkOf(compileKafkaSink),
	}
	checkpointAdapters = map[protoreflect.Name]checkpointAdapter{
		"dynamodb": checkpointOf(compileDynamoDBCheckpoint),
		"s3":       checkpointOf(compileS3Checkpoint),
	}
)

// sourceAdapter compiles one kind of source. job is the job's name.
type sourceAdapter struct {
	compile func(m proto.Message, f fieldErrors, job string) sourceConfig
	// noSpeculation, when set, says why the source's ranges cannot be run
	// twice side by side (speculation.enabled is refused).
	noSpeculation string
}

func sourceOf[M proto.Message](compile func(M, fieldErrors, string) sourceConfig) sourceAdapter {
	return sourceAdapter{compile: func(m proto.Message, f fieldErrors, job string) sourceConfig {
		return compile(m.(M), f, job)
	}}
}

// sinkAdapter compiles one kind of sink in its role.
type sinkAdapter struct {
	compile func(m proto.Message, f fieldErrors, role sinkRole) sinkConfig
}

// sinkRole is what a sink is for. name is "sink" or "deadLetter": sinks
// that keep state in the destination (positions, transactional ids) keep
// the two apart by it. rows is the schema of the rows it receives, which
// sinks with per-record expressions check them against; nil when not known
// (the spec is checked before its schema is inferred).
type sinkRole struct {
	name string
	rows *arrow.Schema
}

func sinkOf[M proto.Message](compile func(M, fieldErrors, sinkRole) sinkConfig) sinkAdapter {
	return sinkAdapter{compile: func(m proto.Message, f fieldErrors, role sinkRole) sinkConfig {
		return compile(m.(M), f, role)
	}}
}

// checkpointAdapter compiles one kind of checkpoint store; retain is the
// block's minBatchesToRetain.
type checkpointAdapter struct {
	compile func(m proto.Message, f fieldErrors, retain int) checkpointConfig
}

func checkpointOf[M proto.Message](compile func(M, fieldErrors, int) checkpointConfig) checkpointAdapter {
	return checkpointAdapter{compile: func(m proto.Message, f fieldErrors, retain int) checkpointConfig {
		return compile(m.(M), f, retain)
	}}
}

// kindOneof is the oneof every connector block chooses its kind with.
const kindOneof protoreflect.Name = "kind"

// kindOf returns the case of m's kind oneof that is set, and its block;
// ok is false when none is (or m is nil).
func kindOf(m proto.Message) (fd protoreflect.FieldDescriptor, block proto.Message, ok bool) {
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil, nil, false
	}
	fd = r.WhichOneof(r.Descriptor().Oneofs().ByName(kindOneof))
	if fd == nil {
		return nil, nil, false
	}
	return fd, r.Get(fd).Message().Interface(), true
}

// kindNames lists the JSON names of the kinds of m's message type that
// have an adapter, in the proto's order: "kafka, kinesis".
func kindNames[A any](m proto.Message, adapters map[protoreflect.Name]A) string {
	fields := m.ProtoReflect().Descriptor().Oneofs().ByName(kindOneof).Fields()
	var names []string
	for i := 0; i < fields.Len(); i++ {
		if _, ok := adapters[fields.Get(i).Name()]; ok {
			names = append(names, fields.Get(i).JSONName())
		}
	}
	return strings.Join(names, ", ")
}

// compileSource validates the job's source (field "source"); it returns
// nil when the source is invalid or absent.
func compileSource(s *sluicev1.Source, f fieldErrors, job string) sourceConfig {
	fd, block, ok := kindOf(s)
	if !ok {
		f.add("", "is required (one of: %s)", kindNames(&sluicev1.Source{}, sourceAdapters))
		return nil
	}
	a, ok := sourceAdapters[fd.Name()]
	if !ok {
		f.add(fd.JSONName(), "is not supported by this build")
		return nil
	}
	return a.compile(block, f.at(fd.JSONName()), job)
}

// compileSink validates one sink (field "sink" or "deadLetter", which is
// also role.name); it returns nil when s is invalid or absent.
func compileSink(s *sluicev1.Sink, f fieldErrors, role sinkRole, required bool) sinkConfig {
	fd, block, ok := kindOf(s)
	if !ok {
		if required {
			f.add("", "is required (one of: %s)", kindNames(&sluicev1.Sink{}, sinkAdapters))
		}
		return nil
	}
	a, ok := sinkAdapters[fd.Name()]
	if !ok {
		f.add(fd.JSONName(), "is not supported by this build")
		return nil
	}
	return a.compile(block, f.at(fd.JSONName()), role)
}
