package testenv

import (
	"context"

	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Service is a child process started for a test.
type Service struct {
	Name string
	Cmd  *exec.Cmd
	// Log is the file holding the process's stdout and stderr; its tail is
	// shown when the service fails to start.
	Log string
}

// StartProcess starts cmd in its own process group with its output in a file
// under t.TempDir(), waits until ready returns nil (polling for up to
// timeout), and kills the group when the test ends.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd, timeout time.Duration, ready func(context.Context) error) *Service {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return &Service{Name: name, Cmd: cmd, Log: logPath}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it was ready: %s", name, tail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s (%v): %s", name, timeout, err, tail(logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// TCPReady is a ready check that succeeds once addr accepts connections.
func TCPReady(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// npmDir holds package.json and package-lock.json pinning the emulators.
func npmDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "testdata", "npm")
}

// npmMu keeps the test processes' own goroutines from installing twice;
// the file lock does the same across processes.
var npmMu sync.Mutex

// NPMBin returns the path of an executable installed by the pinned
// package-lock.json (kinesis-local, dynalite), running `npm ci` first when
// node_modules is missing. Concurrent test processes take a file lock, so
// only one installs.
func NPMBin(t testing.TB, name string) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is required for %s (Node 20+): %v", name, err)
	}
	dir := npmDir()
	bin := filepath.Join(dir, "node_modules", ".bin", name)
	npmMu.Lock()
	defer npmMu.Unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	unlock := lockFile(t, filepath.Join(dir, ".npm-install.lock"))
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("npm ci did not install %s: %v", name, err)
	}
	return bin
}

// lockFile takes an exclusive flock on path, waiting for other processes.
func lockFile(t testing.TB, path string) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("lock %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

// ToolsDir is where binaries built for tests are cached between runs
// (MinIO, kube-apiserver): $SLUICE_TOOLS_DIR, or sluice/tools under the
// user's cache directory (~/.cache/sluice/tools on Linux).
func ToolsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("SLUICE_TOOLS_DIR"); d != "" {
		return d
	}
	base, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("tools dir: %v", err)
	}
	return filepath.Join(base, "sluice", "tools")
}

// GoInstall builds pkg@version into ToolsDir/<name>-<version>/ once (under a
// file lock, so parallel test processes build it once) and returns the
// binary's path.
func GoInstall(t testing.TB, name, pkg, version string) string {
	t.Helper()
	dir := filepath.Join(ToolsDir(t), name+"-"+version)
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	unlock := lockFile(t, bin+".lock")
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	t.Logf("building %s@%s into %s (once; cached afterwards)", pkg, version, dir)
	cmd := exec.Command("go", "install", pkg+"@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s@%s: %v\n%s", pkg, version, err, out)
	}
	return bin
}

// Addr joins a loopback host and port.
func Addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
