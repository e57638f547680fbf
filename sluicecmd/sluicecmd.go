//go:build duckdb_arrow

// Package sluicecmd runs Sluice's driver and executor inside a program of
// your own: the stock binaries (cmd/driver, cmd/executor) are main
// functions around Driver and Executor. A binary of your own can add what
// they cannot, such as Go functions for the SQL of every job
// (WithFunctions, examples/sqlfunc). A job that calls such a function needs
// it in the drivers (which compile its query at submit) and in the
// executors (which run it), so both must be built with it.
package sluicecmd

import (
	"errors"
	"log/slog"

	"github.com/sluicehq/sluice/pkg/sqlengine"
	"github.com/sluicehq/sluice/pkg/sqltransform"
)

// Option changes what Driver or Executor runs with.
type Option func(*config)

type config struct {
	functions *sqlengine.Registry
}

// WithFunctions adds the registry's Go functions to the SQL of every job
// the process compiles or runs.
func WithFunctions(r *sqlengine.Registry) Option {
	return func(c *config) { c.functions = r }
}

func options(opts []Option) config {
	var c config
	for _, o := range opts {
		o(&c)
	}
	return c
}

// engine is the SQL engine's options: the flags', then the Option's.
func (c config) engine(opts ...sqlengine.Option) []sqlengine.Option {
	if c.functions != nil {
		opts = append(opts, sqlengine.WithFunctions(c.functions))
	}
	return opts
}

// configureEngine sets the process's SQL engine options. A process that
// runs a driver or executor again after one ran (tests, a program that
// restarts it) finds the engine open with the first run's options: that is
// not an error, the new ones just do not apply (warnOpen says so once the
// logger exists).
func configureEngine(opts ...sqlengine.Option) (open bool, err error) {
	err = sqltransform.ConfigureEngine(opts...)
	if errors.Is(err, sqltransform.ErrEngineOpen) {
		return true, nil
	}
	return false, err
}

func warnOpen(log *slog.Logger, open bool) {
	if open {
		log.Warn("the SQL engine of this process is already open: --sql-threads, --sql-memory-limit and Go functions of this run do not apply")
	}
}
