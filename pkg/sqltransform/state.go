//go:build duckdb_arrow

package sqltransform

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/sluicehq/sluice/pkg/columnar"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/stream"
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
	// Append writes each group once, when the watermark has passed its
	// event time, and then forgets it.
	Append OutputMode = "append"
)

// Watermarks are what a state partition's batch needs of the job's
// watermark; zero times are "none yet".
type Watermarks struct {
	// Late: groups at or before it were complete before the batch; their
	// records are dropped and counted.
	Late time.Time
	// Complete: groups at or before it are complete after the batch
	// (written in append mode, forgotten in append and update mode).
	Complete time.Time
}

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
	// With a watermark: where the tasks' event-time states are, and which
	// group key is the group's event time (-1: none; the watermark then
	// only advances, it drops and completes nothing), read from its "end"
	// field when it is a window.
	et       *sqlengine.EventTimeParts
	eventKey int
	keyEnd   bool
	// maxCol is the column whose largest value is the batch's largest
	// event time (-1: none).
	maxCol int

	// sessionKey is the session_window key (-1: none). Its groups' state
	// keys are the other keys (length-prefixed, so that one key's sessions
	// share a prefix and a partition) then the session: other and sess
	// encode those, sessOnly a session alone, for merged sessions.
	sessionKey            int
	otherCols             []int
	other, sess, sessOnly *columnar.RowCodec

	// dedup: the step drops duplicate rows (dropDuplicates) instead of
	// aggregating; key encodes the identifying columns, eventKey is the
	// rows' event-time column (-1: none), within how long a key is kept
	// (0: for the job's life).
	dedup  bool
	within time.Duration
}

// Dedup is a job's dropDuplicates, for Config.
type Dedup struct {
	// Columns of the query's output that identify a row; Path names the
	// field for errors (dropDuplicates).
	Columns []string
	Path    string
	// Within: a key is forgotten once the watermark passes its first
	// row's event time plus Within; 0 keeps keys for the job's life.
	Within time.Duration
}

// compileDedup prepares a row-wise pipeline to drop duplicate rows.
func (p *Pipeline) compileDedup(d Dedup, query stepRef, watermark string) error {
	path := d.Path
	if path == "" {
		path = "dropDuplicates"
	}
	if p.dist.Final != nil {
		return &FieldError{Field: path, Reason: fmt.Sprintf("drops duplicate rows of a row-wise query, and %s aggregates; deduplicate in the query (GROUP BY) or drop dropDuplicates", query.field)}
	}
	if len(d.Columns) == 0 {
		return &FieldError{Field: path + ".columns", Reason: "is required: the output columns that identify a row, e.g. [id]"}
	}
	s := p.PartialSchema()
	st := &stateStep{mode: Append, dedup: true, eventKey: -1, maxCol: -1, sessionKey: -1, within: d.Within}
	var keys []int
	for i, c := range d.Columns {
		idx := columnIndex(s, c)
		if idx < 0 {
			return &FieldError{Field: fmt.Sprintf("%s.columns[%d]", path, i), Reason: fmt.Sprintf("%s is not a column of the query's output (%s)", c, strings.Join(names(s), ", "))}
		}
		keys = append(keys, idx)
	}
	if watermark != "" {
		idx := columnIndex(s, watermark)
		if idx < 0 {
			return &FieldError{Field: "watermark.column", Reason: fmt.Sprintf("dropDuplicates sees the query's output rows, which have no column %s: select it", watermark)}
		}
		if t := s.Field(idx).Type; t.ID() != arrow.TIMESTAMP {
			return &FieldError{Field: "watermark.column", Reason: fmt.Sprintf("%s is a %s; an event time is a TIMESTAMP", watermark, t)}
		}
		st.eventKey, st.maxCol = idx, idx
	} else if d.Within > 0 {
		return &FieldError{Field: path + ".within", Reason: "needs a watermark: the rows' event time says when a key may be forgotten"}
	}
	all := make([]int, s.NumFields())
	for i := range all {
		all[i] = i
	}
	var err error
	if st.key, err = columnar.NewRowCodec(s, keys); err == nil {
		st.all, err = columnar.NewRowCodec(s, all)
	}
	if err != nil {
		return &FieldError{Field: path + ".columns", Reason: fmt.Sprintf("cannot be kept as state: %v", err)}
	}
	p.state = st
	return nil
}

