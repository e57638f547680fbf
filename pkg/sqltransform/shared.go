//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// CompileShared is Compile on the process's engine (SharedEngine), which
// remembers the pipelines it compiled lately. A driver compiles each job's
// transforms at least twice: at SubmitJob, to refuse a bad one, and again
// when it runs the job with its secrets resolved, which no transform reads.
// The second compile would repeat tens of milliseconds of binding and
// planning in DuckDB (about 60 ms for seed 003's query) between a submit
// and its first batch. Sharing the pipeline is safe: a Pipeline is
// immutable, and the shared engine is never closed.
//
// Only successes are remembered; a configuration that fails compiles again
// and reports its errors afresh.
func CompileShared(ctx context.Context, cfg Config) (*Pipeline, error) {
	eng, err := SharedEngine(ctx)
	if err != nil {
		return nil, err
	}
	key, err := cfg.key()
	if err != nil {
		return nil, fmt.Errorf("sqltransform: %w", err)
	}
	if p := recent.get(key); p != nil {
		return p, nil
	}
	p, err := Compile(ctx, eng, cfg)
	if err != nil {
		return nil, err
	}
	recent.put(key, p)
	return p, nil
}

// key identifies everything in cfg that a compile reads: two configs with
// the same key compile to the same pipeline.
func (cfg Config) key() (string, error) {
	if cfg.Source == nil {
		return "", fmt.Errorf("no source schema")
	}
	// Schema.String names every field with its type, nullability and
	// metadata; the rest of Config is plain exported values.
	b, err := json.Marshal(struct {
		Source string
		Config
	}{cfg.Source.String(), cfg})
	if err != nil {
		return "", fmt.Errorf("key of a compile: %w", err)
	}
	return string(b), nil
}

// recentSize is how many pipelines CompileShared remembers: many more than
// the jobs a driver submits and starts at once.
const recentSize = 32

// recent is CompileShared's memory, least recently used first.
var recent pipelines

type pipelines struct {
	mu      sync.Mutex
	entries []recentPipeline
}

type recentPipeline struct {
	key string
	p   *Pipeline
}

func (r *pipelines) get(key string) *Pipeline {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, e := range r.entries {
		if e.key == key {
			r.entries = append(slices.Delete(r.entries, i, i+1), e)
			return e.p
		}
	}
	return nil
}

func (r *pipelines) put(key string, p *Pipeline) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.entries = slices.DeleteFunc(r.entries, func(e recentPipeline) bool { return e.key == key })
	if len(r.entries) >= recentSize {
		r.entries = slices.Delete(r.entries, 0, len(r.entries)-recentSize+1)
	}
	r.entries = append(r.entries, recentPipeline{key: key, p: p})
}
