package k8s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// kubeVersion is the kube-apiserver the tests run; ./tools/go.mod must
// require the same k8s.io/kubernetes version.
const kubeVersion = "v1.35.4"

// toolsDir is where binaries built for tests are cached between runs, the
// same place as internal/testenv.ToolsDir of the main module:
// $SLUICE_TOOLS_DIR, or sluice/tools under the user's cache directory
// (~/.cache/sluice/tools on Linux).
func toolsDir(t testing.TB) string {
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

// kubeAPIServerBinary returns the kube-apiserver binary, building it from
// ./tools into toolsDir/kube-apiserver-<version>/ on first use (about 7
// minutes on 2 cores; a file lock makes concurrent test processes build it
// once). The version is stamped in with -ldflags so that discovery reports
// it (Helm checks the chart's kubeVersion against it).
func kubeAPIServerBinary(t testing.TB) string {
	t.Helper()
	mod, err := os.ReadFile(filepath.Join("tools", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), "k8s.io/kubernetes "+kubeVersion) {
		t.Fatalf("tools/go.mod does not require k8s.io/kubernetes %s: keep it and kubeVersion in step", kubeVersion)
	}
	dir := filepath.Join(toolsDir(t), "kube-apiserver-"+kubeVersion)
	bin := filepath.Join(dir, "kube-apiserver")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock := lockFile(t, bin+".lock")
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin // another process built it while we waited
	}
	t.Logf("building kube-apiserver %s into %s (once; about 7 minutes on 2 cores)", kubeVersion, dir)
	start := time.Now()
	major, minor, _ := strings.Cut(strings.TrimPrefix(kubeVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	ldflags := strings.Join([]string{"-s", "-w",
		"-X k8s.io/component-base/version.gitVersion=" + kubeVersion,
		"-X k8s.io/component-base/version.gitMajor=" + major,
		"-X k8s.io/component-base/version.gitMinor=" + minor,
	}, " ")
	build := exec.Command("go", "build", "-o", bin+".tmp", "-ldflags", ldflags, "k8s.io/kubernetes/cmd/kube-apiserver")
	build.Dir = "tools"
	build.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build kube-apiserver: %v\n%s", err, out)
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		t.Fatal(err)
	}
	t.Logf("built kube-apiserver in %s", time.Since(start).Round(time.Second))
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

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs an embedded single-member etcd for the apiserver, on free
// loopback ports with its data in dir, stopped when the test ends.
func startEtcd(t testing.TB, dir string) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "kube"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(freePort(t))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("etcd not ready after a minute")
	}
	return client.String()
}

// apiServer is a kube-apiserver process with its own etcd. The test process
// authenticates with a static token of a system:masters user.
type apiServer struct {
	config     *rest.Config
	kubeconfig string // a kubeconfig file for Helm
	log        string
}

// startAPIServer starts a kube-apiserver on a free loopback port and waits
// until /readyz answers. Without a controller-manager nothing reconciles:
// Deployments are stored and validated but get no pods, which is all these
// tests need. The process is stopped when the test ends, and killed with the
// test process should that die first.
func startAPIServer(t testing.TB) *apiServer {
	t.Helper()
	bin := kubeAPIServerBinary(t)
	dir := t.TempDir()
	etcd := startEtcd(t, dir)

	// Service-account tokens need a signing key even though nothing here
	// uses one.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "sa.key")
	writeFile(t, saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString(secret)
	tokens := filepath.Join(dir, "tokens.csv")
	writeFile(t, tokens, []byte(token+`,admin,admin,"system:masters"`+"\n"))

	port := freePort(t)
	args := []string{
		"--etcd-servers=" + etcd,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--token-auth-file=" + tokens,
		"--authorization-mode=RBAC",
		// No controller-manager creates the default ServiceAccount that this
		// admission plugin waits for.
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
	logPath := filepath.Join(dir, "kube-apiserver.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	host := "https://127.0.0.1:" + strconv.Itoa(port)
	// The serving certificate is self-signed by the apiserver at start; a
	// loopback server of our own needs no verification.
	cfg := &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: 100, Burst: 200}
	s := &apiServer{config: cfg, log: logPath}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		select {
		case err := <-exited:
			t.Fatalf("kube-apiserver exited: %v\n%s", err, tail(logPath))
		default:
		}
		resp, err := hc.Get(host + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 3 minutes (last: %v)\n%s", err, tail(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("kube-apiserver %s ready on %s in %s", kubeVersion, host, time.Since(start).Round(100*time.Millisecond))

	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "admin"}
	kc.CurrentContext = "test"
	s.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, s.kubeconfig); err != nil {
		t.Fatal(err)
	}
	return s
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// tail returns the end of a log file for a failure message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitFor polls cond until it holds or a minute passes.
func waitFor(ctx context.Context, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