// columnIndex finds a column by name, exactly, else ignoring case.
func columnIndex(s *arrow.Schema, name string) int {
	if idx := s.FieldIndices(name); len(idx) > 0 {
		return idx[0]
	}
	for i, f := range s.Fields() {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return -1
}

// StateLayout describes how the pipeline encodes its state: what it keeps
// (groups or keys) and the columns and types of its keys and values. A job
// resumed with a query whose layout differs cannot read the state it left.
func (p *Pipeline) StateLayout() string {
	if p.state == nil {
		return ""
	}
	kind := "groups"
	if p.state.dedup {
		kind = "keys"
	}
	var cols []string
	for i, f := range p.PartialSchema().Fields() {
		role := "value"
		if i < p.state.nkeys || p.state.dedup {
			role = "column"
		}
		cols = append(cols, fmt.Sprintf("%s %s %s", role, f.Name, f.Type))
	}
	return fmt.Sprintf("%s (%s)", kind, strings.Join(cols, ", "))
}

// StateSignature identifies what the state holds beyond its columns' types:
// the group keys and aggregates as expressions, or the columns that make a
// row a duplicate. A resumed job whose signature differs cannot read the
// state it left, even when the types agree (count(*) and max(amount) are
// both BIGINT).
func (p *Pipeline) StateSignature() string {
	if p.state == nil {
		return ""
	}
	if p.state.dedup {
		sum := sha256.Sum256([]byte("dedup\n" + p.StateLayout()))
		return hex.EncodeToString(sum[:])
	}
	return p.dist.Signature
}

// Dedups reports whether the pipeline drops duplicate rows
// (dropDuplicates).
func (p *Pipeline) Dedups() bool { return p.state != nil && p.state.dedup }

// compileState checks that the pipeline's query can keep state in mode and
// prepares the codecs; errors name the field at path.
func (p *Pipeline) compileState(mode OutputMode, modePath string, query stepRef, watermark string) error {
	switch mode {
	case Update, Complete, Append:
	default:
		return &FieldError{Field: modePath, Reason: fmt.Sprintf("%q is not an output mode: update or complete", string(mode))}
	}
	if p.dist.Final == nil {
		return &FieldError{Field: modePath, Reason: fmt.Sprintf("%s keeps the groups of an aggregate across batches, and the last sql step does not aggregate (GROUP BY or an aggregate function)", mode)}
	}
	if p.dist.Combine == nil {
		return query.err(p.dist.StateRefusal)
	}
	s := p.PartialSchema()
	st := &stateStep{mode: mode, eventKey: -1, maxCol: -1, sessionKey: -1, et: p.dist.EventTime}
	if st.et != nil {
		st.maxCol = st.et.Max
	}
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
		return &FieldError{Field: query.field, Reason: fmt.Sprintf("the aggregate's groups cannot be kept as state: %v", err)}
	}
	for i, sess := range p.dist.KeySession {
		if !sess || i >= st.nkeys {
			continue
		}
		if st.sessionKey >= 0 {
			return &FieldError{Field: query.field, Reason: "groups by two session_window keys; a group has one session"}
		}
		st.sessionKey = i
	}
	if st.sessionKey >= 0 {
		for i := range st.nkeys {
			if i != st.sessionKey {
				st.otherCols = append(st.otherCols, i)
			}
		}
		f := s.Field(st.sessionKey)
		if st.other, err = columnar.NewRowCodec(s, st.otherCols); err == nil {
			if st.sess, err = columnar.NewRowCodec(s, []int{st.sessionKey}); err == nil {
				st.sessOnly, err = columnar.NewRowCodec(arrow.NewSchema([]arrow.Field{f}, nil), []int{0})
			}
		}
		if err != nil {
			return &FieldError{Field: query.field, Reason: fmt.Sprintf("the aggregate's sessions cannot be kept as state: %v", err)}
		}
	}
	if watermark != "" {
		col := strings.ToLower(watermark)
		for i, cols := range p.dist.KeyColumns {
			if i >= st.nkeys || !slices.Contains(cols, col) {
				continue
			}
			// The column itself, or a window over it (its end): an
			// expression such as date_trunc('hour', ts) would give a
			// bucket's start, which the watermark passes while the bucket
			// still takes records.
			switch t := s.Field(i).Type.(type) {
			case *arrow.TimestampType:
				if p.dist.KeyIsColumn[i] {
					st.eventKey = i
				}
			case *arrow.StructType:
				if f, ok := t.FieldByName("end"); ok && f.Type.ID() == arrow.TIMESTAMP {
					st.eventKey, st.keyEnd = i, true
				}
			}
			if st.eventKey >= 0 {
				break
			}
		}
	}
	if mode == Append && st.eventKey < 0 {
		return &FieldError{Field: modePath, Reason: fmt.Sprintf("append writes each group once the watermark has passed it, so the query must group by the watermark column %s: window(%s, '1 minute') or %s itself (not an expression over it, whose value the watermark could pass while its group still takes records)", watermark, watermark, watermark)}
	}
	p.state = st
	return nil
}

