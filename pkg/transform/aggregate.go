package transform

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/stream"
)

// ErrTooManyGroups means a batch has more groups than the aggregate's
// MaxGroups. It is not a bad row: the batch cannot be aggregated within the
// bound, and the runtime should fail it.
var ErrTooManyGroups = errors.New("too many groups")

type aggFn uint8

const (
	fnCount aggFn = iota
	fnSum
	fnMin
	fnMax
	fnAvg
)

var aggFns = map[string]aggFn{"count": fnCount, "sum": fnSum, "min": fnMin, "max": fnMax, "avg": fnAvg}

func (f aggFn) String() string {
	return [...]string{"count", "sum", "min", "max", "avg"}[f]
}

type aggCol struct {
	fn    aggFn
	field string // "" for count(*)
	as    string
}

func (c aggCol) label() string {
	if c.field == "" {
		return c.fn.String() + "(*)"
	}
	return c.fn.String() + "(" + c.field + ")"
}

type aggSpec struct {
	step        string // transforms[i].aggregate
	groupBy     []string
	aggs        []aggCol
	maxGroups   int64
	fingerprint uint64
}

func (s *aggSpec) columns() []string {
	cols := slices.Clone(s.groupBy)
	for _, a := range s.aggs {
		cols = append(cols, a.as)
	}
	return cols
}

// computeFingerprint identifies the spec, so that Merge refuses partials of
// a different aggregate (say, from tasks of a job resubmitted with another
// spec).
func (s *aggSpec) computeFingerprint() uint64 {
	h := fnv.New64a()
	w := func(str string) {
		_ = binary.Write(h, binary.LittleEndian, uint32(len(str)))
		h.Write([]byte(str))
	}
	w(s.step)
	for _, g := range s.groupBy {
		w("g:" + g)
	}
	for _, a := range s.aggs {
		w("a:" + a.fn.String() + ":" + a.field + ":" + a.as)
	}
	return h.Sum64()
}

// Aggregator holds the groups of one batch, or of one task's share of it.
// It is not safe for concurrent use.
type Aggregator struct {
	spec   *aggSpec
	groups map[string]*group
	key    []byte // scratch for the key of the row being added
	vals   []any  // scratch for its aggregated values
}

type group struct {
	key   string // encoded group values
	vals  []any  // group values, in groupBy order
	state []aggState
}

// aggState is one aggregation's running state. count uses n; sum and avg
// use n (values seen), isum (the exact sum of int64s), fsum and float (the
// sum of float64s, and whether there were any); min and max use v (nil until
// a value is seen).
type aggState struct {
	n     int64
	isum  int64
	fsum  float64
	float bool
	v     any
}

// NewAggregator returns an empty aggregator for the pipeline's aggregate. It
// panics if the pipeline does not aggregate.
func (p *Pipeline) NewAggregator() *Aggregator {
	if p.agg == nil {
		panic("transform: NewAggregator on a pipeline without an aggregate step")
	}
	return &Aggregator{spec: p.agg, groups: make(map[string]*group)}
}

// Len is the number of groups.
func (a *Aggregator) Len() int { return len(a.groups) }

