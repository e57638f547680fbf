//go:build duckdb_arrow

package sqlengine

import (
	"context"
	"fmt"
	"slices"
	"strconv"
)

// Reused run connections and their prepared statements. A small task's
// query spent three quarters of its time in DuckDB being parsed, bound and
// planned, and a quarter running (sqltransform's BenchmarkSmallTask,
// count-only: 1.7 ms per task, of which the run 0.4 ms). Every task of a
// job runs the same SQL over an input slot (slot.go), so a run's connection
// is kept for the next run, and on it each SQL text is prepared once
// (PREPARE) and then only executed (EXECUTE), which reuses DuckDB's plan.
//
// What keeps that correct:
//   - A slot's view reads whatever input the run holding it gives, and a
//     free slot serves only an input of an equal schema, so a plan bound
//     over a slot stays valid for every later input of that slot.
//   - DuckDB rebinds a prepared statement by itself when the catalog
//     changed since it was prepared (another slot's view created or
//     dropped): a reused plan never reads a stale catalog.
//   - getvariable() and the current time are read when the plan executes,
//     not when it is bound (TestPreparedRunsSeeTheirOwnTime), and a run
//     resets the variables an earlier run on the connection set and it does
//     not (resetVariables).
//   - Only the inline path is prepared: a run that materialises its input
//     creates TEMP objects and keeps a connection of its own, closed after.
//   - A connection whose run failed is closed, not kept: an interrupted or
//     failed query may leave it in a state no later run should inherit.
//
// The engine keeps as many connections as runs have held at once, so an
// executor with many task slots keeps one per slot.

const (
	// maxIdleRunConns bounds the connections kept between runs. Below it
	// the engine keeps as many as runs have held at once (runsPeak): an
	// executor's concurrent tasks, whatever its slots.
	maxIdleRunConns = 256
	// maxPrepared bounds the statements prepared on one connection: each
	// holds a plan. A job's task query over each slot it met is one.
	maxPrepared = 32
)

// prepared is a connection's prepared statements, least recently used
// first.
type prepared struct {
	names map[string]string // SQL text -> statement name
	order []string          // SQL texts, least recently used first
	// vars are the variables a run set on the connection (SET VARIABLE),
	// which the next run resets unless it sets them itself.
	vars map[string]bool
}

// runSession returns a kept connection for a run, or a new one. The run
// gives it back with putRunSession, whatever happens.
func (e *Engine) runSession(ctx context.Context) (*session, error) {
	e.rmu.Lock()
	e.runsActive++
	e.runsPeak = max(e.runsPeak, e.runsActive)
	if n := len(e.runIdle); n > 0 {
		s := e.runIdle[n-1]
		e.runIdle = e.runIdle[:n-1]
		e.rmu.Unlock()
		return s, nil
	}
	e.rmu.Unlock()
	s, err := e.connect(ctx)
	if err != nil {
		e.rmu.Lock()
		e.runsActive--
		e.rmu.Unlock()
	}
	return s, err
}

// putRunSession keeps s for the next run, or closes it: after a run that
// failed (ok false), once Close has started, or when as many are kept as
// runs have held at once (at most maxIdleRunConns): more would never be
// used.
func (e *Engine) putRunSession(s *session, ok bool) {
	// Lock order rmu, then mu: Close marks the engine closed before it
	// takes rmu to close the kept connections, so a connection kept here
	// is either seen by that drain or not kept at all.
	e.rmu.Lock()
	e.runsActive--
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if !ok || closed || len(e.runIdle) >= min(e.runsPeak, maxIdleRunConns) {
		e.rmu.Unlock()
		s.close()
		return
	}
	e.runIdle = append(e.runIdle, s)
	e.rmu.Unlock()
}

// closeRunSessions closes the kept connections. Close calls it once the
// engine is marked closed, so none is kept after.
func (e *Engine) closeRunSessions() {
	e.rmu.Lock()
	idle := e.runIdle
	e.runIdle = nil
	e.rmu.Unlock()
	for _, s := range idle {
		s.close()
	}
}

// setVariable runs SET VARIABLE name = value (a SQL literal) and
// remembers it for resetVariables.
func (s *session) setVariable(ctx context.Context, name, value string) error {
	if err := s.execContext(ctx, "SET VARIABLE "+name+" = "+value); err != nil {
		return err
	}
	if s.prep.vars == nil {
		s.prep.vars = map[string]bool{}
	}
	s.prep.vars[name] = true
	return nil
}

// resetVariables resets the variables an earlier run set on this
// connection, except keep: a run must not see another's time or rejects.
func (s *session) resetVariables(ctx context.Context, keep ...string) error {
	for name := range s.prep.vars {
		if slices.Contains(keep, name) {
			continue
		}
		if err := s.execContext(ctx, "RESET VARIABLE "+name); err != nil {
			return fmt.Errorf("reset %s: %w", name, err)
		}
		delete(s.prep.vars, name)
	}
	return nil
}

// prepare returns the name of sql's prepared statement on this connection
// and the text that prepared it, preparing it on first use. header is what
// PREPARE put before sql: positions in DuckDB's errors, of the PREPARE or
// of a later EXECUTE, count from the start of that text. A statement
// beyond maxPrepared evicts the least recently used one.
func (s *session) prepare(ctx context.Context, sql string) (name, header string, err error) {
	p := &s.prep
	if name, ok := p.names[sql]; ok {
		i := slices.Index(p.order, sql)
		p.order = append(append(p.order[:i], p.order[i+1:]...), sql)
		return name, prepareHeader(name), nil
	}
	if len(p.order) >= maxPrepared {
		old := p.order[0]
		if err := s.execContext(ctx, "DEALLOCATE "+p.names[old]); err != nil {
			return "", "", fmt.Errorf("deallocate a prepared statement: %w", err)
		}
		delete(p.names, old)
		p.order = p.order[1:]
	}
	name = "__sluice_q" + strconv.FormatUint(s.e.seq.Add(1), 10)
	header = prepareHeader(name)
	if err := s.execContext(ctx, header+sql); err != nil {
		return "", header, err
	}
	if p.names == nil {
		p.names = map[string]string{}
	}
	p.names[sql] = name
	p.order = append(p.order, sql)
	return name, header, nil
}

func prepareHeader(name string) string { return "PREPARE " + name + " AS " }