// checkEventTime refuses a watermark column that the aggregating step
// (last, at ref) cannot read, or that is not a timestamp.
func checkEventTime(ctx context.Context, eng *sqlengine.Engine, source *arrow.Schema, last *sqlengine.Compiled, ref stepRef, column string) error {
	opts := []sqlengine.CompileOption{sqlengine.WithView(last.View())}
	if q := last.InputQuery(); q != "" {
		opts = append(opts, sqlengine.WithInputQuery(q))
	}
	probe, err := eng.Compile(ctx, "SELECT "+quoteIdent(column)+" FROM "+quoteIdent(last.View()), source, opts...)
	if err != nil {
		return &FieldError{Field: "watermark.column", Reason: fmt.Sprintf("%s is not a column of the rows %s reads (its view %s)", column, ref.path, last.View())}
	}
	if t := probe.OutputSchema().Field(0).Type; t.ID() != arrow.TIMESTAMP {
		return &FieldError{Field: "watermark.column", Reason: fmt.Sprintf("%s is a %s; an event time is a TIMESTAMP (decode it as one, or convert it with to_timestamp in an earlier sql step)", column, t)}
	}
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

// Routed is a batch's partial aggregates spread over the state partitions.
type Routed struct {
	// Shares[i] is partition i's share, IPC-encoded, nil when it has none.
	Shares [][]byte
	// MaxEventTime is the largest event time of the batch's records (zero
	// without a watermark, or when no record had one).
	MaxEventTime time.Time
}

// Route spreads a batch's partial aggregates (the tasks' RunTask outputs,
// IPC-encoded as in Merge) over n state partitions by their group keys.
func (p *Pipeline) Route(partials [][]byte, n int) (res Routed, _ error) {
	if p.state == nil {
		return res, errors.New("sqltransform: Route on a pipeline that keeps no state")
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
			return res, err
		}
		for _, rec := range batches {
			if c := p.state.maxCol; c >= 0 {
				if t, ok := maxTime(rec.Column(c)); ok && t.After(res.MaxEventTime) {
					res.MaxEventTime = t
				}
			}
			for r := range int(rec.NumRows()) {
				if key, err = p.state.routeOf(key[:0], rec, r); err == nil {
					row, err = p.state.all.Append(row[:0], rec, r)
				}
				if err != nil {
					releaseBatches(batches)
					return res, fmt.Errorf("route partial aggregate %d: %w", i, err)
				}
				part := StatePartition(key, n)
				if builders[part] == nil {
					builders[part] = array.NewRecordBuilder(mem, schema)
				}
				if err := p.state.all.Decode(builders[part].Fields(), row); err != nil {
					releaseBatches(batches)
					return res, fmt.Errorf("route partial aggregate %d: %w", i, err)
				}
			}
		}
		releaseBatches(batches)
	}
	res.Shares = make([][]byte, n)
	for i, b := range builders {
		if b == nil {
			continue
		}
		rec := b.NewRecordBatch()
		data, err := columnar.EncodeIPC(schema, []arrow.RecordBatch{rec})
		rec.Release()
		if err != nil {
			return res, fmt.Errorf("encode state partition %d's share: %w", i, err)
		}
		res.Shares[i] = data
	}
	return res, nil
}

