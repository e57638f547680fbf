// Command sluice is the Sluice CLI: it submits and manages jobs on a driver
// (--driver or SLUICE_DRIVER; a follower's answer redirects to the leader)
// and runs a whole cluster on one machine with `sluice local`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/flagenv"
	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

const usage = `sluice: run and manage Sluice stream-processing jobs

Usage:
  sluice [--driver ADDR] submit FILE.yaml   submit a job (or resume a stopped one of the same name)
  sluice [--driver ADDR] jobs               list jobs
  sluice [--driver ADDR] status JOB         show a job, its last batch and its spec
  sluice [--driver ADDR] stop JOB           stop a job
  sluice [--driver ADDR] resume JOB         run a stopped, finished or failed job again
                                            from its last commit, with its stored spec
  sluice [--driver ADDR] delete JOB         stop a job and delete its checkpoints
  sluice [--driver ADDR] watch JOB          follow a job live until it ends (a line per
                                            batch and state change when piped)
  sluice [--driver ADDR] executors          list connected executors
  sluice local [flags]                      etcd, a driver and executors in one process
  sluice kinesis consumers list|register|deregister --stream S [--region R --endpoint URL ...]
                                            manage enhanced fan-out consumers

--driver defaults to $SLUICE_DRIVER, then localhost:7077.
--token (SLUICE_TOKEN) is sent as a bearer token; --tls-ca (SLUICE_TLS_CA)
verifies a TLS driver; --tls-cert/--tls-key present a client certificate.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "sluice:", describe(err))
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("sluice", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	driverAddr := fs.String("driver", "localhost:7077", "driver address")
	var tc rpc.ClientTLSConfig
	useTLS := fs.Bool("tls", false, "dial the driver with TLS, verified against the system roots unless --tls-ca is given")
	fs.StringVar(&tc.CAFile, "tls-ca", "", "PEM CA that signed the driver's certificate (implies --tls)")
	fs.StringVar(&tc.CertFile, "tls-cert", "", "PEM client certificate whose OU names your role (with --tls-key; implies --tls)")
	fs.StringVar(&tc.KeyFile, "tls-key", "", "PEM key of --tls-cert")
	fs.StringVar(&tc.ServerName, "tls-server-name", "", "name to verify in the driver's certificate (default: the host dialed)")
	token := fs.String("token", "", "bearer token (prefer SLUICE_TOKEN: flags show in the process list)")
	if err := flagenv.Parse(fs, args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return errors.New("missing command")
	}
	cmd, rest := rest[0], rest[1:]
	if cmd == "local" {
		return runLocal(ctx, rest, out)
	}
	if cmd == "kinesis" {
		return runKinesis(ctx, rest, out)
	}
	c := &client{addr: *driverAddr}
	if *useTLS || tc != (rpc.ClientTLSConfig{}) {
		tlsConfig, err := tc.Build()
		if err != nil {
			return fmt.Errorf("TLS (--tls-ca, --tls-cert, --tls-key): %w", err)
		}
		c.opts = append(c.opts, rpc.WithTLS(tlsConfig))
	}
	if *token != "" {
		c.opts = append(c.opts, rpc.WithToken(*token))
	}
	defer c.close()
	needName := func() (string, error) {
		if len(rest) != 1 {
			return "", fmt.Errorf("%s takes one JOB name", cmd)
		}
		return rest[0], nil
	}
	switch cmd {
	case "submit":
		if len(rest) != 1 {
			return errors.New("submit takes one FILE.yaml")
		}
		data, err := os.ReadFile(rest[0])
		if err != nil {
			return err
		}
		spec, err := jobspec.ParseYAML(data)
		if err != nil {
			return fmt.Errorf("%s: %w", rest[0], err)
		}
		var job *sluicev1.Job
		err = c.call(ctx, func(ctx context.Context, d sluicev1.DriverServiceClient) (err error) {
			job, err = d.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec})
			return err
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "job %s submitted (%s); follow it with: sluice watch %s\n", job.GetName(), state(job.GetState()), job.GetName())
		return nil
	case "jobs":
		var jobs []*sluicev1.Job
		for token := ""; ; {
			var resp *sluicev1.ListJobsResponse
			if err := c.call(ctx, func(ctx context.Context, d sluicev1.DriverServiceClient) (err error) {
				resp, err = d.ListJobs(ctx, &sluicev1.ListJobsRequest{PageSize: 1000, PageToken: token})
				return err
			}); err != nil {
				return err
			}
			jobs = append(jobs, resp.GetJobs()...)
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tLAST BATCH\tROWS/S\tLAST ERROR")
		for _, j := range jobs {
			p := j.GetLastProgress()
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\n", j.GetName(), stateWithRestart(j), batchID(j), p.GetProcessedRowsPerSecond(), oneLine(j.GetLastError()))
		}
		return tw.Flush()
	case "status":
		name, err := needName()
		if err != nil {
			return err
		}
		var job *sluicev1.Job
		if err := c.call(ctx, func(ctx context.Context, d sluicev1.DriverServiceClient) (err error) {
			job, err = d.GetJob(ctx, &sluicev1.GetJobRequest{Name: name})
			return err
		}); err != nil {
			return err
		}
		printStatus(out, job)
		return nil
	case "stop":
		name, err := needName()
		if err != nil {
			return err
		}
		var job *sluicev1.Job
		if err := c.call(ctx, func(ctx context.Context, d sluicev1.DriverServiceClient) (err error) {
			job, err = d.StopJob(ctx, &sluicev1.StopJobRequest{Name: name})
			return err
		}); err != nil {
			return err
		}
		fmt.Fprintf(out, "job %s %s at batch %s\n", name, state(job.GetState()), batchID(job))
		return nil
	case "resume":
		name, err := needName()
		if err != nil {
			return err
		}
		var job *sluicev1.Job
		if err := c.call(ctx, func(ctx context.Context, d sluicev1.DriverServiceClient) (err error) {
			job, err = d.ResumeJob(ctx, &sluicev1.ResumeJobRequest{Name: name})
			return err
		}); err != nil {
			return err
		}
		fmt.Fprintf(out, "job %s %s from batch %s\n", name, state(job.GetState()), batchID(job))
		return nil
	case "delete":
		name, err := needName()
		if err != nil {
			return err
		}
		if err := c.call(ctx, func(ctx context.Context, d sluicev1.DriverServiceClient) error {
			_, err := d.DeleteJob(ctx, &sluicev1.DeleteJobRequest{Name: name})
			return err
		}); err != nil {
			return err
		}
		fmt.Fprintf(out, "job %s deleted with its checkpoints\n", name)
		return nil
	case "watch":
		name, err := needName()
		if err != nil {
			return err
		}
		return watch(ctx, c, name, out)
	case "executors":
		var resp *sluicev1.ListExecutorsResponse
		if err := c.call(ctx, func(ctx context.Context, d sluicev1.DriverServiceClient) (err error) {
			resp, err = d.ListExecutors(ctx, &sluicev1.ListExecutorsRequest{})
			return err
		}); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tADDRESS\tSLOTS\tRUNNING\tDONE\tFAILED\tCONNECTED")
		for _, e := range resp.GetExecutors() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", e.GetId(), e.GetAddress(), e.GetSlots(), e.GetRunning(),
				e.GetTasksCompleted(), e.GetTasksFailed(), e.GetConnectTime().AsTime().Local().Format(time.DateTime))
		}
		return tw.Flush()
	}
	fs.Usage()
	return fmt.Errorf("unknown command %q", cmd)
}

// client talks to the leader, following redirects from followers.
type client struct {
	addr string
	// opts (TLS, token) apply to every driver dialed, the leader of a
	// redirect included.
	opts []rpc.DialOption
	conn *grpc.ClientConn
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
	}
}

func (c *client) call(ctx context.Context, f func(context.Context, sluicev1.DriverServiceClient) error) error {
	for hop := 0; ; hop++ {
		if c.conn == nil {
			conn, err := rpc.Dial(c.addr, c.opts...)
			if err != nil {
				return err
			}
			c.conn = conn
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := f(cctx, sluicev1.NewDriverServiceClient(c.conn))
		cancel()
		leader, ok := rpc.LeaderFrom(err)
		if !ok || leader == "" || leader == c.addr || hop >= 3 {
			return err
		}
		fmt.Fprintf(os.Stderr, "sluice: %s is a follower; asking the leader at %s\n", c.addr, leader)
		c.conn.Close()
		c.conn, c.addr = nil, leader
	}
}

func progressLine(b *sluicev1.BatchProgress) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s  batch %d: %d rows in, %d out, %d tasks, %.0f rows/s",
		b.GetTimestamp().AsTime().Local().Format(time.TimeOnly), b.GetBatchId(), b.GetNumInputRows(), b.GetNumOutputRows(),
		b.GetNumTasks(), b.GetProcessedRowsPerSecond())
	for _, phase := range []string{"plan", "record", "dispatch", "execute", "commit", "total"} {
		if ms, ok := b.GetDurationMs()[phase]; ok {
			fmt.Fprintf(&sb, ", %s %dms", phase, ms)
		}
	}
	if b.GetTaskRetries() > 0 {
		fmt.Fprintf(&sb, ", %d retries", b.GetTaskRetries())
	}
	if b.GetSkippedRows() > 0 || b.GetDeadLetteredRows() > 0 {
		fmt.Fprintf(&sb, ", %d skipped, %d dead-lettered", b.GetSkippedRows(), b.GetDeadLetteredRows())
	}
	// The lag the source reports: Kafka in offsets and milliseconds, Kinesis in milliseconds.
	for _, lag := range []string{"maxOffsetsBehindLatest", "maxMsBehindLatest"} {
		if v, ok := b.GetMetrics()[lag]; ok {
			fmt.Fprintf(&sb, ", %s %.0f", lag, v)
		}
	}
	return sb.String()
}

// progressDetails are the lines that follow a batch's progressLine for a
// stateful job: its state, and its event time when it has a watermark.
func progressDetails(b *sluicev1.BatchProgress) []string {
	var lines []string
	if items := stateItems(b); len(items) > 0 {
		lines = append(lines, "state: "+strings.Join(items, ", "))
	}
	if items := eventTimeItems(b, func(v string) string { return v }); len(items) > 0 {
		lines = append(lines, "event time: "+strings.Join(items, ", "))
	}
	return lines
}

// stateItems describe the state of a stateful job after batch b, its
// operators summed ("1,234 groups (56 updated) in 16 partitions", "12.3 MiB
// in memory", ...); none for a stateless job. Figures that are zero in the
// usual case (disk of an in-memory store, restores, late rows) are left out.
func stateItems(b *sluicev1.BatchProgress) []string {
	ops := b.GetStateOperators()
	if len(ops) == 0 {
		return nil
	}
	op := &sluicev1.StateOperatorProgress{}
	for _, o := range ops {
		op.NumRowsTotal += o.GetNumRowsTotal()
		op.NumRowsUpdated += o.GetNumRowsUpdated()
		op.MemoryUsedBytes += o.GetMemoryUsedBytes()
		op.NumRowsDroppedByWatermark += o.GetNumRowsDroppedByWatermark()
		op.CommitTimeMs += o.GetCommitTimeMs()
		op.RestoreTimeMs += o.GetRestoreTimeMs()
		op.NumRestoredPartitions += o.GetNumRestoredPartitions()
		op.NumShufflePartitions += o.GetNumShufflePartitions()
		op.StateOnDiskBytes += o.GetStateOnDiskBytes()
		op.CheckpointBytesWritten += o.GetCheckpointBytesWritten()
	}
	groups := fmt.Sprintf("%s (%s updated)", plural(op.NumRowsTotal, "group", "groups"), count(op.NumRowsUpdated))
	if n := op.NumShufflePartitions; n > 0 {
		groups += " in " + plural(int64(n), "partition", "partitions")
	}
	items := []string{groups, bytesIEC(op.MemoryUsedBytes) + " in memory"}
	if n := op.StateOnDiskBytes; n > 0 {
		items = append(items, bytesIEC(n)+" on disk")
	}
	if n := op.CheckpointBytesWritten; n > 0 {
		items = append(items, bytesIEC(n)+" checkpointed")
	}
	items = append(items, "commit "+millis(op.CommitTimeMs))
	if n := op.NumRestoredPartitions; n > 0 {
		items = append(items, fmt.Sprintf("restored %s in %s", plural(int64(n), "partition", "partitions"), millis(op.RestoreTimeMs)))
	}
	if n := op.NumRowsDroppedByWatermark; n > 0 {
		items = append(items, plural(n, "late row", "late rows")+" dropped")
	}
	return items
}

// eventTimeItems are the batch's event time figures, "max ..." and
// "watermark ...", each time as show writes it; none for a job without a
// watermark.
func eventTimeItems(b *sluicev1.BatchProgress, show func(rfc3339 string) string) []string {
	var items []string
	for _, k := range []string{"max", "watermark"} {
		if v, ok := b.GetEventTime()[k]; ok && v != "" {
			items = append(items, k+" "+show(v))
		}
	}
	return items
}

// bytesIEC is a size in binary units: "512 B", "12.3 MiB".
func bytesIEC(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/1024, 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, units[i])
}

func printStatus(out io.Writer, j *sluicev1.Job) {
	fmt.Fprintf(out, "Job:          %s\nState:        %s\nLast batch:   %s\n", j.GetName(), state(j.GetState()), batchID(j))
	if j.GetLastError() != "" {
		fmt.Fprintf(out, "Last error:   %s\n", j.GetLastError())
	}
	if r := j.GetRestart(); r != nil {
		fmt.Fprintf(out, "Restart:      attempt %d, next try %s (in %s)\n", r.GetAttempt(),
			r.GetNextAttemptTime().AsTime().Local().Format(time.DateTime), untilText(r.GetNextAttemptTime().AsTime()))
		fmt.Fprintf(out, "  cause:      %s\n", oneLine(r.GetCause()))
	}
	fmt.Fprintf(out, "Created:      %s\nUpdated:      %s\n", j.GetCreateTime().AsTime().Local().Format(time.DateTime),
		j.GetUpdateTime().AsTime().Local().Format(time.DateTime))
	if p := j.GetLastProgress(); p != nil && p.GetTimestamp() != nil {
		fmt.Fprintln(out, "Last progress:")
		fmt.Fprintf(out, "  %s\n", progressLine(p))
		for _, l := range progressDetails(p) {
			fmt.Fprintf(out, "  %s\n", l)
		}
		keys := make([]string, 0, len(p.GetMetrics()))
		for k := range p.GetMetrics() {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(out, "  %s: %g\n", k, p.GetMetrics()[k])
		}
	}
	if js, err := protojson.Marshal(j.GetSpec()); err == nil {
		if y, err := yaml.JSONToYAML(js); err == nil {
			fmt.Fprintf(out, "Spec:\n%s", indent(string(y), "  "))
		}
	}
}

func indent(s, pre string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = pre + l
		}
	}
	return strings.Join(lines, "")
}

func state(s sluicev1.JobState) string { return strings.TrimPrefix(s.String(), "JOB_STATE_") }

// stateWithRestart is the state, plus the restart attempt and the time to
// the next try while the job is RETRYING ("RETRYING (3, next in 4s)").
func stateWithRestart(j *sluicev1.Job) string { return stateAt(j, time.Now()) }

// untilText is the time left until t, rounded for people; "now" once passed.
func untilText(t time.Time) string { return untilAt(t, time.Now()) }

func batchID(j *sluicev1.Job) string {
	if j.GetLastProgress() == nil {
		return "-"
	}
	return fmt.Sprint(j.GetLastProgress().GetBatchId())
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 160 {
		s = s[:157] + "..."
	}
	return s
}

// describe turns a gRPC error into what a user should read, including every
// field a spec was refused for.
func describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		return fmt.Sprintf("cannot reach the driver: %s (is it running, is --driver or SLUICE_DRIVER right, and does it serve TLS, needing --tls-ca?)", msg)
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.FailedPrecondition:
		return msg
	case codes.Unauthenticated:
		return fmt.Sprintf("not authenticated: %s (set SLUICE_TOKEN or --token, or --tls-cert and --tls-key)", msg)
	case codes.PermissionDenied:
		return fmt.Sprintf("permission denied: %s", msg)
	}
	return fmt.Sprintf("%s: %s", st.Code(), msg)
}
