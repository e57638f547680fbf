package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Capture is a set of Go CPU profiles being taken from Sluice processes
// that serve /debug/pprof/ (a cluster started with ClusterOptions.Pprof).
// Unlike perf (BENCH_PROFILE), the sampling happens inside the process at
// Go's 100 Hz, cheap enough not to slow the scenario it watches.
//
// Each profile is one HTTP request that lasts the profile's duration; the
// goroutines making them are owned by the Capture and joined by Wait.
type Capture struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	files []string
	errs  []error
}

// StartCPUProfiles asks every target (process name → HTTP address) for a
// CPU profile of d, written to dir/<name>-<process>.cpu.pprof, and the
// allocations made in the same time, to dir/<name>-<process>.allocs.pprof
// (go tool pprof -sample_index=alloc_space), and, for
// every name in traces, an execution trace of min(d, 2s) to
// dir/<name>-<process>.trace. It returns at once; Wait collects them.
func StartCPUProfiles(ctx context.Context, dir, name string, targets map[string]string, d time.Duration, traces ...string) (*Capture, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profiles directory: %w", err)
	}
	c := &Capture{}
	secs := strconv.Itoa(max(int(d.Round(time.Second)/time.Second), 1))
	for proc, addr := range targets {
		c.fetch(ctx, "http://"+addr+"/debug/pprof/profile?seconds="+secs, filepath.Join(dir, name+"-"+proc+".cpu.pprof"))
		c.fetch(ctx, "http://"+addr+"/debug/pprof/allocs?seconds="+secs, filepath.Join(dir, name+"-"+proc+".allocs.pprof"))
	}
	for _, proc := range traces {
		if addr, ok := targets[proc]; ok {
			c.fetch(ctx, "http://"+addr+"/debug/pprof/trace?seconds="+strconv.Itoa(min(int(d/time.Second), 2)), filepath.Join(dir, name+"-"+proc+".trace"))
		}
	}
	return c, nil
}

func (c *Capture) fetch(ctx context.Context, url, out string) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := download(ctx, url, out)
		c.mu.Lock()
		defer c.mu.Unlock()
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		c.files = append(c.files, out)
	}()
}

func download(ctx context.Context, url, out string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("profile %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("profile %s: %w", url, err)
	}
	return f.Close()
}

// Wait waits for every profile and returns the command that shows them (one
// line per file) and the errors of those that failed.
func (c *Capture) Wait() (string, error) {
	c.wg.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	sort.Strings(c.files)
	var cmds []string
	for _, f := range c.files {
		switch {
		case strings.HasSuffix(f, ".trace"):
			cmds = append(cmds, "go tool trace "+f)
		case strings.HasSuffix(f, ".allocs.pprof"):
			cmds = append(cmds, "go tool pprof -sample_index=alloc_space -top "+f)
		default:
			cmds = append(cmds, "go tool pprof -top "+f)
		}
	}
	return strings.Join(cmds, "; "), errors.Join(c.errs...)
}