// maxTime is the largest valid value of a timestamp column.
func maxTime(col arrow.Array) (time.Time, bool) {
	ts, ok := col.(*array.Timestamp)
	if !ok {
		return time.Time{}, false
	}
	unit := ts.DataType().(*arrow.TimestampType).Unit
	var best arrow.Timestamp
	found := false
	for i := range ts.Len() {
		if ts.IsValid(i) && (!found || ts.Value(i) > best) {
			best, found = ts.Value(i), true
		}
	}
	return best.ToTime(unit), found
}

// eventTime is the event time of row r's group (its event-time key, or the
// key's window end), false when the key is NULL.
func (st *stateStep) eventTime(rec arrow.RecordBatch, r int) (time.Time, bool) {
	col := rec.Column(st.eventKey)
	if col.IsNull(r) {
		return time.Time{}, false
	}
	if st.keyEnd {
		s := col.(*array.Struct)
		f, _ := s.DataType().(*arrow.StructType).FieldIdx("end")
		col = s.Field(f)
		if col.IsNull(r) {
			return time.Time{}, false
		}
	}
	ts := col.(*array.Timestamp)
	return ts.Value(r).ToTime(ts.DataType().(*arrow.TimestampType).Unit), true
}

// done reports whether row r's group is at or before watermark w (a zero w
// passes nothing).
func (st *stateStep) done(rec arrow.RecordBatch, r int, w time.Time) bool {
	if st.eventKey < 0 || w.IsZero() {
		return false
	}
	t, ok := st.eventTime(rec, r)
	return ok && !t.After(w)
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
	// Scan and ScanPrefix hand out key and value valid only during fn.
	Scan(fn func(key, value []byte) error) error
	ScanPrefix(prefix []byte, fn func(key, value []byte) error) error
}

// StateChange is one group's new state (Value nil: removed). Key and Value
// are the pipeline's encoding; they are part of the state's format.
// Existed says whether the group was in the state before.
type StateChange struct {
	Key, Value []byte
	Existed    bool
}

// StateResult is what MergeState made of a batch.
type StateResult struct {
	// Changes are the groups the batch changed, with their merged states,
	// and the groups it removed (Value nil).
	Changes []StateChange
	// Rows are the output rows, in the query's columns: the changed groups'
	// running results (Update), every group's (Complete), or the groups the
	// watermark completed (Append).
	Rows []stream.Row
	// Updated counts the groups stored with a new state; Removed the groups
	// removed as complete; Dropped the records of late groups.
	Updated, Removed, Dropped int64
	// Duplicates counts the rows dropped as duplicates (dropDuplicates).
	Duplicates int64
}

