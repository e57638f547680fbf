package jobspec

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/pkg/sqltransform"
	"github.com/sluicehq/sluice/pkg/statestore"
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
	// Location: where changelogs and snapshots are kept: a directory, or
	// s3://bucket/prefix (statestore.OpenLocation).
	Location string
	// S3 reaches an s3:// Location: checkpoint.s3's region, endpoint and
	// credentials when the job has them, else the SDK's defaults.
	S3 statestore.S3Config
	// MinBatchesToRetain: versions every state partition can still load.
	MinBatchesToRetain int
	// Watermark, when set, bounds the job's event time.
	Watermark *Watermark
	// Dedup, when set, is the job's dropDuplicates (instead of an
	// aggregate's state); DedupWithin how long a key is remembered (0: for
	// the job's life).
	Dedup       []string
	DedupWithin time.Duration
}

// Watermark is a validated watermark: the event-time column, and how late
// a record may be.
type Watermark struct {
	Column string
	Delay  time.Duration
}

// compileState validates outputMode, state and checkpoint.state. It
// returns nil for a job that keeps no state; the SQL side of outputMode is
// checked by compileSQL.
func compileState(spec *sluicev1.JobSpec, e *Error) *StateConfig {
	mode := spec.GetOutputMode()
	dd := spec.GetDropDuplicates()
	if dd != nil && mode == "" {
		mode = string(sqltransform.Append) // dropping duplicates writes each row once
	}
	if mode == "" {
		for _, f := range []struct {
			field string
			set   bool
		}{{"state", spec.GetState() != nil}, {"checkpoint.state", spec.GetCheckpoint().GetState() != ""}, {"watermark", spec.GetWatermark() != nil}} {
			if f.set {
				e.add(f.field, "applies to a stateful job: set outputMode (update, complete or append)")
			}
		}
		return nil
	}
	wm := compileWatermark(spec.GetWatermark(), e)
	switch sqltransform.OutputMode(mode) {
	case sqltransform.Update, sqltransform.Complete:
		if dd != nil {
			e.add("outputMode", "%s applies to aggregates; dropDuplicates writes each row once (leave outputMode out, or append)", mode)
			return nil
		}
	case sqltransform.Append:
		if spec.GetWatermark() == nil && dd == nil {
			e.add("outputMode", "append writes each group once, when no record can change it any more, which a watermark decides: set watermark {column, delay} and group by window(column, ...)")
			return nil
		}
	default:
		e.add("outputMode", "%q is not an output mode: update, complete or append", mode)
		return nil
	}
	if len(spec.GetTransforms()) == 0 {
		e.add("outputMode", "needs transforms ending in an aggregating step (a sql query with GROUP BY, or aggregate)")
	}
	c := &StateConfig{Partitions: DefaultStatePartitions, SnapshotInterval: DefaultStateSnapshotInterval,
		MinBatchesToRetain: DefaultMinBatchesToRetain, Watermark: wm}
	if dd != nil {
		c.Dedup = dd.GetColumns()
		if len(c.Dedup) == 0 {
			e.add("dropDuplicates.columns", "is required: the output columns that identify a row, e.g. [id]")
		}
		switch w := dd.GetWithin(); {
		case w != "":
			d, err := parseSparkDuration(w)
			switch {
			case err != nil:
				e.add("dropDuplicates.within", "%q is not a duration like \"1 hour\" or 10m", w)
			case d <= 0:
				e.add("dropDuplicates.within", "must be positive (got %s)", w)
			case spec.GetWatermark() == nil:
				e.add("dropDuplicates.within", "needs a watermark: the rows' event time says when a key may be forgotten")
			default:
				c.DedupWithin = d
			}
		case wm != nil:
			c.DedupWithin = wm.Delay // Spark's dropDuplicatesWithinWatermark
		}
	}
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
	dir, err := stateLocation(loc)
	if err != nil {
		e.add("checkpoint.state", "%s", err)
		return c
	}
	c.Location = dir
	if s3 := spec.GetCheckpoint().GetS3(); s3 != nil && strings.HasPrefix(dir, "s3://") {
		auth := awsAuthOptions(s3.GetAuth())
		auth.Region = s3.GetRegion()
		c.S3 = statestore.S3Config{Endpoint: s3.GetEndpoint(), Options: auth}
	}
	return c
}

