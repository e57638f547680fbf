package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/stream"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Schema inference at submit: a SQL job whose first step decodes JSON
// without a schema gets one inferred from the first records at the source's
// starting position, recorded in its spec (decode.schema, with
// schemaInferred), so every task of every batch decodes the same columns
// and a query is still checked against them before the job is accepted.
// Spark's streaming sources ask for a schema for the same reason; Auto
// Loader infers one once and keeps it (cloudFiles.schemaLocation), which is
// what this does.

const (
	// inferRecords is how many records a schema is inferred from, spread
	// over the batch's first ranges (as Auto Loader samples the first files).
	inferRecords = 1000
	// inferTimeout bounds reading them, inside the submit call.
	inferTimeout = 20 * time.Second
)

// inferSchema returns spec with its first decode's schema inferred, or spec
// itself when it needs none. A job submitted again under its name keeps the
// schema inferred the first time.
func (a *api) inferSchema(ctx context.Context, spec *sluicev1.JobSpec) (*sluicev1.JobSpec, error) {
	if jobspec.SchemaToInfer(spec) == nil {
		return spec, nil
	}
	if err := jobspec.CheckBeforeInference(spec); err != nil {
		return nil, err
	}
	spec = proto.Clone(spec).(*sluicev1.JobSpec)
	d := jobspec.SchemaToInfer(spec)
	kept, err := a.keptSchema(ctx, spec.GetName(), d)
	if err != nil {
		return nil, err
	}
	if kept != "" {
		d.Schema, d.SchemaInferred = kept, true
		return spec, nil
	}
	job, err := jobspec.CompileSource(spec)
	if err != nil {
		// The source is invalid: the job's compile reports it, with the
		// missing schema.
		return spec, nil
	}
	ctx, cancel := context.WithTimeout(ctx, inferTimeout)
	defer cancel()
	payloads, err := samplePayloads(ctx, job, d, inferRecords)
	switch {
	case err != nil:
		return nil, fmt.Errorf("transforms[0].decode.schema is not given, and reading records to infer it failed (give the schema, or submit again once the source answers): %w: %w", err, rpc.ErrUnavailable)
	case len(payloads) == 0:
		return nil, jobspec.SchemaError("is not given, and the source holds no records at its starting position to infer it from")
	}
	inf, err := sqlengine.InferJSONSchema(payloads)
	if err != nil {
		return nil, jobspec.SchemaError("is not given and could not be inferred from %d records: %v", len(payloads), err)
	}
	d.Schema, d.SchemaInferred = inf.Schema, true
	a.d.log.Info("schema inferred", "job", spec.GetName(), "schema", inf.Schema,
		"records", inf.Objects, "not_objects", inf.Skipped)
	return spec, nil
}

// keptSchema is the schema inferred for the job named name when it was
// submitted before, if its first step then was the same decode.
func (a *api) keptSchema(ctx context.Context, name string, d *sluicev1.Decode) (string, error) {
	rec, err := a.d.store.GetJob(ctx, name)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("read job %q: %w", name, err)
	case rec.Spec == nil:
		return "", nil
	}
	var stored sluicev1.JobSpec
	if err := proto.Unmarshal(rec.Spec, &stored); err != nil {
		return "", nil // an unreadable entry: infer afresh (submit reports the entry)
	}
	ts := stored.GetTransforms()
	if len(ts) == 0 {
		return "", nil
	}
	old := ts[0].GetDecode()
	if !old.GetSchemaInferred() || old.GetFormat() != "json" || old.GetField() != d.GetField() {
		return "", nil
	}
	return old.GetSchema(), nil
}

// samplePayloads reads up to n payloads of d's field from the ranges the
// source plans for a first batch, an equal share from each range in order
// (the first ranges when there are more than n). Tombstones and records the
// reader could not unpack are passed over.
func samplePayloads(ctx context.Context, job *jobspec.Job, d *sluicev1.Decode, n int) ([][]byte, error) {
	src, err := job.NewSource()
	if err != nil {
		return nil, err
	}
	defer src.Close()
	plan, err := src.Plan(ctx, connectors.PlanRequest{})
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	if len(plan.Ranges) == 0 {
		return nil, nil
	}
	ranges := append([]stream.Range(nil), plan.Ranges...)
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].Key() < ranges[j].Key() })
	pool, err := job.NewReaderPool()
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	share := max(1, (n+len(ranges)-1)/len(ranges))
	var out [][]byte
	for _, r := range ranges {
		if len(out) >= n {
			break
		}
		got, err := readPayloads(ctx, pool, r, d, min(share, n-len(out)))
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// readPayloads reads up to n payloads from range r.
func readPayloads(ctx context.Context, pool connectors.ReaderPool, r stream.Range, d *sluicev1.Decode, n int) ([][]byte, error) {
	rd, err := pool.Open(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", r.Key(), err)
	}
	defer rd.Close()
	var out [][]byte
	for len(out) < n {
		recs, err := rd.Read(ctx)
		for _, rec := range recs {
			if rec.Err != nil || len(out) >= n {
				continue
			}
			switch v := rec.Fields[jobspec.PayloadField(d, rec.Fields)].(type) {
			case []byte:
				if v != nil {
					out = append(out, v)
				}
			case string:
				out = append(out, []byte(v))
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return out, nil
		case err != nil && len(out) > 0 && ctx.Err() != nil:
			return out, nil // out of time: infer from what was read
		case err != nil:
			return nil, fmt.Errorf("read %s: %w", r.Key(), err)
		}
	}
	return out, nil
}