// Add folds row into its group; a missing group-by field groups under null.
// Null and missing aggregated values are ignored. On error the aggregator is
// unchanged: errors.Is(err, ErrTooManyGroups) means the batch exceeds
// MaxGroups; any other error means the row is bad (a non-number for sum or
// avg, a value min or max cannot order, an int64 sum overflow) and the
// runtime should treat it as a bad record of Pipeline.AggregateStep.
func (a *Aggregator) Add(row stream.Row) error {
	s := a.spec
	key := a.key[:0]
	for _, f := range s.groupBy {
		var err error
		if key, err = appendValue(key, row[f]); err != nil {
			return fmt.Errorf("group by %s: %w", f, err)
		}
	}
	a.key = key
	vals := a.vals[:0]
	for _, c := range s.aggs {
		var v any
		if c.field != "" {
			v = normalize(row[c.field])
		}
		if err := checkValue(c, v); err != nil {
			return err
		}
		vals = append(vals, v)
	}
	a.vals = vals
	g := a.groups[string(key)]
	if g == nil {
		var err error
		if g, err = a.newGroup(string(key), nil); err != nil {
			return err
		}
		for i := range s.aggs {
			g.state[i].add(s.aggs[i], vals[i])
		}
		return nil
	}
	// Errors that depend on the state (overflow, mixed min/max types) are
	// checked for every aggregation before any is applied.
	for i, c := range s.aggs {
		if err := g.state[i].check(c, vals[i]); err != nil {
			return err
		}
	}
	for i := range s.aggs {
		g.state[i].add(s.aggs[i], vals[i])
	}
	return nil
}

