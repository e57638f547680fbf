//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/stream"
	"github.com/sluicehq/sluice/pkg/transform"
)

// OutputMode is what a stateful aggregate writes each batch, as Spark's
// output modes name it. The zero value keeps no state: each batch's groups
// are its own rows' (the driver merges the tasks' partials).
type OutputMode string

const (
	PerBatch OutputMode = ""
	// Update writes the groups the batch changed, with their running values.
	Update OutputMode = "update"
	// Complete writes every group after each batch.
	Complete OutputMode = "complete"
)

// stateStep describes how an aggregating pipeline keeps its groups as
// key/value pairs: the partial schema's group-key columns (__kN, first)
// encoded as the key, its partial states (__pN) as the value.
type stateStep struct {
	mode  OutputMode
	nkeys int
	key   *columnar.RowCodec
	value *columnar.RowCodec
	// all encodes whole partial rows, for routing them to partitions.
	all *columnar.RowCodec
}

// compileState checks that the pipeline's query can keep state in mode and
// prepares the codecs; errors name the field at path.
func (p *Pipeline) compileState(mode OutputMode, modePath, queryPath string) error {
	switch mode {
	case Update, Complete:
	default:
		return &transform.FieldError{Field: modePath, Reason: fmt.Sprintf("%q is not an output mode: update or complete", string(mode))}
	}
	if p.dist.Final == nil {
		return &transform.FieldError{Field: modePath, Reason: fmt.Sprintf("%s keeps the groups of an aggregate across batches, and the last sql step does not aggregate (GROUP BY or an aggregate function)", mode)}
	}
	if p.dist.Combine == nil {
		return queryFieldError(queryPath, p.dist.StateRefusal)
	}
	s := p.PartialSchema()
	st := &stateStep{mode: mode}
	for st.nkeys < s.NumFields() && strings.HasPrefix(s.Field(st.nkeys).Name, "__k") {
		st.nkeys++
	}
	keys, values, all := make([]int, 0, st.nkeys), make([]int, 0, s.NumFields()-st.nkeys), make([]int, 0, s.NumFields())
	for i := range s.NumFields() {
		if i < st.nkeys {
			keys = append(keys, i)
		} else {
			values = append(values, i)
		}
		all = append(all, i)
	}
	var err error
	if st.key, err = columnar.NewRowCodec(s, keys); err == nil {
		if st.value, err = columnar.NewRowCodec(s, values); err == nil {
			st.all, err = columnar.NewRowCodec(s, all)
		}
	}
	if err != nil {
		return &transform.FieldError{Field: queryPath + ".query", Reason: fmt.Sprintf("the aggregate's groups cannot be kept as state: %v", err)}
	}
	p.state = st
	return nil
}

// Stateful reports whether the pipeline keeps its groups across batches.
func (p *Pipeline) Stateful() bool { return p.state != nil }

// OutputMode is the stateful pipeline's output mode (PerBatch when it keeps
// no state).
func (p *Pipeline) OutputMode() OutputMode {
	if p.state == nil {
		return PerBatch
	}
	return p.state.mode
}

// StatePartition is the state partition, of n, that holds the group whose
// encoded key is key. It is part of the state's format: a group must land
// in the same partition in every batch and every release.
func StatePartition(key []byte, n int) int {
	h := fnv.New64a()
	_, _ = h.Write(key) // never fails
	return int(h.Sum64() % uint64(n))
}

// Route spreads a batch's partial aggregates (the tasks' RunTask outputs,
// IPC-encoded as in Merge) over n state partitions by their group keys:
// out[i] is partition i's share, IPC-encoded, nil when it has none.
func (p *Pipeline) Route(partials [][]byte, n int) ([][]byte, error) {
	if p.state == nil {
		return nil, errors.New("sqltransform: Route on a pipeline that keeps no state")
	}
	mem := memory.DefaultAllocator
	schema := p.PartialSchema()
	builders := make([]*array.RecordBuilder, n)
	defer func() {
		for _, b := range builders {
			if b != nil {
				b.Release()
			}
		}
	}()
	var key, row []byte
	for i, data := range partials {
		batches, err := p.decodePartials(mem, data, fmt.Sprintf("partial aggregate %d", i))
		if err != nil {
			return nil, err
		}
		for _, rec := range batches {
			for r := range int(rec.NumRows()) {
				if key, err = p.state.key.Append(key[:0], rec, r); err == nil {
					row, err = p.state.all.Append(row[:0], rec, r)
				}
				if err != nil {
					releaseBatches(batches)
					return nil, fmt.Errorf("route partial aggregate %d: %w", i, err)
				}
				part := StatePartition(key, n)
				if builders[part] == nil {
					builders[part] = array.NewRecordBuilder(mem, schema)
				}
				if err := p.state.all.Decode(builders[part].Fields(), row); err != nil {
					releaseBatches(batches)
					return nil, fmt.Errorf("route partial aggregate %d: %w", i, err)
				}
			}
		}
		releaseBatches(batches)
	}
	out := make([][]byte, n)
	for i, b := range builders {
		if b == nil {
			continue
		}
		rec := b.NewRecordBatch()
		data, err := columnar.EncodeIPC(schema, []arrow.RecordBatch{rec})
		rec.Release()
		if err != nil {
			return nil, fmt.Errorf("encode state partition %d's share: %w", i, err)
		}
		out[i] = data
	}
	return out, nil
}