// MergeState merges a state partition's share of a batch (input, as Route
// made it; empty when none) into its groups in st: it returns the changes
// to commit and the rows to write. st is read, never written. now is the
// batch's time, which the query's select list sees; wm the job's
// watermarks for the batch (zero without one).
func (p *Pipeline) MergeState(ctx context.Context, mem memory.Allocator, st StateReader, input []byte, now time.Time, wm Watermarks) (StateResult, error) {
	var res StateResult
	if p.state == nil {
		return res, errors.New("sqltransform: MergeState on a pipeline that keeps no state")
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	ss := p.state
	fresh, err := p.decodePartials(mem, input, "state input")
	if err != nil {
		return res, err
	}
	defer func() { releaseBatches(fresh) }()
	if ss.dedup {
		return p.mergeDedup(mem, st, fresh, wm)
	}
	// Complete mode keeps every group and writes them all: a late record
	// still counts (Spark: the watermark has no effect there).
	if ss.mode != Complete {
		fresh, res.Dropped, err = p.dropLate(mem, fresh, wm.Late)
	}
	if err != nil {
		return res, err
	}

	var merged []arrow.RecordBatch
	defer func() { releaseBatches(merged) }()
	found := map[string]bool{}   // groups in the state before the batch
	changed := map[string]bool{} // groups the batch replaces, removes or writes
	if ss.sessionKey >= 0 {
		var replaced []StateChange
		if merged, replaced, err = p.mergeSessions(ctx, mem, st, fresh, now, found); err != nil {
			return res, err
		}
		for _, c := range replaced {
			changed[string(c.Key)] = true
		}
		res.Changes = append(res.Changes, replaced...)
	} else if merged, err = p.mergeGroups(ctx, mem, st, fresh, now, found); err != nil {
		return res, err
	}

	// The changed groups: stored, or removed when the watermark completed
	// them (append and update mode; complete mode keeps every group).
	evict := ss.mode != Complete
	var out []arrow.RecordBatch // groups to write, as partial states
	var done []arrow.RecordBatch
	defer func() { releaseBatches(done) }()
	for _, rec := range merged {
		keep := make([]bool, rec.NumRows())
		for r := range int(rec.NumRows()) {
			k, err := ss.keyOf(nil, rec, r)
			if err != nil {
				return res, fmt.Errorf("encode a group key: %w", err)
			}
			changed[string(k)] = true
			if evict && ss.done(rec, r, wm.Complete) {
				res.Changes = append(res.Changes, StateChange{Key: k, Existed: found[string(k)]})
				res.Removed++
				keep[r] = true
				continue
			}
			v, err := ss.value.Append(nil, rec, r)
			if err != nil {
				return res, fmt.Errorf("encode a group's state: %w", err)
			}
			res.Changes = append(res.Changes, StateChange{Key: k, Value: v, Existed: found[string(k)]})
			res.Updated++
		}
		if ss.mode == Append {
			d, err := p.pick(mem, rec, keep)
			if err != nil {
				return res, err
			}
			done = append(done, d)
		}
	}
	switch ss.mode {
	case Update, Complete:
		out = merged
	case Append:
		out = done
	}

	// The groups the batch did not change: all of them are written in
	// complete mode; the complete ones are removed (and written in append
	// mode).
	if ss.mode == Complete || ss.eventKey >= 0 && !wm.Complete.IsZero() {
		rest := array.NewRecordBuilder(mem, p.PartialSchema())
		defer rest.Release()
		var keys [][]byte
		if err := st.Scan(func(k, v []byte) error {
			if changed[string(k)] {
				return nil
			}
			keys = append(keys, bytes.Clone(k)) // k is only valid during the call
			return p.decodeGroup(rest.Fields(), k, v)
		}); err != nil {
			return res, fmt.Errorf("read state: %w", err)
		}
		unchanged := rest.NewRecordBatch()
		defer unchanged.Release()
		switch ss.mode {
		case Complete:
			out = append([]arrow.RecordBatch{unchanged}, out...)
		default:
			keep := make([]bool, unchanged.NumRows())
			for r := range int(unchanged.NumRows()) {
				if ss.done(unchanged, r, wm.Complete) {
					res.Changes = append(res.Changes, StateChange{Key: keys[r], Existed: true})
					res.Removed++
					keep[r] = true
				}
			}
			if ss.mode == Append {
				d, err := p.pick(mem, unchanged, keep)
				if err != nil {
					return res, err
				}
				done = append(done, d)
				out = done
			}
		}
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

// mergeGroups merges the batch's groups (fresh) with their states before
// the batch, which it marks in found.
func (p *Pipeline) mergeGroups(ctx context.Context, mem memory.Allocator, st StateReader, fresh []arrow.RecordBatch, now time.Time,
	found map[string]bool) ([]arrow.RecordBatch, error) {
	if len(fresh) == 0 {
		return nil, nil
	}
	old := array.NewRecordBuilder(mem, p.PartialSchema())
	defer old.Release()
	seen := map[string]bool{}
	var key []byte
	var err error
	for _, rec := range fresh {
		for r := range int(rec.NumRows()) {
			if key, err = p.state.keyOf(key[:0], rec, r); err != nil {
				return nil, fmt.Errorf("encode a group key: %w", err)
			}
			if seen[string(key)] {
				continue
			}
			seen[string(key)] = true
			v, ok, err := st.Get(key)
			if err != nil {
				return nil, fmt.Errorf("read state: %w", err)
			}
			if !ok {
				continue
			}
			if err := p.decodeGroup(old.Fields(), key, v); err != nil {
				return nil, err
			}
			found[string(key)] = true
		}
	}
	in := fresh
	if len(found) > 0 {
		prev := old.NewRecordBatch()
		defer prev.Release()
		in = append([]arrow.RecordBatch{prev}, fresh...)
	}
	merged, err := p.dist.Combine.RunBatches(ctx, in, sqlengine.WithNow(now))
	if err != nil {
		return nil, stateQueryErr("merge the batch into the state", err)
	}
	return merged, nil
}

// mergeSessions merges the batch's sessions (each record's own, or those a
// task merged) with the stored sessions of the same other keys: sessions
// that overlap or touch become one, from the earliest start to the latest
// end, with their states combined. It returns the merged groups, and the
// removal of every stored session it read (a merged one is written again
// under its new key; found marks the stored ones).
func (p *Pipeline) mergeSessions(ctx context.Context, mem memory.Allocator, st StateReader, fresh []arrow.RecordBatch, now time.Time,
	found map[string]bool) ([]arrow.RecordBatch, []StateChange, error) {
	if len(fresh) == 0 {
		return nil, nil, nil
	}
	ss := p.state
	old := array.NewRecordBuilder(mem, p.PartialSchema())
	defer old.Release()
	var removed []StateChange
	scanned := map[string]bool{}
	var prefix []byte
	var err error
	for _, rec := range fresh {
		for r := range int(rec.NumRows()) {
			if prefix, err = ss.routeOf(prefix[:0], rec, r); err != nil {
				return nil, nil, fmt.Errorf("encode a group key: %w", err)
			}
			if scanned[string(prefix)] {
				continue
			}
			scanned[string(prefix)] = true
			if err := st.ScanPrefix(prefix, func(k, v []byte) error {
				k = bytes.Clone(k)
				found[string(k)] = true
				removed = append(removed, StateChange{Key: k, Existed: true})
				return p.decodeGroup(old.Fields(), k, v)
			}); err != nil {
				return nil, nil, fmt.Errorf("read state: %w", err)
			}
		}
	}
	prev := old.NewRecordBatch()
	defer prev.Release()
	all := append([]arrow.RecordBatch{prev}, fresh...)

	// Every row with its other keys and session, then the sessions of each
	// key swept in order of start.
	type srow struct {
		b, r       int
		key        string
		start, end time.Time
		merged     int
	}
	var rows []srow
	for b, rec := range all {
		s := rec.Column(ss.sessionKey).(*array.Struct)
		st := s.DataType().(*arrow.StructType)
		si, _ := st.FieldIdx("start")
		ei, _ := st.FieldIdx("end")
		starts, ends := s.Field(si).(*array.Timestamp), s.Field(ei).(*array.Timestamp)
		unit := starts.DataType().(*arrow.TimestampType).Unit
		for r := range int(rec.NumRows()) {
			if s.IsNull(r) || starts.IsNull(r) || ends.IsNull(r) {
				continue // no event time: no session (Spark drops the row)
			}
			k, err := ss.routeOf(nil, rec, r)
			if err != nil {
				return nil, nil, fmt.Errorf("encode a group key: %w", err)
			}
			rows = append(rows, srow{b: b, r: r, key: string(k), start: starts.Value(r).ToTime(unit), end: ends.Value(r).ToTime(unit)})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].key != rows[j].key {
			return rows[i].key < rows[j].key
		}
		return rows[i].start.Before(rows[j].start)
	})
	type session struct{ start, end time.Time }
	var sessions []session
	for i := range rows {
		n := len(sessions) - 1
		if i > 0 && rows[i].key == rows[i-1].key && !rows[i].start.After(sessions[n].end) {
			if rows[i].end.After(sessions[n].end) {
				sessions[n].end = rows[i].end
			}
		} else {
			sessions = append(sessions, session{rows[i].start, rows[i].end})
		}
		rows[i].merged = len(sessions) - 1
	}

	// The rows again, each with its merged session, for Combine.
	sf := p.PartialSchema().Field(ss.sessionKey)
	sb := array.NewStructBuilder(mem, sf.Type.(*arrow.StructType))
	defer sb.Release()
	stype := sf.Type.(*arrow.StructType)
	si, _ := stype.FieldIdx("start")
	ei, _ := stype.FieldIdx("end")
	for _, x := range sessions {
		sb.Append(true)
		for _, f := range []struct {
			i int
			t time.Time
		}{{si, x.start}, {ei, x.end}} {
			tb := sb.FieldBuilder(f.i).(*array.TimestampBuilder)
			ts, err := arrow.TimestampFromTime(f.t, tb.Type().(*arrow.TimestampType).Unit)
			if err != nil {
				return nil, nil, fmt.Errorf("a session bound: %w", err)
			}
			tb.Append(ts)
		}
	}
	sarr := sb.NewArray()
	defer sarr.Release()
	srec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{sf}, nil), []arrow.Array{sarr}, int64(sarr.Len()))
	defer srec.Release()
	enc := make([][]byte, len(sessions))
	for i := range sessions {
		if enc[i], err = ss.sessOnly.Append(nil, srec, i); err != nil {
			return nil, nil, fmt.Errorf("encode a session: %w", err)
		}
	}
	in := array.NewRecordBuilder(mem, p.PartialSchema())
	defer in.Release()
	fields := in.Fields()
	others := make([]array.Builder, len(ss.otherCols))
	for i, c := range ss.otherCols {
		others[i] = fields[c]
	}
	var buf []byte
	for _, x := range rows {
		rec := all[x.b]
		if buf, err = ss.other.Append(buf[:0], rec, x.r); err == nil {
			if err = ss.other.Decode(others, buf); err == nil {
				if err = ss.sess.Decode(fields[ss.sessionKey:ss.sessionKey+1], enc[x.merged]); err == nil {
					if buf, err = ss.value.Append(buf[:0], rec, x.r); err == nil {
						err = ss.value.Decode(fields[ss.nkeys:], buf)
					}
				}
			}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("rebuild a session's row: %w", err)
		}
	}
	rebuilt := in.NewRecordBatch()
	defer rebuilt.Release()
	merged, err := p.dist.Combine.RunBatches(ctx, []arrow.RecordBatch{rebuilt}, sqlengine.WithNow(now))
	if err != nil {
		return nil, nil, stateQueryErr("merge the batch's sessions into the state", err)
	}
	return merged, removed, nil
}

