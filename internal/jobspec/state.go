package jobspec

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/sluicehq/sluice/pkg/sqltransform"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Defaults of a stateful job's state (Spark's spark.sql.shuffle.partitions
// for stateful operators is 200; 16 suits the executors Sluice runs with,
// and the issue that introduced state fixed it so).
const (
	DefaultStatePartitions       = 16
	DefaultStateSnapshotInterval = 10
	maxStatePartitions           = 1024
	maxStateSnapshotInterval     = 10000
)

// StateConfig is how a stateful job (outputMode) keeps its state.
type StateConfig struct {
	// Partitions: state partitions, fixed for the job's life.
	Partitions int
	// SnapshotInterval: a full snapshot every this many batches.
	SnapshotInterval int
	// Location: the directory holding changelogs and snapshots.
	Location string
	// MinBatchesToRetain: versions every state partition can still load.
	MinBatchesToRetain int
}

// compileState validates outputMode, state and checkpoint.state. It
// returns nil for a job that keeps no state; the SQL side of outputMode is
// checked by compileSQL.
func compileState(spec *sluicev1.JobSpec, e *Error) *StateConfig {
	mode := spec.GetOutputMode()
	if mode == "" {
		if spec.GetState() != nil {
			e.add("state", "applies to a stateful job: set outputMode (update or complete)")
		}
		if spec.GetCheckpoint().GetState() != "" {
			e.add("checkpoint.state", "applies to a stateful job: set outputMode (update or complete)")
		}
		return nil
	}
	switch sqltransform.OutputMode(mode) {
	case sqltransform.Update, sqltransform.Complete:
	case "append":
		e.add("outputMode", "append writes only groups that can no longer change, which needs an event-time window closed by a watermark; this release keeps running aggregates: use update or complete")
		return nil
	default:
		e.add("outputMode", "%q is not an output mode: update or complete", mode)
		return nil
	}
	if !hasSQL(spec.GetTransforms()) {
		e.add("outputMode", "needs a job whose transforms are SQL (a decode and sql steps) ending in an aggregating query")
	}
	c := &StateConfig{Partitions: DefaultStatePartitions, SnapshotInterval: DefaultStateSnapshotInterval,
		MinBatchesToRetain: DefaultMinBatchesToRetain}
	if n := spec.GetCheckpoint().GetMinBatchesToRetain(); n > 0 {
		c.MinBatchesToRetain = int(n)
	}
	if s := spec.GetState(); s != nil {
		switch n := s.GetPartitions(); {
		case n < 0 || n > maxStatePartitions:
			e.add("state.partitions", "must be 1 to %d (got %d)", maxStatePartitions, n)
		case n > 0:
			c.Partitions = int(n)
		}
		switch n := s.GetSnapshotInterval(); {
		case n < 0 || n > maxStateSnapshotInterval:
			e.add("state.snapshotInterval", "must be 1 to %d (got %d)", maxStateSnapshotInterval, n)
		case n > 0:
			c.SnapshotInterval = int(n)
		}
	}
	loc := spec.GetCheckpoint().GetState()
	if loc == "" {
		e.add("checkpoint.state", "is required for a stateful job (outputMode %s): a directory every executor can reach, where each state partition's changelogs and snapshots are kept so that another executor can take it over", mode)
		return c
	}
	dir, err := stateDir(loc)
	if err != nil {
		e.add("checkpoint.state", "%s", err)
		return c
	}
	c.Location = dir
	return c
}

// stateDir is the directory a checkpoint.state location names: an
// absolute path or a file:// URL.
func stateDir(loc string) (string, error) {
	if strings.Contains(loc, "://") {
		u, err := url.Parse(loc)
		if err != nil {
			return "", fmt.Errorf("%q is not a URL: %v", loc, err)
		}
		if u.Scheme != "file" {
			return "", fmt.Errorf("%q: scheme %s is not supported; give a directory (an absolute path or file:///path) on a volume every executor mounts", loc, u.Scheme)
		}
		if u.Host != "" && u.Host != "localhost" {
			return "", fmt.Errorf("%q: a file URL names no host (file:///path)", loc)
		}
		loc = u.Path
	}
	if !filepath.IsAbs(loc) {
		return "", fmt.Errorf("%q must be an absolute path (executors run in their own working directories)", loc)
	}
	return filepath.Clean(loc), nil
}
