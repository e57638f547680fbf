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
// infinities as the strings "NaN", "Infinity" and "-Infinity".
package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sluicehq/sluice/pkg/connectors"
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
		f:       f,
		final:   filepath.Join(dir, name),
		buf:     bufio.NewWriterSize(f, 64<<10),
		columns: key.Columns,
	}, nil
}

// writer is one attempt's output. Its methods are called by one goroutine.
type writer struct {
	f       *os.File
	final   string
	buf     *bufio.Writer
	columns []string
	line    []byte
	keys    []string
	done    bool // committed or aborted
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
		w.line, err = w.appendRow(w.line[:0], r)
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

func (w *writer) appendRow(b []byte, r stream.Row) ([]byte, error) {
	keys := w.keys[:0]
	if len(w.columns) > 0 {
		for _, c := range w.columns {
			if _, ok := r[c]; ok {
				keys = append(keys, c)
			}
		}
		if len(keys) < len(r) {
			extra := len(keys)
			for k := range r {
				if !slices.Contains(w.columns, k) {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys[extra:])
		}
	} else {
		for k := range r {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	w.keys = keys
	return appendObject(b, keys, r)
}

// appendValue appends v as JSON.
func appendValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case uint32:
		return strconv.AppendUint(b, uint64(x), 10), nil
	case float64:
		return appendFloat(b, x), nil
	case float32:
		return appendFloat(b, float64(x)), nil
	case string:
		return appendString(b, x), nil
	case []byte:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, x)
		return append(b, '"'), nil
	case time.Time:
		b = append(b, '"')
		b = x.AppendFormat(b, time.RFC3339Nano)
		return append(b, '"'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		return appendMap(b, x)
	case stream.Row:
		return appendMap(b, x)
	}
	// Anything else a custom transform produced: as encoding/json sees it.
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, j...), nil
}

func appendMap(b []byte, m map[string]any) ([]byte, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return appendObject(b, keys, m)
}

// appendObject appends m as a JSON object with its fields in keys order. An
// error names the field, so a nested one reads as a path.
func appendObject(b []byte, keys []string, m map[string]any) ([]byte, error) {
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendValue(b, m[k]); err != nil {
			return nil, fmt.Errorf("field %q: %w", k, err)
		}
	}
	return append(b, '}'), nil
}

func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	// encoding/json's choice of notation, plus a ".0" on whole numbers.
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b) - start
		if n >= 4 && b[len(b)-4] == 'e' && b[len(b)-3] == '-' && b[len(b)-2] == '0' {
			b[len(b)-2] = b[len(b)-1]
			b = b[:len(b)-1]
		}
		return b
	}
	if !bytes.ContainsAny(b[start:], ".e") {
		b = append(b, ".0"...)
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD, and U+2028 and
// U+2029 escaped for JavaScript readers. Unlike encoding/json it leaves <, >
// and & alone.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
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
