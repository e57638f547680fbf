package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// Row is one line of the results table.
type Row struct {
	// ID is the scenario id with a variant letter when a scenario has
	// several rows ("3a").
	ID   string
	Name string
	// Sluice and Baseline are the headline figures, human readable.
	Sluice, Baseline string
	// Ratio compares Sluice with the baseline or the target's bound, as
	// RatioNote says; NaN when there is none.
	Ratio     float64
	RatioNote string
	// Target is the goal, printed beside the figure; Met says whether this
	// run reached it (nil: no target, or it could not be judged).
	Target string
	Met    *bool
	Notes  string
	// Data holds every figure behind the row, for the JSON line.
	Data map[string]any
	// Err is set when the scenario could not measure.
	Err string
}

// Bool is a helper for Row.Met.
func Bool(b bool) *bool { return &b }

// Machine describes where a run happened.
type Machine struct {
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryGB  string `json:"memoryGB"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	Commit    string `json:"commit"`
	KafkaKind string `json:"kafka"`
}

// DescribeMachine reads /proc and git for the run record.
func DescribeMachine(repo, kafkaKind string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version(), KafkaKind: kafkaKind}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			var kb int64
			if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
				m.MemoryGB = fmt.Sprintf("%.1f", float64(kb)/(1<<20))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "-C", repo, "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
			m.Commit += "+dirty"
		}
	}
	return m
}

// Report prints rows as a Markdown table as they come, appends each as a
// JSON line to <dir>/runs.jsonl, and writes <dir>/latest.md at the end.
type Report struct {
	out     io.Writer
	dir     string
	run     string
	started time.Time
	machine Machine
	knobs   map[string]any
	command string

	mu   sync.Mutex
	rows []Row
}

// NewReport prints the header of the table.
func NewReport(out io.Writer, dir string, machine Machine, knobs map[string]any, command string) (*Report, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("results directory: %w", err)
	}
	now := time.Now().UTC()
	r := &Report{out: out, dir: dir, run: now.Format("20060102T150405Z"), started: now, machine: machine, knobs: knobs, command: command}
	fmt.Fprintf(out, "\nrun %s on %s (%d cores, %s GB), %s, commit %s, Kafka: %s; load average %.2f at start\n\n",
		r.run, machine.CPU, machine.Cores, machine.MemoryGB, machine.Go, machine.Commit, machine.KafkaKind, LoadAvg())
	fmt.Fprintln(out, tableHeader)
	return r, nil
}

const tableHeader = "| # | scenario | Sluice | baseline | ratio | target | verdict | notes |\n|---|---|---|---|---|---|---|---|"

// Add prints the row and appends its JSON line.
func (r *Report) Add(row Row) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row)
	fmt.Fprintln(r.out, row.markdown())
	rec := map[string]any{
		"run": r.run, "time": time.Now().UTC().Format(time.RFC3339), "id": row.ID, "scenario": row.Name,
		"sluice": row.Sluice, "baseline": row.Baseline, "target": row.Target, "notes": row.Notes,
		"data": finite(row.Data), "load1": LoadAvg(), "machine": r.machine, "knobs": r.knobs,
	}
	if !math.IsNaN(row.Ratio) {
		rec["ratio"] = row.Ratio
		rec["ratioOf"] = row.RatioNote
	}
	if row.Met != nil {
		rec["met"] = *row.Met
	}
	if row.Err != "" {
		rec["error"] = row.Err
	}
	line, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode result %s: %w", row.ID, err)
	}
	f, err := os.OpenFile(filepath.Join(r.dir, "runs.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("append result: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("append result: %w", err)
	}
	return nil
}

// finite returns v with every NaN or infinite float replaced by nil (JSON
// null), walking maps, slices and arrays; other values are returned as they
// are. A figure that could not be computed (the median of an empty window of
// few samples, the slope of one point) is NaN, and encoding/json refuses NaN:
// without this, one such figure in a row's Data lost the whole row.
func finite(v any) any {
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Float32, reflect.Float64:
		if f := rv.Float(); math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
	case reflect.Map:
		if rv.IsNil() || rv.Type().Key().Kind() != reflect.String {
			return v
		}
		out := make(map[string]any, rv.Len())
		for it := rv.MapRange(); it.Next(); {
			out[it.Key().String()] = finite(it.Value().Interface())
		}
		return out
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && (rv.IsNil() || rv.Type().Elem().Kind() == reflect.Uint8) {
			return v // null, or []byte as encoding/json writes it (base64)
		}
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = finite(rv.Index(i).Interface())
		}
		return out
	}
	return v
}

// Rows returns the rows added so far.
func (r *Report) Rows() []Row {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Row(nil), r.rows...)
}

// WriteSummary writes latest.md: the machine, the command, the knobs and
// the table of this run.
func (r *Report) WriteSummary() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	m := r.machine
	fmt.Fprintf(&b, "# Latest benchmark run\n\nRun %s, %s. Machine: %s, %d cores, %s GB RAM, Linux %s, %s, commit %s; Kafka: %s.\n",
		r.run, time.Since(r.started).Round(time.Second), m.CPU, m.Cores, m.MemoryGB, m.Kernel, m.Go, m.Commit, m.KafkaKind)
	fmt.Fprintf(&b, "Load average at the end: %.2f (figures taken while it is above the core count are noisy).\n\n", LoadAvg())
	fmt.Fprintf(&b, "Command: `%s`\n\nKnobs:", r.command)
	keys := make([]string, 0, len(r.knobs))
	for k := range r.knobs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%v", k, r.knobs[k])
	}
	b.WriteString("\n\n" + tableHeader + "\n")
	for _, row := range r.rows {
		b.WriteString(row.markdown() + "\n")
	}
	path := filepath.Join(r.dir, "latest.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("write summary: %w", err)
	}
	return path, nil
}

func (row Row) markdown() string {
	verdict := "—"
	switch {
	case row.Err != "":
		verdict = "error"
	case row.Met != nil && *row.Met:
		verdict = "met"
	case row.Met != nil:
		verdict = "**missed**"
	}
	ratio := "—"
	if !math.IsNaN(row.Ratio) {
		ratio = fmt.Sprintf("%.2f", row.Ratio)
		if row.RatioNote != "" {
			ratio += " (" + row.RatioNote + ")"
		}
	}
	notes := row.Notes
	if row.Err != "" {
		notes = "could not measure: " + row.Err
	}
	cells := []string{row.ID, row.Name, row.Sluice, row.Baseline, ratio, row.Target, verdict, notes}
	for i, c := range cells {
		cells[i] = strings.ReplaceAll(strings.ReplaceAll(c, "|", "/"), "\n", " ")
	}
	return "| " + strings.Join(cells, " | ") + " |"
}

// Human formats for the table.

// Rate formats records per second.
func Rate(perSec float64) string {
	switch {
	case perSec >= 1e6:
		return fmt.Sprintf("%.2fM rec/s", perSec/1e6)
	case perSec >= 1e3:
		return fmt.Sprintf("%.0fk rec/s", perSec/1e3)
	}
	return fmt.Sprintf("%.0f rec/s", perSec)
}

// MB formats bytes as megabytes.
func MB(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

// Ms formats float milliseconds.
func Ms(ms float64) string {
	switch {
	case math.IsNaN(ms):
		return "n/a"
	case ms >= 1000:
		return fmt.Sprintf("%.2f s", ms/1000)
	case ms >= 10:
		return fmt.Sprintf("%.0f ms", ms)
	}
	return fmt.Sprintf("%.1f ms", ms)
}
