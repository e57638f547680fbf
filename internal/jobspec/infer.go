package jobspec

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/rpc"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// InferredSchemaField is the field a driver fills when it infers a schema:
// only a SQL job's first step reads the source's payload, so only its
// schema can be inferred from the source's records.
const InferredSchemaField = "transforms[0].decode.schema"

// SchemaToInfer returns the decode of spec whose schema the driver infers
// at submit: the job's first step, when it decodes json
// and gives no schema. Nil when there is none.
func SchemaToInfer(spec *sluicev1.JobSpec) *sluicev1.Decode {
	ts := spec.GetTransforms()
	if len(ts) == 0 {
		return nil
	}
	d := ts[0].GetDecode()
	if d == nil || d.GetFormat() != "json" || d.GetSchema() != "" {
		return nil
	}
	return d
}

// PayloadField is the record field a decode reads when it names none: Kafka's
// value, else Kinesis' data (the rule sqltransform's decode applies).
func PayloadField(d *sluicev1.Decode, fields map[string]any) string {
	if f := d.GetField(); f != "" {
		return f
	}
	if _, ok := fields["value"]; ok {
		return "value"
	}
	return "data"
}

// CompileSource compiles spec's name and source alone, secrets resolved for
// use, for a driver to read the source before the job is complete (to infer
// a schema). A Kinesis source is read by polling: an enhanced fan-out
// consumer registered for a sample would outlive a submit that is then
// refused. The error is the source's problems, as Compile reports them.
func CompileSource(spec *sluicev1.JobSpec) (*Job, error) {
	src := spec.GetSource()
	if k := src.GetKinesis(); k != nil && k.GetConsumerMode() != "" {
		src = proto.Clone(src).(*sluicev1.Source)
		k := src.GetKinesis()
		k.ConsumerMode, k.ConsumerName, k.ConsumerNamePrefix, k.ConsumerRefreshInterval = "", "", "", ""
		k.RequireConsumerDeregistration, k.ConsumerLifecycle = false, ""
	}
	only := &sluicev1.JobSpec{
		Name:   spec.GetName(),
		Source: src,
		Sink:   &sluicev1.Sink{Kind: &sluicev1.Sink_Discard{Discard: &sluicev1.DiscardSink{}}},
	}
	return CompileForUse(only)
}

// SchemaError is the refusal of a submit whose schema could not be
// inferred: InvalidArgument naming InferredSchemaField.
func SchemaError(format string, args ...any) error {
	return &Error{List: []rpc.FieldViolation{{Field: InferredSchemaField,
		Description: fmt.Sprintf(format, args...) + `; give the payload's fields and types as a Spark DDL string, like "branch STRING, amount BIGINT"`}}}
}

// CheckBeforeInference compiles what of spec does not depend on its
// transforms (name, source, sink, trigger, limits, ...), for a driver to
// refuse a spec with those wrong before it reads the source to infer a
// schema. The transforms and the options of a stateful job, which need the
// schema, are checked by Compile once it is known.
func CheckBeforeInference(spec *sluicev1.JobSpec) error {
	base := proto.Clone(spec).(*sluicev1.JobSpec)
	base.Transforms, base.OutputMode, base.Watermark, base.DropDuplicates, base.State = nil, "", nil, nil, nil
	if c := base.GetCheckpoint(); c != nil {
		c.State = ""
	}
	_, err := Compile(base, func(o *compileOptions) { o.schemaUnknown = true })
	return err
}