// newGroup adds an empty group, enforcing MaxGroups. vals are the group's
// values, decoded from key when nil.
func (a *Aggregator) newGroup(key string, vals []any) (*group, error) {
	s := a.spec
	if int64(len(a.groups)) >= s.maxGroups {
		return nil, fmt.Errorf("%s: %w (more than %d in one batch): raise %s.maxGroups "+
			"or make batches smaller (for Kafka, maxOffsetsPerTrigger)",
			s.step, ErrTooManyGroups, s.maxGroups, s.step)
	}
	if vals == nil {
		d := decoder{b: []byte(key)}
		vals = make([]any, len(s.groupBy))
		for i := range vals {
			vals[i] = d.value(0)
		}
		if d.err == nil && len(d.b) != 0 {
			d.fail("group key has %d bytes too many", len(d.b))
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	g := &group{key: key, vals: vals, state: make([]aggState, len(s.aggs))}
	a.groups[key] = g
	return g, nil
}

// checkValue rejects values an aggregation cannot take, whatever its state.
func checkValue(c aggCol, v any) error {
	if v == nil {
		return nil
	}
	switch c.fn {
	case fnSum, fnAvg:
		switch v.(type) {
		case int64, float64:
			return nil
		}
		return fmt.Errorf("%s: %s, want a number (convert it with a select: int(x) or double(x))",
			c.label(), describe(v))
	case fnMin, fnMax:
		switch v.(type) {
		case int64, float64, string, time.Time:
			return nil
		}
		return fmt.Errorf("%s: %s, want a number, string or timestamp", c.label(), describe(v))
	}
	return nil
}

// describe renders a value for an error message: its type and, when short,
// the value itself.
func describe(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 40 {
			x = x[:37] + "..."
		}
		return fmt.Sprintf("got string %q", x)
	case bool, int64, float64:
		return fmt.Sprintf("got %s %v", typeName(v), x)
	}
	return "got " + typeName(v)
}

// check reports whether adding v would fail: an int64 sum overflow, or a
// min/max value of another kind than the group's.
func (st *aggState) check(c aggCol, v any) error {
	if v == nil {
		return nil
	}
	switch c.fn {
	case fnSum, fnAvg:
		if i, ok := v.(int64); ok {
			if _, overflow := addInt64(st.isum, i); overflow {
				return fmt.Errorf("%s: int64 overflow; convert to double in a select to sum approximately", c.label())
			}
		}
	case fnMin, fnMax:
		if st.v != nil && orderClass(v) != orderClass(st.v) {
			return fmt.Errorf("%s: cannot compare %s with the %s values before it in the group",
				c.label(), typeName(v), typeName(st.v))
		}
	}
	return nil
}

// add applies v, which check and checkValue accepted.
func (st *aggState) add(c aggCol, v any) {
	switch c.fn {
	case fnCount:
		if c.field == "" || v != nil {
			st.n++
		}
	case fnSum, fnAvg:
		switch x := v.(type) {
		case int64:
			st.isum += x
			st.n++
		case float64:
			st.fsum += x
			st.float = true
			st.n++
		}
	case fnMin, fnMax:
		if v == nil {
			return
		}
		if st.v == nil {
			st.v = v
			return
		}
		cmp := compareOrdered(v, st.v)
		if (c.fn == fnMin && cmp < 0) || (c.fn == fnMax && cmp > 0) {
			st.v = v
		}
	}
}

// orderClass groups the kinds min and max can compare with each other.
func orderClass(v any) int {
	switch v.(type) {
	case int64, float64:
		return 1
	case string:
		return 2
	case time.Time:
		return 3
	}
	return 0
}

// compareOrdered compares two values of the same orderClass.
func compareOrdered(a, b any) int {
	switch x := a.(type) {
	case string:
		return strings.Compare(x, b.(string))
	case time.Time:
		return x.Compare(b.(time.Time))
	}
	return compareNumbers(a, b)
}

func addInt64(a, b int64) (int64, bool) {
	s := a + b
	return s, (b > 0 && s < a) || (b < 0 && s > a)
}

// merge folds another state of the same aggregation into st.
func (st *aggState) merge(c aggCol, o aggState) error {
	switch c.fn {
	case fnCount:
		n, overflow := addInt64(st.n, o.n)
		if overflow {
			return fmt.Errorf("%s: int64 overflow", c.label())
		}
		st.n = n
	case fnSum, fnAvg:
		isum, overflow := addInt64(st.isum, o.isum)
		if overflow {
			return fmt.Errorf("%s: int64 overflow; convert to double in a select to sum approximately", c.label())
		}
		n, overflow := addInt64(st.n, o.n)
		if overflow {
			return fmt.Errorf("%s: int64 overflow in the count", c.label())
		}
		st.isum, st.n = isum, n
		st.fsum += o.fsum
		st.float = st.float || o.float
	case fnMin, fnMax:
		if o.v == nil {
			return nil
		}
		if st.v == nil {
			st.v = o.v
			return nil
		}
		if orderClass(o.v) != orderClass(st.v) {
			return fmt.Errorf("%s: tasks saw values of different kinds (%s and %s) in one group",
				c.label(), typeName(st.v), typeName(o.v))
		}
		cmp := compareOrdered(o.v, st.v)
		if (c.fn == fnMin && cmp < 0) || (c.fn == fnMax && cmp > 0) {
			st.v = o.v
		}
	}
	return nil
}

// result is the aggregation's output value.
func (st *aggState) result(c aggCol) any {
	switch c.fn {
	case fnCount:
		return st.n
	case fnSum:
		switch {
		case st.n == 0:
			return nil
		case st.float:
			return float64(st.isum) + st.fsum
		}
		return st.isum
	case fnAvg:
		if st.n == 0 {
			return nil
		}
		return (float64(st.isum) + st.fsum) / float64(st.n)
	}
	return st.v
}

// Rows returns one row per group, sorted by the group values (nulls first,
// then by kind and value; see the package doc), each holding the groupBy
// fields and the aggregations: count is int64; sum is int64 when every value
// was, float64 otherwise; avg is float64; min and max keep the value's type;
// sum, avg, min and max of no values are null. A batch without rows has no
// groups, even without groupBy.
func (a *Aggregator) Rows() []stream.Row {
	s := a.spec
	gs := make([]*group, 0, len(a.groups))
	for _, g := range a.groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(x, y *group) int {
		for i := range x.vals {
			if c := compareValues(x.vals[i], y.vals[i]); c != 0 {
				return c
			}
		}
		return strings.Compare(x.key, y.key)
	})
	rows := make([]stream.Row, len(gs))
	for i, g := range gs {
		r := make(stream.Row, len(s.groupBy)+len(s.aggs))
		for j, f := range s.groupBy {
			r[f] = g.vals[j]
		}
		for j, c := range s.aggs {
			r[c.as] = g.state[j].result(c)
		}
		rows[i] = r
	}
	return rows
}

