package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat. It
// is 100 on every Linux architecture Go supports (the kernel fixes it for
// the ABI), so the harness does not need cgo for sysconf(_SC_CLK_TCK).
const clockTicks = 100

// Proc is a child process with its output in a log file. The harness owns
// it: Kill or Stop ends it, and Close of the owning cluster ends it too.
type Proc struct {
	Name string
	// Log holds the process's stderr, and its stdout unless Stdout is set.
	Log string
	// Stdout is a separate file for stdout, when the caller reads results
	// from it.
	Stdout string
	cmd    *exec.Cmd
	done   chan struct{}
	err    error // Wait's error, set before done is closed
}

// StartProc starts bin with args; its stdout and stderr go to
// <dir>/<name>.log.
func StartProc(dir, name, bin string, args ...string) (*Proc, error) {
	return startProc(dir, name, false, nil, bin, args...)
}

// startProc starts bin; with ownStdout, stdout goes to <dir>/<name>.out.
// env adds NAME=value variables to this process's environment.
func startProc(dir, name string, ownStdout bool, env []string, bin string, args ...string) (*Proc, error) {
	p := &Proc{Name: name, Log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.Log)
	if err != nil {
		return nil, fmt.Errorf("start %s: log file: %w", name, err)
	}
	outf := logf
	if ownStdout {
		p.Stdout = filepath.Join(dir, name+".out")
		if outf, err = os.Create(p.Stdout); err != nil {
			logf.Close()
			return nil, fmt.Errorf("start %s: stdout file: %w", name, err)
		}
	}
	closeFiles := func() {
		logf.Close()
		if outf != logf {
			outf.Close()
		}
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = outf, logf
	if len(env) > 0 {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		closeFiles()
		return nil, fmt.Errorf("start %s (%s): %w", name, bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		closeFiles()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited is closed once the process has exited and been reaped.
func (p *Proc) Exited() <-chan struct{} { return p.done }

// Alive reports whether the process still runs.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signal sends sig to the process (not to its children).
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Alive() {
		return fmt.Errorf("signal %s: %s has exited", sig, p.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL and waits until the process is gone.
func (p *Proc) Kill() {
	if p.Alive() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// Stop asks the process to exit with SIGTERM and kills it after grace.
func (p *Proc) Stop(grace time.Duration) {
	if !p.Alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Wait waits for the process to exit, bounded by ctx; on ctx's end the
// process is killed.
func (p *Proc) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.Kill()
		return fmt.Errorf("%s did not exit: %w", p.Name, ctx.Err())
	}
}

// Usage is the CPU and peak memory of a process that has exited (from the
// kernel's rusage of the child).
func (p *Proc) Usage() (Usage, error) {
	if p.Alive() {
		return Usage{}, fmt.Errorf("usage of %s: still running", p.Name)
	}
	ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return Usage{}, fmt.Errorf("usage of %s: no rusage", p.Name)
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return Usage{CPU: cpu, PeakRSS: ru.Maxrss * 1024}, nil
}

// Tail returns the last n bytes of the process log, for error messages.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.Log)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Usage is what one process cost.
type Usage struct {
	// CPU is user plus system time.
	CPU time.Duration
	// RSS is the resident set now (zero for an exited process), PeakRSS the
	// high-water mark since the process started (VmHWM), both in bytes.
	RSS, PeakRSS int64
}

// Sub is the CPU spent between two samples of the same process; memory
// figures are those of u.
func (u Usage) Sub(before Usage) Usage {
	return Usage{CPU: u.CPU - before.CPU, RSS: u.RSS, PeakRSS: u.PeakRSS}
}

// Stats samples a running process from /proc.
func (p *Proc) Stats() (Usage, error) {
	if !p.Alive() {
		return Usage{}, fmt.Errorf("stats of %s: process has exited", p.Name)
	}
	u, err := ReadProcStats(p.Pid())
	if err != nil {
		return u, fmt.Errorf("stats of %s: %w", p.Name, err)
	}
	return u, nil
}

// ReadProcStats reads CPU time from /proc/<pid>/stat and memory from
// /proc/<pid>/status; pid 0 means this process.
func ReadProcStats(pid int) (Usage, error) {
	dir := "/proc/self"
	if pid != 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return Usage{}, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return Usage{}, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return Usage{}, err
	}
	rss, hwm, err := parseStatusMem(status)
	if err != nil {
		return Usage{}, fmt.Errorf("%s/status: %w", dir, err)
	}
	return Usage{CPU: cpu, RSS: rss, PeakRSS: hwm}, nil
}

// parseStatCPU returns utime+stime of a /proc/<pid>/stat line. The command
// name (field 2) may hold spaces and parentheses, so fields are counted
// from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no ')' after the command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("only %d fields after the command name", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("utime/stime: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseStatusMem returns VmRSS and VmHWM of /proc/<pid>/status in bytes.
func parseStatusMem(status []byte) (rss, hwm int64, err error) {
	var haveRSS, haveHWM bool
	for _, line := range strings.Split(string(status), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("%s: unexpected value %q", name, rest)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", name, err)
		}
		if name == "VmRSS" {
			rss, haveRSS = kb*1024, true
		} else {
			hwm, haveHWM = kb*1024, true
		}
	}
	if !haveRSS || !haveHWM {
		return 0, 0, errors.New("VmRSS or VmHWM missing (kernel thread or zombie?)")
	}
	return rss, hwm, nil
}

// GoTest returns `go test args...` run in dir as its own process group, so
// that cancelling ctx reaches the test binary too (go test does not pass a
// kill on to it): the group gets SIGTERM, and SIGKILL after grace.
func GoTest(ctx context.Context, dir string, grace time.Duration, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = grace
	return cmd
}

// LoadAvg is the 1-minute load average, recorded with every row because a
// figure taken while the machine was busy says so.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}
