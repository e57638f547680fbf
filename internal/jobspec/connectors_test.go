package jobspec

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestEveryKindHasAnAdapter: a connector added to job.proto (a new case of
// a kind oneof) without an adapter in connectors.go would compile to "is
// not supported by this build"; an adapter whose case left the proto is
// dead code.
func TestEveryKindHasAnAdapter(t *testing.T) {
	for _, tc := range []struct {
		msg  proto.Message
		has  func(protoreflect.Name) bool
		keys []protoreflect.Name
	}{
		{&sluicev1.Source{}, hasKey(sourceAdapters), keysOf(sourceAdapters)},
		{&sluicev1.Sink{}, hasKey(sinkAdapters), keysOf(sinkAdapters)},
		{&sluicev1.Checkpoint{}, hasKey(checkpointAdapters), keysOf(checkpointAdapters)},
	} {
		d := tc.msg.ProtoReflect().Descriptor()
		oneof := d.Oneofs().ByName(kindOneof)
		if oneof == nil {
			t.Fatalf("%s has no oneof %s", d.FullName(), kindOneof)
		}
		fields := oneof.Fields()
		for i := 0; i < fields.Len(); i++ {
			if fd := fields.Get(i); !tc.has(fd.Name()) {
				t.Errorf("%s: the %s case has no adapter in connectors.go", d.FullName(), fd.Name())
			}
		}
		for _, k := range tc.keys {
			if fields.ByName(k) == nil {
				t.Errorf("%s: adapter %q names no case of its %s oneof", d.FullName(), k, kindOneof)
			}
		}
	}
}

func hasKey[A any](m map[protoreflect.Name]A) func(protoreflect.Name) bool {
	return func(n protoreflect.Name) bool { _, ok := m[n]; return ok }
}

func keysOf[A any](m map[protoreflect.Name]A) []protoreflect.Name {
	var ks []protoreflect.Name
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestKindNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{kindNames(&sluicev1.Source{}, sourceAdapters), "kafka, kinesis"},
		{kindNames(&sluicev1.Sink{}, sinkAdapters), "console, file, discard, kinesis, postgres, s3, kafka"},
		{kindNames(&sluicev1.Checkpoint{}, checkpointAdapters), "dynamodb, s3"},
	} {
		if tc.got != tc.want {
			t.Errorf("kinds %q, want %q", tc.got, tc.want)
		}
	}
}

// badSinks holds, for every sink kind, a block with one problem: the
// option it is reported under (relative to the block) and its message.
// Discard has no options, so nothing to get wrong.
var badSinks = map[string]struct{ block, option, want string }{
	"console":  {`{numRows: -1}`, "numRows", "must not be negative (got -1)"},
	"file":     {`{format: jsonl}`, "path", "required"},
	"discard":  {},
	"kinesis":  {`{partitionKey: topic}`, "streamName", "is required"},
	"postgres": {`{url: "postgres://db/x"}`, "table", "required (a table name, optionally schema.table)"},
	"s3":       {`{prefix: x}`, "bucket", "required"},
	"kafka":    {`{topic: out}`, "bootstrapServers", "required (a comma separated list of host:port)"},
}

// TestSinkProblemsUnderTheirBlock: each sink kind names its options
// relative to its own block, and the block's path is prefixed once,
// whether the sink is the job's sink or its dead-letter sink. (The file
// sink's problems once read "deadLetter.file: sink.file.path: required".)
func TestSinkProblemsUnderTheirBlock(t *testing.T) {
	fields := (&sluicev1.Sink{}).ProtoReflect().Descriptor().Oneofs().ByName(kindOneof).Fields()
	for i := 0; i < fields.Len(); i++ {
		kind := fields.Get(i).JSONName()
		bad, ok := badSinks[kind]
		if !ok {
			t.Errorf("no test case for sink kind %s: add it to badSinks", kind)
			continue
		}
		if bad.block == "" {
			continue
		}
		for _, role := range []string{"sink", "deadLetter"} {
			t.Run(role+"."+kind, func(t *testing.T) {
				yaml := fmt.Sprintf("sink: {%s: %s}\n", kind, bad.block)
				if role == "deadLetter" {
					yaml = fmt.Sprintf("sink: {discard: {}}\nonError: deadLetter\ndeadLetter: {%s: %s}\n", kind, bad.block)
				}
				_, err := compileSinkYAML(t, yaml)
				var je *Error
				if !errors.As(err, &je) {
					t.Fatalf("Compile() = %v, want a *jobspec.Error", err)
				}
				field := role + "." + kind + "." + bad.option
				if len(je.List) != 1 || je.List[0].Field != field || je.List[0].Description != bad.want {
					t.Fatalf("Compile() = %v, want only %s: %s", err, field, bad.want)
				}
				if want := "invalid job spec: " + field + ": " + bad.want; err.Error() != want {
					t.Fatalf("Error() = %q, want %q", err.Error(), want)
				}
			})
		}
	}
}

// TestBlockPaths: the source and checkpoint blocks name their problems the
// same way. (The Kafka source's once read "source.kafka:
// source.kafka.maxOffsetsPerTrigger: ...".)
func TestBlockPaths(t *testing.T) {
	for _, tc := range []struct {
		name        string
		edit        func(string) string
		field, want string
	}{
		{"kafka source", func(s string) string {
			return strings.Replace(s, "maxOffsetsPerTrigger: 50000", "maxOffsetsPerTrigger: -5", 1)
		}, "source.kafka.maxOffsetsPerTrigger", "must not be negative"},
		{"checkpoint", func(s string) string { return s + "checkpoint: {dynamodb: {table: \"a b\"}}\n" },
			"checkpoint.dynamodb.table", "must be 3-255 letters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := ParseYAML([]byte(tc.edit(good)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Compile(spec)
			var je *Error
			if !errors.As(err, &je) || len(je.List) != 1 || je.List[0].Field != tc.field ||
				!strings.Contains(je.List[0].Description, tc.want) || strings.Contains(je.List[0].Description, tc.field) {
				t.Fatalf("Compile() = %v, want only %s: ...%s...", err, tc.field, tc.want)
			}
		})
	}
}

func TestJoinPath(t *testing.T) {
	for _, tc := range []struct{ path, rel, want string }{
		{"sink.postgres", "columns[1].type", "sink.postgres.columns[1].type"},
		{"sink.file", "", "sink.file"},
		{"", "name", "name"},
		{"transforms", "[2]", "transforms[2]"},
	} {
		if got := joinPath(tc.path, tc.rel); got != tc.want {
			t.Errorf("joinPath(%q, %q) = %q, want %q", tc.path, tc.rel, got, tc.want)
		}
	}
}
