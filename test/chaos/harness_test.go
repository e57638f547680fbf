// Package chaos runs fault tests against the built binaries: two drivers on
// an etcd that runs as its own process (test/chaos/etcdproc), three
// executors, an in-process Kafka (kfake) and a throwaway PostgreSQL. A
// supervisor restarts every driver and executor that exits, as Kubernetes
// would, while the test kills and pauses processes and stops PostgreSQL and
// etcd; at the end the PostgreSQL table must hold every Kafka record exactly
// once and the job must never have been FAILED.
//
// The short form (default) runs inside `go test ./test/...`; SLUICE_CHAOS=full
// (`make chaos`) runs every fault. See docs/development.md, "Fault tests".
package chaos

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testenv"
)

var binDir string

// secretsKeyFile is the drivers' --secrets-key-file, written in TestMain.
var secretsKeyFile string

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(0)
	}
	bins, err := testenv.BuildBinaries("sluice-chaos-bin-", map[string]string{
		"driver": "../../cmd/driver", "executor": "../../cmd/executor", "sluice": "../../cmd/sluice", "etcdproc": "./etcdproc",
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, secretsKeyFile = bins.Dir, bins.SecretsKeyFile
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

// supervised is a driver or executor process that is started again, after
// restartDelay, whenever it exits, until stop. Its output of every run is
// appended to one log file.
type supervised struct {
	name  string
	args  []string
	bin   string
	log   string
	delay time.Duration

	mu     sync.Mutex
	cmd    *exec.Cmd // the running process; nil between runs
	starts int
	exits  []string // how each run ended
	quit   chan struct{}
	done   chan struct{}
}

func supervise(t *testing.T, logDir, name, bin string, delay time.Duration, args ...string) *supervised {
	t.Helper()
	s := &supervised{name: name, args: args, bin: filepath.Join(binDir, bin), log: filepath.Join(logDir, name+".log"),
		delay: delay, quit: make(chan struct{}), done: make(chan struct{})}
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	go s.loop(f)
	t.Cleanup(s.stop)
	return s
}

func (s *supervised) loop(f *os.File) {
	defer close(s.done)
	defer f.Close()
	for {
		s.mu.Lock()
		select {
		case <-s.quit:
			s.mu.Unlock()
			return
		default:
		}
		cmd := exec.Command(s.bin, s.args...)
		cmd.Stdout, cmd.Stderr = f, f
		s.starts++
		fmt.Fprintf(f, "==== supervisor: start #%d of %s at %s\n", s.starts, s.name, time.Now().Format(time.StampMilli))
		if err := cmd.Start(); err != nil {
			s.exits = append(s.exits, "start: "+err.Error())
			s.mu.Unlock()
		} else {
			s.cmd = cmd
			s.mu.Unlock()
			err := cmd.Wait()
			s.mu.Lock()
			s.cmd = nil
			s.exits = append(s.exits, exitText(err))
			s.mu.Unlock()
			fmt.Fprintf(f, "==== supervisor: %s exited (%s) at %s\n", s.name, exitText(err), time.Now().Format(time.StampMilli))
		}
		select {
		case <-s.quit:
			return
		case <-time.After(s.delay):
		}
	}
}

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// signal sends sig to the running process and returns its pid; 0 when none
// runs (it is between restarts).
func (s *supervised) signal(sig syscall.Signal) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	_ = s.cmd.Process.Signal(sig)
	return s.cmd.Process.Pid
}

// pid is the running process's pid, 0 between restarts.
func (s *supervised) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

func (s *supervised) restarts() (starts int, exits []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts, append([]string(nil), s.exits...)
}

// stop ends supervision and kills the process (SIGKILL also ends a stopped
// one); idempotent.
func (s *supervised) stop() {
	s.mu.Lock()
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(syscall.SIGKILL)
	}
	s.mu.Unlock()
	<-s.done
}

// etcdProc is etcd as a process of its own (test/chaos/etcdproc) on fixed
// ports and a data directory kept across restarts.
type etcdProc struct {
	dir, client, peer, log string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func startEtcd(t *testing.T, logDir string) *etcdProc {
	t.Helper()
	e := &etcdProc{dir: filepath.Join(t.TempDir(), "etcd"), client: freeAddr(t), peer: freeAddr(t), log: filepath.Join(logDir, "etcd.log")}
	if err := e.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.kill)
	return e
}

func (e *etcdProc) endpoint() string { return "http://" + e.client }

// start runs etcd and waits until it prints ready.
func (e *etcdProc) start() error {
	f, err := os.OpenFile(e.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	before, _ := os.ReadFile(e.log)
	fmt.Fprintf(f, "==== start at %s\n", time.Now().Format(time.StampMilli))
	cmd := exec.Command(filepath.Join(binDir, "etcdproc"), "--dir", e.dir, "--client", e.client, "--peer", e.peer)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	e.mu.Lock()
	e.cmd, e.done = cmd, done
	e.mu.Unlock()
	readyBefore := bytes.Count(before, []byte("\nready "))
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(e.log)
		if bytes.Count(b, []byte("\nready ")) > readyBefore {
			return nil
		}
		select {
		case <-done:
			return fmt.Errorf("etcd exited while starting:\n%s", tail(b, 3000))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("etcd not ready after 45s")
}

func (e *etcdProc) signal(sig syscall.Signal) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil {
		_ = e.cmd.Process.Signal(sig)
	}
}

// kill ends etcd with SIGKILL and waits for it.
func (e *etcdProc) kill() {
	e.mu.Lock()
	cmd, done := e.cmd, e.done
	e.cmd = nil
	e.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// readyz reports whether the driver serving HTTP on addr says it leads.
func readyz(addr string) bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// sleepCtx waits d or until ctx ends; false when ctx ended.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// logLines returns the last max lines of the file at path that contain any
// of words and none of skip, for the failure report.
func logLines(path string, max int, skip []string, words ...string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
next:
	for _, l := range strings.Split(string(b), "\n") {
		for _, w := range skip {
			if strings.Contains(l, w) {
				continue next
			}
		}
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return out
}
