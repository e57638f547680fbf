package harness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Profiler is a `perf record` of some running processes. The Sluice
// binaries serve no /debug/pprof, so sampling them from outside with perf
// is the way to see where their CPU goes without changing them.
type Profiler struct {
	proc *Proc
	Out  string
}

// StartPerf samples procs (with call graphs, 499 Hz) into dir/name.perf.data
// until Stop. It fails when perf is not installed.
func StartPerf(dir, name string, procs []*Proc) (*Profiler, error) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("BENCH_PROFILE needs perf on PATH: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	pids := make([]string, len(procs))
	for i, p := range procs {
		pids[i] = strconv.Itoa(p.Pid())
	}
	out := filepath.Join(dir, name+".perf.data")
	p, err := StartProc(dir, name+".perf", perf, "record", "-F", "499", "-g", "-o", out, "-p", strings.Join(pids, ","))
	if err != nil {
		return nil, err
	}
	// perf needs a moment to attach; samples before that are lost anyway.
	time.Sleep(300 * time.Millisecond)
	if !p.Alive() {
		return nil, fmt.Errorf("perf record exited: %s", p.Tail(1000))
	}
	return &Profiler{proc: p, Out: out}, nil
}

// Stop ends the recording (SIGINT makes perf write its file) and returns
// the command that shows the profile.
func (pr *Profiler) Stop(ctx context.Context) (string, error) {
	if err := pr.proc.Signal(syscall.SIGINT); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pr.proc.Wait(ctx); err != nil {
		// perf exits non-zero after SIGINT on some kernels; the file is
		// what matters.
		if _, serr := os.Stat(pr.Out); serr != nil {
			return "", fmt.Errorf("perf record: %w: %s", err, pr.proc.Tail(1000))
		}
	}
	return "perf report -i " + pr.Out + " --no-children --sort dso,sym", nil
}
