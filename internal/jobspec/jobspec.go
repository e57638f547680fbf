// Package jobspec turns a user's JobSpec (the generated proto type) into the
// engine's domain configuration: it parses YAML, validates the whole spec
// before a job is accepted, builds sources, sinks and transform pipelines,
// and redacts secrets before a spec is shown or logged.
//
// Domain packages (connectors, transform, scheduler) never see proto types;
// this package is the conversion layer docs/design.md, Seams, asks for.
package jobspec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/sluicehq/sluice/internal/secrets"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/scheduler"
	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/task"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// ParseYAML reads a job file. Field names are the proto's JSON names; an
// unknown field is an error naming it.
func ParseYAML(data []byte) (*sluicev1.JobSpec, error) {
	// YAML 1.2 (yaml.v3): "n", "no", "on" stay strings. YAML 1.1 would read
	// `as: n` as false, and Spark users name count columns n.
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse job YAML: %w", err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("parse job YAML: %w", err)
	}
	spec := &sluicev1.JobSpec{}
	if err := protojson.Unmarshal(js, spec); err != nil {
		return nil, fmt.Errorf("parse job spec: %w", err)
	}
	return spec, nil
}

// Trigger is a job's trigger in domain terms.
type Trigger struct {
	Interval     time.Duration
	Once         bool
	AvailableNow bool
}

// String renders the trigger as the user wrote it.
func (t Trigger) String() string {
	switch {
	case t.Once:
		return "once"
	case t.AvailableNow:
		return "availableNow"
	}
	return "processingTime " + t.Interval.String()
}

// Job is a validated spec in the engine's terms.
type Job struct {
	Spec *sluicev1.JobSpec
	// SQL holds the job's transforms, compiled to one query per task; nil
	// for a job without any.
	SQL *sqltransform.Pipeline
	// State is how a stateful job (outputMode) keeps its groups; nil for a
	// job that keeps none.
	State   *StateConfig
	Trigger Trigger
	OnError string
	Retry   scheduler.RetryPolicy
	// Restart decides whether and when the job runs again after a batch
	// failed for a cause that may go away (restartStrategy).
	Restart scheduler.RestartPolicy
	// Hash identifies the spec's content; executors key cached state by it.
	Hash string

	// validateOnly: Compile replaced secret references or encrypted values
	// with placeholders, so nothing may be built from this Job.
	validateOnly bool

	source     sourceConfig
	sink       sinkConfig
	deadLetter sinkConfig
	checkpoint checkpointConfig
}

// sourceConfig is one validated source: each source kind's adapter
// (connectors.go) converts its proto options into one.
type sourceConfig interface {
	newSource() (connectors.Source, error)
	newReaderPool() (connectors.ReaderPool, error)
	// schema is the Arrow schema of the source's records (SQL jobs).
	schema() *arrow.Schema
	// identity must not call the service: the API compares it on submit.
	identity() string
}

// sinkConfig is one validated sink, made by its kind's adapter
// (connectors.go); console output goes to out.
type sinkConfig interface {
	newSink(out io.Writer) (connectors.Sink, error)
}

