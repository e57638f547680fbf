package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Postgres is a throwaway PostgreSQL cluster started from the machine's
// binaries.
type Postgres struct {
	// URL connects over TCP as the superuser with a password
	// (scram-sha-256), sslmode disabled:
	// postgres://sluice:<password>@127.0.0.1:<port>/postgres?sslmode=disable.
	URL      string
	Host     string
	Port     int
	User     string
	Password string
	Database string
	// SocketDir holds the cluster's unix socket.
	SocketDir string

	// ctl restarts the cluster on its data directory (Stop, Start).
	ctl *pgControl
}

// pgControl is what Stop and Start need to run pg_ctl on the cluster's data
// directory, port and options.
type pgControl struct {
	run     func(name string, args ...string) ([]byte, error)
	dataDir string
	logFile string
	opts    string
}

// Stop shuts the cluster down (pg_ctl stop -m fast) and waits until it has
// stopped: clients are disconnected and new connections are refused until
// Start. The data directory is kept.
func (p Postgres) Stop() error {
	if p.ctl == nil {
		return errors.New("postgres: Stop needs a cluster from StartPostgres")
	}
	if out, err := p.ctl.run("pg_ctl", "stop", "-D", p.ctl.dataDir, "-m", "fast", "-w", "-t", "60"); err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// Start starts a cluster stopped by Stop again on the same data directory,
// port and options, and waits until it accepts connections.
func (p Postgres) Start() error {
	if p.ctl == nil {
		return errors.New("postgres: Start needs a cluster from StartPostgres")
	}
	if out, err := p.ctl.run("pg_ctl", "start", "-D", p.ctl.dataDir, "-l", p.ctl.logFile, "-w", "-t", "60", "-o", p.ctl.opts); err != nil {
		return fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, tail(p.ctl.logFile))
	}
	return nil
}

// URLFor is URL with another user, password and database.
func (p Postgres) URLFor(user, password, database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     Addr(p.Port),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// pgBinaries are the programs StartPostgres needs.
var pgBinaries = []string{"initdb", "pg_ctl", "postgres"}

// findPostgresBin returns the directory holding initdb, pg_ctl and postgres:
// from PATH, else the newest /usr/lib/postgresql/<version>/bin (Debian and
// Ubuntu keep them off PATH).
func findPostgresBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if hasAll(dir) {
			return dir, nil
		}
		// initdb on PATH may be a symlink into the versioned directory.
		if real, err := filepath.EvalSymlinks(p); err == nil && hasAll(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if hasAll(d) {
			return d, nil
		}
	}
	return "", errors.New("PostgreSQL binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin: " +
		"install the postgresql package (e.g. apt-get install postgresql)")
}

func hasAll(dir string) bool {
	for _, b := range pgBinaries {
		if fi, err := os.Stat(filepath.Join(dir, b)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

func pgVersion(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// StartPostgres initialises a cluster in t.TempDir() (superuser "sluice"
// with a random password, database "postgres", fsync off), starts it on a
// free loopback port with its unix socket in the temporary directory, and
// stops it when the test ends. It fails the test, saying to install the
// postgresql package, when the binaries are missing.
//
// PostgreSQL refuses to run as root; when the test runs as root the cluster
// runs as the "postgres" user (or "nobody"), which then owns the data
// directory.
func StartPostgres(t testing.TB) Postgres {
	t.Helper()
	bin, err := findPostgresBin()
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	cred, err := pgCredential(base)
	if err != nil {
		t.Fatalf("postgres: %v", err)
	}
	dataDir := filepath.Join(base, "data")
	sockDir := filepath.Join(base, "s")
	// A unix socket path is limited to 107 bytes; a long TMPDIR or test name
	// would exceed it, so fall back to a short directory.
	if len(sockDir)+len("/.s.PGSQL.65535") > 100 {
		sockDir, err = os.MkdirTemp("", "pgs")
		if err != nil {
			t.Fatalf("postgres: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(sockDir) })
	}
	password := randomHex(12)
	pwFile := filepath.Join(base, "pwfile")
	logFile := filepath.Join(base, "postgres.log")
	for _, d := range []string{dataDir, sockDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("postgres: %v", err)
		}
	}
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	if cred != nil {
		for _, p := range []string{dataDir, sockDir, pwFile, logFile} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				t.Fatalf("postgres: %v", err)
			}
		}
	}

	run := func(name string, args ...string) ([]byte, error) {
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Env = pgEnv()
		cmd.Dir = base
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return cmd.CombinedOutput()
	}
	if out, err := run("initdb", "-D", dataDir, "-U", "sluice", "--pwfile", pwFile,
		"--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	_ = os.Remove(pwFile)

	// The port is free a moment before postgres binds it; another process
	// may take it in between, so try a few.
	var port int
	var opts string
	for attempt := 1; ; attempt++ {
		port = FreePort(t)
		opts = strings.Join([]string{
			"-p", strconv.Itoa(port), "-k", sockDir, "-c", "listen_addresses=127.0.0.1",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=200", "-c", "log_min_messages=warning",
		}, " ")
		out, err := run("pg_ctl", "start", "-D", dataDir, "-l", logFile, "-w", "-t", "60", "-o", opts)
		if err == nil {
			break
		}
		logTail := tail(logFile)
		if attempt < 3 && strings.Contains(logTail, "could not bind") {
			continue
		}
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, logTail)
	}
	t.Cleanup(func() {
		// Immediate shutdown: the data is thrown away, and it removes the
		// shared memory that a SIGKILL would leave behind.
		if out, err := run("pg_ctl", "stop", "-D", dataDir, "-m", "immediate", "-w", "-t", "60"); err != nil {
			t.Logf("pg_ctl stop: %v\n%s", err, out)
		}
	})

	p := Postgres{
		Host: "127.0.0.1", Port: port, User: "sluice", Password: password, Database: "postgres",
		SocketDir: sockDir,
		ctl:       &pgControl{run: run, dataDir: dataDir, logFile: logFile, opts: opts},
	}
	p.URL = p.URLFor(p.User, p.Password, p.Database)
	return p
}

// pgCredential returns nil when the test may run PostgreSQL itself, and
// otherwise (running as root) the unprivileged user to run it as, after
// making base's ancestors in the temporary directory traversable for it.
func pgCredential(base string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	var u *user.User
	var err error
	for _, name := range []string{"postgres", "nobody"} {
		if u, err = user.Lookup(name); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %s has a non-numeric uid or gid", u.Username)
	}
	// t.TempDir() makes private (0700) directories; the cluster's user
	// must be able to pass through them to reach its own.
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Clean(base); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, err
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
			return nil, err
		}
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// pgEnv is the environment without the libpq variables a developer may
// have set, which would otherwise steer initdb and pg_ctl elsewhere.
func pgEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LANG=C", "LC_ALL=C", "TZ=UTC")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand never fails on Linux
	return hex.EncodeToString(b)
}