// mergeDedup drops the rows whose key was written before (st) or earlier
// in the batch, and the late ones (event time at or before the late
// watermark); it stores the new keys with their event time, and forgets
// the keys the complete watermark passed by within.
func (p *Pipeline) mergeDedup(mem memory.Allocator, st StateReader, fresh []arrow.RecordBatch, wm Watermarks) (StateResult, error) {
	var res StateResult
	ss := p.state
	expired := func(ev time.Time) bool {
		return ss.within > 0 && !wm.Complete.IsZero() && !ev.Add(ss.within).After(wm.Complete)
	}
	seen := map[string]bool{}
	var kept []arrow.RecordBatch
	defer func() { releaseBatches(kept) }()
	for _, rec := range fresh {
		keep := make([]bool, rec.NumRows())
		for r := range int(rec.NumRows()) {
			k, err := ss.key.Append(nil, rec, r)
			if err != nil {
				return res, fmt.Errorf("encode a row's key: %w", err)
			}
			var ev time.Time
			hasEv := false
			if ss.eventKey >= 0 {
				ev, hasEv = ss.eventTime(rec, r)
			}
			if hasEv && !wm.Late.IsZero() && !ev.After(wm.Late) {
				res.Dropped++
				continue
			}
			if seen[string(k)] {
				res.Duplicates++
				continue
			}
			_, stored, err := st.Get(k)
			if err != nil {
				return res, fmt.Errorf("read state: %w", err)
			}
			seen[string(k)] = true
			if stored {
				res.Duplicates++
				continue
			}
			keep[r] = true
			if hasEv && expired(ev) {
				continue // written, and already forgotten
			}
			v := []byte{}
			if hasEv {
				v = binary.BigEndian.AppendUint64(v, uint64(ev.UnixNano()))
			}
			res.Changes = append(res.Changes, StateChange{Key: k, Value: v})
			res.Updated++
		}
		d, err := p.pick(mem, rec, keep)
		if err != nil {
			return res, err
		}
		kept = append(kept, d)
	}
	if ss.within > 0 && !wm.Complete.IsZero() {
		if err := st.Scan(func(k, v []byte) error {
			if len(v) == 8 && !seen[string(k)] && expired(time.Unix(0, int64(binary.BigEndian.Uint64(v)))) {
				res.Changes = append(res.Changes, StateChange{Key: bytes.Clone(k), Existed: true})
				res.Removed++
			}
			return nil
		}); err != nil {
			return res, fmt.Errorf("read state: %w", err)
		}
	}
	for _, rec := range kept {
		var err error
		if res.Rows, err = columnar.AppendRows(res.Rows, rec); err != nil {
			return res, connectors.Permanent(fmt.Errorf("convert output rows: %w", err))
		}
	}
	return res, nil
}