// checkpointConfig is a job's own checkpoint store (checkpoint.go and its
// kind's adapter).
type checkpointConfig interface {
	open(ctx context.Context) (checkpoint.Store, error)
	minBatchesToRetain() int
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Option changes how Compile treats a spec.
type Option func(*compileOptions)

type compileOptions struct {
	resolver *secrets.Resolver
	// schemaUnknown: the spec's transforms were left out (to check the
	// rest before inferring a schema), so the rows the sinks receive are
	// not known and their expressions are checked for shape only.
	schemaUnknown bool
}

// ResolveSecrets makes Compile resolve the spec's secret references
// (${env:NAME}, ${file:/path}) with r, so the job's sources, sinks and
// checkpoint store get the values. Without it, Compile only checks their
// syntax and the Job can be inspected but builds nothing.
func ResolveSecrets(r secrets.Resolver) Option {
	return func(o *compileOptions) { o.resolver = &r }
}

// CompileForUse compiles a spec that is about to run here: its secret
// references are resolved against this process's environment and files
// (secrets.OS). spec must hold no encrypted value (the driver decrypts
// catalog entries with secrets.Open first). Errors name the field and the
// reference, never a secret value.
func CompileForUse(spec *sluicev1.JobSpec) (*Job, error) {
	return Compile(spec, ResolveSecrets(secrets.OS))
}

// Compile validates spec completely and returns the job. Every problem is
// reported, each under its field path; the error is an *Error. Secret
// values are never quoted in it.
func Compile(spec *sluicev1.JobSpec, opts ...Option) (*Job, error) {
	var o compileOptions
	for _, opt := range opts {
		opt(&o)
	}
	e := &Error{}
	if spec == nil {
		e.add("spec", "is required")
		return nil, e
	}
	checkUnknown(spec.ProtoReflect(), "", e)
	j := &Job{Spec: spec, Retry: scheduler.DefaultRetryPolicy}
	// The connector options are read from a copy whose secrets are
	// resolved (for use) or replaced by placeholders (to validate);
	// j.Spec stays as written, references and envelopes included.
	spec, values := secretsFor(j, o, e)

	switch {
	case spec.GetName() == "":
		e.add("name", "is required")
	case !nameRE.MatchString(spec.GetName()):
		e.add("name", "%q must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit", spec.GetName())
	}

	j.source = compileSource(spec.GetSource(), e.at("source"), spec.GetName())

	j.State = compileState(spec, e)
	// Transforms are SQL (pkg/sqltransform); a job without any passes its
	// records through to the sink as they are.
	if len(spec.GetTransforms()) > 0 {
		compileSQL(j, spec, e)
	}

	// The sinks' per-record expressions are checked against the rows they
	// receive: the query's output, the source's records without transforms,
	// and for dead letters the source's records with the error.
	var out, dead *arrow.Schema
	if !o.schemaUnknown {
		out, dead = outputSchema(j, spec), deadLetterSchema(j)
	}
	j.sink = compileSink(spec.GetSink(), e.at("sink"), sinkRole{name: "sink", rows: out}, true)

	switch onErr := spec.GetOnError(); onErr {
	case "", task.OnErrorFail:
		j.OnError = task.OnErrorFail
	case task.OnErrorSkip:
		j.OnError = task.OnErrorSkip
	case task.OnErrorDeadLetter:
		j.OnError = task.OnErrorDeadLetter
		if spec.GetDeadLetter() == nil {
			e.add("deadLetter", "is required when onError is deadLetter")
		}
	default:
		e.add("onError", "%q is not one of fail, skip, deadLetter", onErr)
	}
	if spec.GetDeadLetter() != nil {
		if j.OnError != task.OnErrorDeadLetter {
			e.add("deadLetter", "is set but onError is %q; set onError: deadLetter", j.OnError)
		}
		j.deadLetter = compileSink(spec.GetDeadLetter(), e.at("deadLetter"), sinkRole{name: "deadLetter", rows: dead}, false)
	}
	if c := spec.GetCheckpoint(); c != nil {
		j.checkpoint = compileCheckpoint(c, e.at("checkpoint"))
	}

	switch tr := spec.GetTrigger().GetKind().(type) {
	case nil:
		// Spark's default: the next batch as soon as the last one is done.
	case *sluicev1.Trigger_ProcessingTime:
		d, err := parseDuration(tr.ProcessingTime)
		switch {
		case err != nil:
			e.add("trigger.processingTime", "%q is not a duration like 2s or 500ms", tr.ProcessingTime)
		case d < 0:
			e.add("trigger.processingTime", "must not be negative (got %s)", tr.ProcessingTime)
		default:
			j.Trigger.Interval = d
		}
	case *sluicev1.Trigger_Once:
		if !tr.Once {
			e.add("trigger.once", "must be true when set")
		}
		j.Trigger.Once = true
	case *sluicev1.Trigger_AvailableNow:
		if !tr.AvailableNow {
			e.add("trigger.availableNow", "must be true when set")
		}
		j.Trigger.AvailableNow = true
	}

	if l := spec.GetLimits(); l != nil {
		switch n := l.GetMaxTaskFailures(); {
		case n < 0:
			e.add("limits.maxTaskFailures", "must not be negative (got %d)", n)
		case n > 0:
			j.Retry.MaxFailures = int(n)
		}
		if s := l.GetTaskTimeout(); s != "" {
			d, err := parseDuration(s)
			switch {
			case err != nil:
				e.add("limits.taskTimeout", "%q is not a duration like 10m", s)
			case d <= 0:
				e.add("limits.taskTimeout", "must be positive (got %s)", s)
			default:
				j.Retry.Timeout = d
			}
		}
	}
	j.Restart = compileRestart(spec.GetRestartStrategy(), "restartStrategy", e)
	j.Retry.Speculation = compileSpeculation(spec, e)
	if len(e.List) > 0 {
		// A connector may quote an option it rejects; never a secret.
		for i := range e.List {
			e.List[i].Description = secrets.Scrub(e.List[i].Description, values)
		}
		return nil, e
	}
	j.Hash = Hash(j.Spec)
	return j, nil
}

// secretsFor checks the syntax of spec's secret values and returns the
// copy of it the connector options are read from, with the secret values
// it holds. With a resolver, references are resolved; otherwise they and
// encrypted values become placeholders and j builds nothing.
func secretsFor(j *Job, o compileOptions, e *Error) (*sluicev1.JobSpec, []string) {
	problems := secrets.Check(j.Spec)
	for _, p := range problems {
		e.add(p.Field, "%s", p.Description)
	}
	if o.resolver != nil && len(problems) == 0 {
		resolved, values, err := secrets.Resolve(j.Spec, *o.resolver)
		if err == nil {
			return resolved, values
		}
		var re *secrets.ReferenceError
		var ke *secrets.KeyError
		switch {
		case errors.As(err, &re):
			e.add(re.Field, "secret reference %s: %s", re.Reference, re.Reason)
		case errors.As(err, &ke):
			e.add(ke.Field, "%s", strings.TrimPrefix(ke.Error(), ke.Field+": "))
		default:
			e.add("spec", "%v", err)
		}
	}
	spec, changed := secrets.Placeholders(j.Spec)
	j.validateOnly = changed
	return spec, nil
}

// errValidateOnly refuses to build connectors from placeholders.
var errValidateOnly = errors.New("job spec compiled for validation only: its secret references were not resolved (use CompileForUse)")

// addFieldErrors adds every *sqltransform.FieldError in err (which may join
// several) under its own field.
func addFieldErrors(e *Error, err error) {
	var fe *sqltransform.FieldError
	switch {
	case errors.As(err, &fe) && fe == err:
		e.add(fe.Field, "%s", fe.Reason)
	case isJoined(err):
		for _, sub := range err.(interface{ Unwrap() []error }).Unwrap() {
			addFieldErrors(e, sub)
		}
	case errors.As(err, &fe):
		e.add(fe.Field, "%s", fe.Reason)
	default:
		e.add("transforms", "%v", err)
	}
}

func isJoined(err error) bool {
	_, ok := err.(interface{ Unwrap() []error })
	return ok
}

func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

// checkUnknown refuses fields a newer client sent that this driver does not
// know: silently ignoring them would run a different job than the one asked.
func checkUnknown(m protoreflect.Message, path string, e *Error) {
	if len(m.GetUnknown()) > 0 {
		field := path
		if field == "" {
			field = "spec"
		}
		e.add(field, "has fields this driver does not know; is the driver older than the client?")
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := fd.JSONName()
		if path != "" {
			p = path + "." + p
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			for i := 0; i < v.List().Len(); i++ {
				checkUnknown(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), e)
			}
		case fd.IsMap():
		case fd.Message() != nil:
			checkUnknown(v.Message(), p, e)
		}
		return true
	})
}