// Partial encoding: magic, version, spec fingerprint, group count, then per
// group (in key order, so equal aggregators encode equally) the key and one
// state per aggregation: n, isum, fsum bits, float flag, value.
var partialMagic = []byte("SLAG")

const partialVersion = 1

// MarshalBinary encodes the aggregator's state for Pipeline.Merge.
func (a *Aggregator) MarshalBinary() ([]byte, error) {
	keys := make([]string, 0, len(a.groups))
	size := 32
	for k := range a.groups {
		keys = append(keys, k)
		size += len(k) + 16*len(a.spec.aggs) + 4
	}
	slices.Sort(keys)
	b := make([]byte, 0, size)
	b = append(b, partialMagic...)
	b = append(b, partialVersion)
	b = binary.LittleEndian.AppendUint64(b, a.spec.fingerprint)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		g := a.groups[k]
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		for _, st := range g.state {
			b = binary.AppendVarint(b, st.n)
			b = binary.AppendVarint(b, st.isum)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(st.fsum))
			flag := byte(0)
			if st.float {
				flag = 1
			}
			b = append(b, flag)
			var err error
			if b, err = appendValue(b, st.v); err != nil {
				return nil, err
			}
		}
	}
	return b, nil
}

// Merge combines task partials (from MarshalBinary) into one aggregator,
// enforcing MaxGroups over the union. Integer sums and counts stay exact;
// float sums add in the order of partials.
func (p *Pipeline) Merge(partials [][]byte) (*Aggregator, error) {
	a := p.NewAggregator()
	for i, b := range partials {
		if err := a.merge(b); err != nil {
			return nil, fmt.Errorf("merge partial aggregate %d of %d: %w", i+1, len(partials), err)
		}
	}
	return a, nil
}

func (a *Aggregator) merge(b []byte) error {
	s := a.spec
	if len(b) < len(partialMagic)+1+8 || string(b[:len(partialMagic)]) != string(partialMagic) {
		return fmt.Errorf("%w: not a partial aggregate", errCorrupt)
	}
	if v := b[len(partialMagic)]; v != partialVersion {
		return fmt.Errorf("%w: unknown version %d", errCorrupt, v)
	}
	d := decoder{b: b[len(partialMagic)+1:]}
	if fp := d.uint64le(); fp != s.fingerprint {
		return fmt.Errorf("partial was computed for a different aggregate spec than %s", s.step)
	}
	n := d.count(1 + 11*len(s.aggs))
	for i := 0; i < n && d.err == nil; i++ {
		key := d.bytesN()
		states := make([]aggState, len(s.aggs))
		for j, c := range s.aggs {
			st := &states[j]
			st.n = d.varint()
			st.isum = d.varint()
			st.fsum = math.Float64frombits(d.uint64le())
			st.float = d.byte1() == 1
			st.v = d.value(0)
			if d.err == nil {
				if err := validState(c, st); err != nil {
					d.fail("%v", err)
				}
			}
		}
		if d.err != nil {
			break
		}
		g := a.groups[string(key)]
		if g == nil {
			var err error
			if g, err = a.newGroup(string(key), nil); err != nil {
				return err
			}
		}
		for j, c := range s.aggs {
			if err := g.state[j].merge(c, states[j]); err != nil {
				return err
			}
		}
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d bytes after the last group", len(d.b))
	}
	return d.err
}

// validState checks a decoded state against what Add can produce, so that a
// corrupt partial cannot smuggle in, say, a min of a map.
func validState(c aggCol, st *aggState) error {
	if st.n < 0 {
		return fmt.Errorf("%s: negative count", c.label())
	}
	switch c.fn {
	case fnMin, fnMax:
		if st.v != nil && orderClass(st.v) == 0 {
			return fmt.Errorf("%s: %s value", c.label(), typeName(st.v))
		}
	default:
		if st.v != nil {
			return fmt.Errorf("%s: unexpected value", c.label())
		}
	}
	return nil
}