// dropLate removes from a state partition's input the groups at or before
// the late watermark (their windows were complete and written already) and
// counts their records. It releases what it replaces.
func (p *Pipeline) dropLate(mem memory.Allocator, in []arrow.RecordBatch, late time.Time) ([]arrow.RecordBatch, int64, error) {
	ss := p.state
	if ss.eventKey < 0 || late.IsZero() {
		return in, 0, nil
	}
	var dropped int64
	out := make([]arrow.RecordBatch, 0, len(in))
	for i, rec := range in {
		keep := make([]bool, rec.NumRows())
		n := 0
		for r := range int(rec.NumRows()) {
			if ss.done(rec, r, late) {
				if rows, ok := rec.Column(ss.et.Rows).(*array.Int64); ok {
					dropped += rows.Value(r)
				}
				continue
			}
			keep[r] = true
			n++
		}
		if n == int(rec.NumRows()) {
			out = append(out, rec)
			continue
		}
		kept, err := p.pick(mem, rec, keep)
		if err != nil {
			releaseBatches(out)
			releaseBatches(in[i:])
			return nil, 0, err
		}
		rec.Release()
		out = append(out, kept)
	}
	return out, dropped, nil
}

// pick copies the rows of rec that keep marks into a new batch.
func (p *Pipeline) pick(mem memory.Allocator, rec arrow.RecordBatch, keep []bool) (arrow.RecordBatch, error) {
	b := array.NewRecordBuilder(mem, rec.Schema())
	defer b.Release()
	var row []byte
	var err error
	for r, k := range keep {
		if !k {
			continue
		}
		if row, err = p.state.all.Append(row[:0], rec, r); err != nil {
			return nil, fmt.Errorf("copy a group: %w", err)
		}
		if err := p.state.all.Decode(b.Fields(), row); err != nil {
			return nil, fmt.Errorf("copy a group: %w", err)
		}
	}
	return b.NewRecordBatch(), nil
}

