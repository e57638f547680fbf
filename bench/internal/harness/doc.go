// Package harness is what every benchmark scenario of `make bench` shares:
// the knobs (BENCH_* environment variables), the built Sluice binaries run
// as separate processes on an embedded etcd, an in-process Kafka (kfake)
// with a deterministic transaction workload, per-process CPU and memory
// figures read from /proc, and the report (a Markdown table on stdout plus
// one JSON line per row appended to bench/results/).
//
// Figures are only claimed as ratios against a baseline measured in the same
// run: absolute times on a shared machine are noise. Targets are printed
// beside the figures and never asserted; a missed target is a finding, not
// a failure. The harness fails only when a measurement could not be taken
// (a process died, a job failed, counts do not add up).
package harness