// stateLocation is the location a checkpoint.state names: an absolute path (a
// file:// URL's path), or an s3://bucket/prefix URL as it is.
func stateLocation(loc string) (string, error) {
	if strings.Contains(loc, "://") {
		u, err := url.Parse(loc)
		if err != nil {
			return "", fmt.Errorf("%q is not a URL: %v", loc, err)
		}
		if u.Scheme == "s3" {
			switch {
			case u.Host == "":
				return "", fmt.Errorf("%q names no bucket (s3://bucket/prefix)", loc)
			case u.User != nil || u.RawQuery != "" || u.Fragment != "":
				return "", errors.New("an s3:// location is s3://bucket/prefix alone: credentials, region and endpoint come from checkpoint.s3 (or the executors' AWS defaults)")
			}
			return "s3://" + u.Host + "/" + strings.Trim(u.Path, "/"), nil
		}
		if u.Scheme != "file" {
			return "", fmt.Errorf("%q: scheme %s is not supported; give a directory every executor mounts (an absolute path or file:///path) or s3://bucket/prefix", loc, u.Scheme)
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

// compileWatermark validates watermark (nil when absent or invalid).
func compileWatermark(w *sluicev1.Watermark, e *Error) *Watermark {
	if w == nil {
		return nil
	}
	ok := true
	if w.GetColumn() == "" {
		e.add("watermark.column", "is required: the event-time column (a TIMESTAMP) of the rows the aggregating query reads")
		ok = false
	}
	d, err := parseSparkDuration(w.GetDelay())
	switch {
	case w.GetDelay() == "":
		e.add("watermark.delay", "is required: how late a record may be, e.g. \"10 seconds\" or 10s")
		ok = false
	case err != nil:
		e.add("watermark.delay", "%q is not a duration like \"10 seconds\", \"5 minutes\" or 10s", w.GetDelay())
		ok = false
	case d < 0:
		e.add("watermark.delay", "must not be negative (got %s)", w.GetDelay())
		ok = false
	}
	if !ok {
		return nil
	}
	return &Watermark{Column: w.GetColumn(), Delay: d}
}

// sparkUnits are the interval units Spark's withWatermark takes.
var sparkUnits = map[string]time.Duration{
	"millisecond": time.Millisecond, "milliseconds": time.Millisecond, "ms": time.Millisecond,
	"second": time.Second, "seconds": time.Second, "sec": time.Second, "secs": time.Second,
	"minute": time.Minute, "minutes": time.Minute, "min": time.Minute, "mins": time.Minute,
	"hour": time.Hour, "hours": time.Hour,
	"day": 24 * time.Hour, "days": 24 * time.Hour,
	"week": 7 * 24 * time.Hour, "weeks": 7 * 24 * time.Hour,
}

// parseSparkDuration reads "10 seconds", "1 minute 30 seconds" (Spark's
// interval strings) or a Go duration ("10s").
func parseSparkDuration(s string) (time.Duration, error) {
	f := strings.Fields(strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), "interval ")))
	if len(f) == 1 {
		return parseDuration(f[0])
	}
	if len(f) == 0 || len(f)%2 != 0 {
		return 0, fmt.Errorf("%q: want pairs of a number and a unit", s)
	}
	var d time.Duration
	for i := 0; i < len(f); i += 2 {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %q is not a whole number", s, f[i])
		}
		u, ok := sparkUnits[f[i+1]]
		if !ok {
			return 0, fmt.Errorf("%q: unknown unit %q", s, f[i+1])
		}
		d += time.Duration(n) * u
	}
	return d, nil
}
