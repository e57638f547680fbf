// Package file is a sink that writes JSON lines to a local directory, one
// object per task output:
//
//	<path>/<job>/batch=<N>/part-<part>.jsonl
//
// where <part> is the WriteKey's Part made safe for file names (see
// PartName). A writer fills a hidden temporary file in the same directory;
// Commit syncs it and renames it over the final name, so a retried or
// speculative attempt of the same key replaces the earlier output instead of
// adding to it, and a reader never sees half a file. Abort removes the
// temporary file. Temporary files a crash leaves behind start with "." and
// end in ".tmp"; ReadAll ignores them.
//
// Rows are encoded one JSON object per line, keys in WriteKey.Columns order
// when given (then any others, sorted), else sorted. []byte values are
// base64 strings as encoding/json writes them, timestamps RFC 3339 strings
// with nanoseconds, float64 values always with a fraction or exponent (3.0,
// not 3) so that readers keep them apart from integers, and NaN and
// infinities as the strings "NaN", "Infinity" and "-Infinity". A SQL
// task's Arrow batches (connectors.ArrowWriter) are encoded from their
// columns into the same bytes.
package file

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/internal/rowjson"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Config configures the sink.
type Config struct {
	// Path is the root directory; it is created if missing.
	Path string
	// Format is the output format; only "jsonl" (the default) exists.
	Format string
}

// Validate reports the first problem with the config, naming the field as
// a job spec spells it.
func (c Config) Validate() error {
	if c.Path == "" {
		return errors.New("sink.file.path: required")
	}
	switch c.Format {
	case "", "jsonl":
	default:
		return fmt.Errorf("sink.file.format: unsupported format %q (want jsonl)", c.Format)
	}
	return nil
}

// Sink writes task outputs under a directory. It is safe for concurrent use.
type Sink struct {
	root string
}

var _ connectors.Sink = (*Sink)(nil)

// New validates cfg and creates the root directory.
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Path, 0o755); err != nil {
		return nil, fmt.Errorf("sink.file.path: %w", err)
	}
	return &Sink{root: cfg.Path}, nil
}

// Close does nothing; writers are independent of the sink.
func (s *Sink) Close() error { return nil }