// keyOf is the state key of row r's group: its key columns, or with a
// session, routeOf then the session.
func (st *stateStep) keyOf(dst []byte, rec arrow.RecordBatch, r int) ([]byte, error) {
	if st.sessionKey < 0 {
		return st.key.Append(dst, rec, r)
	}
	dst, err := st.routeOf(dst, rec, r)
	if err != nil {
		return dst, err
	}
	return st.sess.Append(dst, rec, r)
}

// routeOf is what places row r's group in a partition, and, with a
// session, the prefix of every state key of the group's other keys: all
// the sessions of a key live in one partition, found by one prefix scan.
func (st *stateStep) routeOf(dst []byte, rec arrow.RecordBatch, r int) ([]byte, error) {
	if st.sessionKey < 0 {
		return st.key.Append(dst, rec, r)
	}
	other, err := st.other.Append(nil, rec, r)
	if err != nil {
		return dst, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(other)))
	return append(dst, other...), nil
}

// decodeGroup appends one stored group to a partial-schema builder.
func (p *Pipeline) decodeGroup(fields []array.Builder, key, value []byte) error {
	if ss := p.state; ss.sessionKey >= 0 {
		n, w := binary.Uvarint(key)
		if w <= 0 || uint64(len(key)-w) < n {
			return errors.New("decode a stored group key: malformed session key")
		}
		others := make([]array.Builder, len(ss.otherCols))
		for i, c := range ss.otherCols {
			others[i] = fields[c]
		}
		if err := ss.other.Decode(others, key[w:w+int(n)]); err != nil {
			return fmt.Errorf("decode a stored group key: %w", err)
		}
		if err := ss.sess.Decode(fields[ss.sessionKey:ss.sessionKey+1], key[w+int(n):]); err != nil {
			return fmt.Errorf("decode a stored group's session: %w", err)
		}
	} else if err := p.state.key.Decode(fields[:p.state.nkeys], key); err != nil {
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
