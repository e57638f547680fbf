// Command sluicebench is `make bench`: it builds the Sluice binaries, runs
// the benchmark scenarios (docs/performance.md) against baselines measured in the same
// run, prints one Markdown table row per measurement, appends each row as a
// JSON line to bench/results/runs.jsonl and writes bench/results/latest.md.
//
// Sizes and settings come from BENCH_* environment variables (run with -h
// for the list). Targets are printed beside the figures, never asserted:
// the exit status is non-zero only when a scenario could not measure.
//
// `sluicebench baseline aggregate|copy|count|running|kinesis ...` is the hand-written
// franz-go (or aws-sdk-go-v2) program a scenario compares Sluice with; the
// harness runs it as a child process.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sluicehq/sluice/bench/internal/baseline"
	"github.com/sluicehq/sluice/bench/internal/harness"
	"github.com/sluicehq/sluice/bench/internal/scenario"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		err = runBaseline(os.Args[2:])
	} else {
		err = run(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sluicebench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: sluicebench (settings come from the environment)\n\n")
	for _, k := range harness.Knobs {
		def := k.Default
		if def == "" {
			def = "unset"
		}
		fmt.Fprintf(os.Stderr, "  %-26s %s (default %s)\n", k.Name, k.Doc, def)
	}
	fmt.Fprintf(os.Stderr, "\nscenarios:")
	for _, s := range scenario.All() {
		fmt.Fprintf(os.Stderr, " %s=%s;", s.ID, s.Name)
	}
	fmt.Fprintln(os.Stderr)
}

func run(args []string) error {
	fs := flag.NewFlagSet("sluicebench", flag.ContinueOnError)
	fs.Usage = usage
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg, err := harness.Load()
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, s := range scenario.All() {
		known[s.ID] = true
	}
	for _, id := range cfg.Scenarios {
		if !known[id] {
			return fmt.Errorf("BENCH_SCENARIOS: no scenario %q (run with -h for the list)", id)
		}
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	env, err := harness.NewEnv(ctx, cfg, root)
	if err != nil {
		return err
	}
	defer env.Close()
	results := cfg.Results
	if !filepath.IsAbs(results) {
		results = filepath.Join(root, results)
	}
	rep, err := harness.NewReport(os.Stdout, results, harness.DescribeMachine(root, env.KafkaKind()), cfg.Values(), command())
	if err != nil {
		return err
	}
	failed := 0
	for _, s := range scenario.All() {
		if !cfg.Wants(s.ID) {
			continue
		}
		fmt.Fprintf(os.Stderr, "sluicebench: scenario %s (%s)...\n", s.ID, s.Name)
		sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		t0 := time.Now()
		err := s.Run(sctx, env, rep)
		cancel()
		fmt.Fprintf(os.Stderr, "sluicebench: scenario %s took %s\n", s.ID, time.Since(t0).Round(100*time.Millisecond))
		if err != nil {
			failed++
			if aerr := rep.Add(harness.Row{ID: s.ID, Name: s.Name, Ratio: math.NaN(), Err: err.Error()}); aerr != nil {
				return errors.Join(err, aerr)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	path, err := rep.WriteSummary()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\nsluicebench: done in %s; table in %s, every row appended to %s/runs.jsonl\n",
		time.Since(start).Round(time.Second), path, results)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if failed > 0 {
		return fmt.Errorf("%d scenario(s) could not measure (see the table)", failed)
	}
	return nil
}

// command is how to reproduce this run: the knobs that were set, then the
// make target.
func command() string {
	var set []string
	for _, k := range harness.Knobs {
		if v, ok := os.LookupEnv(k.Name); ok && v != "" {
			set = append(set, k.Name+"="+v)
		}
	}
	return strings.TrimSpace(strings.Join(set, " ") + " make bench")
}

func repoRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("find the repository root (go list -m): %w; run from the repository", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// runBaseline is the `baseline` subcommand.
func runBaseline(args []string) error {
	if len(args) == 0 {
		return errors.New("baseline: want aggregate, copy, count, running or kinesis")
	}
	fs := flag.NewFlagSet("baseline "+args[0], flag.ContinueOnError)
	brokers := fs.String("brokers", "", "comma-separated bootstrap servers")
	topic := fs.String("topic", "", "topic to read from its start to its current end")
	out := fs.String("out", "", "copy: topic to write to")
	endpoint := fs.String("endpoint", "", "kinesis: endpoint URL")
	region := fs.String("region", "us-east-1", "kinesis: region")
	stream := fs.String("stream", "", "kinesis: stream to read from TRIM_HORIZON until caught up")
	maxRate := fs.Float64("max-rate", 0, "kinesis: MB/s per shard, 0 for none (Sluice's maxFetchRate)")
	minPeriod := fs.Duration("min-period", 0, "kinesis: least time between calls on a shard (Sluice's minFetchPeriod)")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	mark := fs.Int64("mark", 0, "kafka: note the time at which this many records were handed on (markElapsedNs)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var res baseline.Result
	var err error
	if args[0] != "kinesis" && (*brokers == "" || *topic == "") {
		return errors.New("baseline: --brokers and --topic are required")
	}
	switch args[0] {
	case "kinesis":
		if *endpoint == "" || *stream == "" {
			return errors.New("baseline kinesis: --endpoint and --stream are required")
		}
		// Credentials come from the environment, never from arguments
		// (which any user of the machine can list).
		res, err = baseline.Kinesis(ctx, baseline.KinesisOptions{
			Endpoint: *endpoint, Region: *region, Stream: *stream,
			AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
			MaxRate: *maxRate * (1 << 20), MinPeriod: *minPeriod,
		})
	case "aggregate":
		res, err = baseline.Aggregate(ctx, strings.Split(*brokers, ","), *topic, baseline.WithMark(*mark))
	case "count":
		res, err = baseline.Count(ctx, strings.Split(*brokers, ","), *topic, baseline.WithMark(*mark))
	case "running":
		res, err = baseline.RunningAggregate(ctx, strings.Split(*brokers, ","), *topic, baseline.WithMark(*mark))
	case "copy":
		if *out == "" {
			return errors.New("baseline copy: --out is required")
		}
		res, err = baseline.Copy(ctx, strings.Split(*brokers, ","), *topic, *out, baseline.WithMark(*mark))
	default:
		return fmt.Errorf("baseline: unknown kind %q (want aggregate, copy, count, running or kinesis)", args[0])
	}
	if err != nil {
		return fmt.Errorf("baseline %s: %w", args[0], err)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}