// PartName maps a WriteKey part to a file-name fragment, injectively:
// letters, digits, '.', '_' and '-' stay, '/' becomes '=', '#' becomes '+',
// and every other byte (including '=', '+' and '%') becomes %XX. So
// "transaction/3" is "transaction=3" and "transaction/3#1" is
// "transaction=3+1", and no two parts share a name.
func PartName(part string) string {
	var b strings.Builder
	for i := 0; i < len(part); i++ {
		c := part[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
		case c == '/':
			b.WriteByte('=')
		case c == '#':
			b.WriteByte('+')
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	name := b.String()
	if name == "" || name == "." || name == ".." {
		// Never a path of its own; "." alone cannot come out otherwise.
		name = strings.ReplaceAll(name, ".", "%2E") + "%"
	}
	return name
}

// dir is the directory of one batch's parts.
func (s *Sink) dir(job stream.JobID, batch stream.BatchID) string {
	return filepath.Join(s.root, PartName(string(job)), fmt.Sprintf("batch=%d", batch))
}

// OpenWriter creates the batch directory and a temporary file for key.
func (s *Sink) OpenWriter(ctx context.Context, key connectors.WriteKey) (connectors.Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if key.Job == "" {
		return nil, errors.New("file sink: empty job")
	}
	dir := s.dir(key.Job, key.Batch)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	name := "part-" + PartName(key.Part) + ".jsonl"
	f, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	// CreateTemp makes the file private; outputs are meant to be read by
	// other tools. Best effort: some file systems ignore modes.
	_ = f.Chmod(0o644)
	return &writer{
		key:   key,
		f:     f,
		final: filepath.Join(dir, name),
		buf:   bufio.NewWriterSize(f, 64<<10),
		enc:   rowjson.Encoder{Columns: key.Columns},
		arrow: rowjson.ArrowEncoder{Columns: key.Columns},
	}, nil
}

// writer is one attempt's output. Its methods are called by one goroutine.
type writer struct {
	key   connectors.WriteKey
	f     *os.File
	final string
	buf   *bufio.Writer
	enc   rowjson.Encoder
	arrow rowjson.ArrowEncoder
	line  []byte
	done  bool // committed or aborted
}

func (w *writer) Write(ctx context.Context, rows []stream.Row) error {
	if w.done {
		return errors.New("file sink: write after commit or abort")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, r := range rows {
		var err error
		w.line, err = w.enc.Append(w.line[:0], r)
		if err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
		w.line = append(w.line, '\n')
		if _, err := w.buf.Write(w.line); err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
	}
	return nil
}

var _ connectors.ArrowWriter = (*writer)(nil)

// WriteArrow writes rec's rows as Write writes the same rows, encoded
// straight from the columns. A row that cannot be encoded is a permanent
// error; lines before it are already written, and Abort drops them.
func (w *writer) WriteArrow(ctx context.Context, rec arrow.RecordBatch) error {
	if w.done {
		return errors.New("file sink: write after commit or abort")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	rows, err := w.arrow.Bind(rec)
	if err != nil {
		return connectors.Permanent(fmt.Errorf("file sink: %w", err))
	}
	for i := range rows.Len() {
		if w.line, err = rows.Append(w.line[:0], i); err != nil {
			return connectors.Permanent(fmt.Errorf("file sink: %w", err))
		}
		w.line = append(w.line, '\n')
		if _, err := w.buf.Write(w.line); err != nil {
			return fmt.Errorf("file sink: %w", err)
		}
	}
	return nil
}

// Commit flushes, syncs and closes the temporary file, then renames it over
// the final name and syncs the directory, so the output survives a crash
// once Commit returns.
func (w *writer) Commit(ctx context.Context) error {
	if w.done {
		return errors.New("file sink: commit after commit or abort")
	}
	if err := ctx.Err(); err != nil {
		return errors.Join(err, w.Abort())
	}
	w.done = true
	tmp := w.f.Name()
	err := w.buf.Flush()
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The rename replaces any earlier attempt's file: only an attempt
		// that is still current may do it (its executor still hears the
		// driver), checked after the slow flush and sync.
		err = w.key.StillCurrent(ctx)
	}
	if err == nil {
		err = os.Rename(tmp, w.final)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("file sink: commit %s: %w", w.final, err)
	}
	if d, err := os.Open(filepath.Dir(w.final)); err == nil {
		// Make the rename durable. Not every file system supports syncing
		// a directory; the rename itself already happened.
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// Abort removes the temporary file. It is safe to call after Commit, when
// it does nothing.
func (w *writer) Abort() error {
	if w.done {
		return nil
	}
	w.done = true
	cerr := w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("file sink: abort: %w", err)
	}
	if cerr != nil && !errors.Is(cerr, os.ErrClosed) {
		return fmt.Errorf("file sink: abort: %w", cerr)
	}
	return nil
}

// ReadAll reads every committed row of job under path, in batch order, then
// part name, then line. Integers come back as int64 and other numbers as
// float64; everything else as encoding/json decodes it (so timestamps and
// bytes are strings). It is meant for tests and demos: counting rows here
// shows whether each was written exactly once.
func ReadAll(path, job string) ([]map[string]any, error) {
	jobDir := filepath.Join(path, PartName(job))
	entries, err := os.ReadDir(jobDir)
	if err != nil {
		return nil, err
	}
	type batchDir struct {
		n    int64
		name string
	}
	var batches []batchDir
	for _, e := range entries {
		n, ok := strings.CutPrefix(e.Name(), "batch=")
		if !ok || !e.IsDir() {
			continue
		}
		id, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			continue
		}
		batches = append(batches, batchDir{id, e.Name()})
	}
	slices.SortFunc(batches, func(a, b batchDir) int { return int(min(max(a.n-b.n, -1), 1)) })
	var rows []map[string]any
	for _, bd := range batches {
		parts, err := os.ReadDir(filepath.Join(jobDir, bd.name))
		if err != nil {
			return nil, err
		}
		for _, p := range parts { // ReadDir sorts by name
			if p.IsDir() || !strings.HasPrefix(p.Name(), "part-") || !strings.HasSuffix(p.Name(), ".jsonl") {
				continue
			}
			file := filepath.Join(jobDir, bd.name, p.Name())
			got, err := readFile(file)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			rows = append(rows, got...)
		}
	}
	return rows, nil
}

func readFile(name string) ([]map[string]any, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReader(f))
	dec.UseNumber()
	var rows []map[string]any
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return rows, nil
		} else if err != nil {
			return nil, fmt.Errorf("row %d: %w", len(rows)+1, err)
		}
		rows = append(rows, numbers(m).(map[string]any))
	}
}

// numbers replaces json.Numbers by int64 or float64.
func numbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(x), ".eE") {
			if i, err := x.Int64(); err == nil {
				return i
			}
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = numbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = numbers(x[k])
		}
	}
	return v
}