// decodePartials decodes one IPC-encoded partial aggregate (empty: none)
// and checks its schema. The caller releases the batches.
func (p *Pipeline) decodePartials(mem memory.Allocator, data []byte, what string) ([]arrow.RecordBatch, error) {
	if len(data) == 0 {
		return nil, nil
	}
	schema, batches, err := columnar.DecodeIPC(mem, data)
	if err != nil {
		releaseBatches(batches)
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	if !schema.Equal(p.PartialSchema()) {
		releaseBatches(batches)
		return nil, fmt.Errorf("%s: schema %s, want %s (was it written by another version of the job?)", what, schema, p.PartialSchema())
	}
	return batches, nil
}

func releaseBatches(bs []arrow.RecordBatch) {
	for _, b := range bs {
		b.Release()
	}
}

// StateReader is a state partition's groups as MergeState reads them:
// encoded keys and values, as StateChange writes them.
type StateReader interface {
	Get(key []byte) (value []byte, ok bool, err error)
	Scan(fn func(key, value []byte) error) error
}

// StateChange is one group's new state. Key and Value are the pipeline's
// encoding; they are part of the state's format.
type StateChange struct{ Key, Value []byte }

// StateResult is what MergeState made of a batch.
type StateResult struct {
	// Changes are the groups the batch changed, with their merged states.
	Changes []StateChange
	// Rows are the output rows: the changed groups' running results
	// (Update) or every group's (Complete), in the query's columns.
	Rows []stream.Row
}

// MergeState merges a state partition's share of a batch (input, as Route
// made it; empty when none) into its groups in st: it returns the changed
// groups and the rows to write. st is read, never written; the caller
// commits Changes. now is the batch's time, which the query's select list
// sees.
func (p *Pipeline) MergeState(ctx context.Context, mem memory.Allocator, st StateReader, input []byte, now time.Time) (StateResult, error) {
	var res StateResult
	if p.state == nil {
		return res, errors.New("sqltransform: MergeState on a pipeline that keeps no state")
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	fresh, err := p.decodePartials(mem, input, "state input")
	if err != nil {
		return res, err
	}
	defer releaseBatches(fresh)

	// The groups' states before the batch, for the keys the batch has.
	old := array.NewRecordBuilder(mem, p.PartialSchema())
	defer old.Release()
	fields := old.Fields()
	nold := 0
	seen := map[string]bool{}
	var key []byte
	for _, rec := range fresh {
		for r := range int(rec.NumRows()) {
			if key, err = p.state.key.Append(key[:0], rec, r); err != nil {
				return res, fmt.Errorf("encode a group key: %w", err)
			}
			if seen[string(key)] {
				continue
			}
			seen[string(key)] = true
			v, ok, err := st.Get(key)
			if err != nil {
				return res, fmt.Errorf("read state: %w", err)
			}
			if !ok {
				continue
			}
			if err := p.decodeGroup(fields, key, v); err != nil {
				return res, err
			}
			nold++
		}
	}
	in := fresh
	if nold > 0 {
		prev := old.NewRecordBatch()
		defer prev.Release()
		in = append([]arrow.RecordBatch{prev}, fresh...)
	}
	var merged []arrow.RecordBatch
	if len(fresh) > 0 {
		if merged, err = p.dist.Combine.RunBatches(ctx, in, sqlengine.WithNow(now)); err != nil {
			return res, stateQueryErr("merge the batch into the state", err)
		}
	}
	defer releaseBatches(merged)
	changed := map[string]bool{}
	for _, rec := range merged {
		for r := range int(rec.NumRows()) {
			k, err := p.state.key.Append(nil, rec, r)
			if err != nil {
				return res, fmt.Errorf("encode a group key: %w", err)
			}
			v, err := p.state.value.Append(nil, rec, r)
			if err != nil {
				return res, fmt.Errorf("encode a group's state: %w", err)
			}
			res.Changes = append(res.Changes, StateChange{Key: k, Value: v})
			changed[string(k)] = true
		}
	}

	// The groups to output: the changed ones, or all of them.
	out := merged
	if p.state.mode == Complete {
		all := array.NewRecordBuilder(mem, p.PartialSchema())
		defer all.Release()
		if err := st.Scan(func(k, v []byte) error {
			if changed[string(k)] {
				return nil
			}
			return p.decodeGroup(all.Fields(), k, v)
		}); err != nil {
			return res, fmt.Errorf("read state: %w", err)
		}
		rest := all.NewRecordBatch()
		defer rest.Release()
		out = append([]arrow.RecordBatch{rest}, merged...)
	}
	if len(out) == 0 {
		return res, nil
	}
	rows, err := p.RunFinal(ctx, out, now)
	if err != nil {
		return res, stateQueryErr("compute the output rows", err)
	}
	defer rows.Release()
	for rows.Next() {
		if res.Rows, err = columnar.AppendRows(res.Rows, rows.RecordBatch()); err != nil {
			return res, connectors.Permanent(fmt.Errorf("convert output rows: %w", err))
		}
	}
	if err := rows.Err(); err != nil {
		return res, stateQueryErr("compute the output rows", err)
	}
	return res, nil
}

// decodeGroup appends one stored group to a partial-schema builder.
func (p *Pipeline) decodeGroup(fields []array.Builder, key, value []byte) error {
	if err := p.state.key.Decode(fields[:p.state.nkeys], key); err != nil {
		return fmt.Errorf("decode a stored group key: %w", err)
	}
	if err := p.state.value.Decode(fields[p.state.nkeys:], value); err != nil {
		return fmt.Errorf("decode a stored group's state: %w", err)
	}
	return nil
}

// stateQueryErr: a query error is permanent, the same state and input fail
// the same way again.
func stateQueryErr(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	if errors.Is(err, sqlengine.ErrExecution) {
		return connectors.Permanent(err)
	}
	return err
}