// NewSource builds the driver half of the job's source.
func (j *Job) NewSource() (connectors.Source, error) {
	if j.validateOnly {
		return nil, errValidateOnly
	}
	return j.source.newSource()
}

// NewReaderPool builds the executor half of the job's source.
func (j *Job) NewReaderPool() (connectors.ReaderPool, error) {
	if j.validateOnly {
		return nil, errValidateOnly
	}
	return j.source.newReaderPool()
}

// NewSink builds the job's sink; console output goes to out.
func (j *Job) NewSink(out io.Writer) (connectors.Sink, error) {
	if j.validateOnly {
		return nil, errValidateOnly
	}
	return j.sink.newSink(out)
}

// NewDeadLetterSink builds the dead-letter sink, or returns nil when the job
// has none.
func (j *Job) NewDeadLetterSink(out io.Writer) (connectors.Sink, error) {
	if j.deadLetter == nil {
		return nil, nil
	}
	if j.validateOnly {
		return nil, errValidateOnly
	}
	return j.deadLetter.newSink(out)
}

// OpenCheckpoint opens the job's own checkpoint store, or returns nil when the
// job keeps its checkpoints in the driver's store.
func (j *Job) OpenCheckpoint(ctx context.Context) (checkpoint.Store, error) {
	if j.checkpoint == nil {
		return nil, nil
	}
	if j.validateOnly {
		return nil, errValidateOnly
	}
	return j.checkpoint.open(ctx)
}

// MinBatchesToRetain is the job's checkpoint retention, 0 when the job leaves
// it to the driver.
func (j *Job) MinBatchesToRetain() int {
	if j.checkpoint == nil {
		return 0
	}
	return j.checkpoint.minBatchesToRetain()
}

// SourceIdentity describes what the job reads; resubmitting a job whose
// checkpoint belongs to another source is refused.
// SourceSchema is the schema of the source's records: the rows a job
// without transforms copies to its sink.
func (j *Job) SourceSchema() *arrow.Schema { return j.source.schema() }

func (j *Job) SourceIdentity() string { return j.source.identity() }

// Hash is a stable digest of the spec's content.
func Hash(spec *sluicev1.JobSpec) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Redacted is the text shown for secrets.
const Redacted = "*****"

// Redact returns a copy of spec with every secret value (in clear or
// encrypted) replaced by Redacted, for API answers, logs and the UI; the
// fields are those secrets.Fields marks. References (${env:NAME},
// ${file:/path}) are shown as written: they hold no secret.
func Redact(spec *sluicev1.JobSpec) *sluicev1.JobSpec {
	if spec == nil {
		return nil
	}
	out := proto.Clone(spec).(*sluicev1.JobSpec)
	secrets.Redact(out, Redacted)
	return out
}
