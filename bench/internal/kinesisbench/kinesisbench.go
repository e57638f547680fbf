// Package kinesisbench is scenario 4 of `make bench`: Kinesis polling on
// kinesis-mock, a raw GetRecords loop against Sluice reading the same data.
//
// The emulator is started by internal/testenv, which only _test.go files may
// import, so the measurement is a Go test (TestKinesisPolling) that the
// harness runs with `go test` and that writes a Result as JSON to the file
// named by SLUICEBENCH_KINESIS_OUT. Without that variable the test skips,
// so `go test ./bench/...` does not start the emulator.
package kinesisbench

import "time"

// Environment variables the harness sets for the test.
const (
	// EnvOut names the file receiving the Result.
	EnvOut = "SLUICEBENCH_KINESIS_OUT"
	// EnvBins is the directory of the built driver and executor.
	EnvBins = "SLUICEBENCH_BINS"
	// EnvSelf is the sluicebench binary, whose `baseline kinesis` runs the
	// raw loop.
	EnvSelf = "SLUICEBENCH_SELF"
)

// Shards of the benchmark stream.
const Shards = 4

// MaxFetchRate is the per-shard rate (MB/s) both sides read at: Sluice's
// ceiling for maxFetchRate, which it does not allow to be switched off.
// Both sides also run without a minimum period between calls
// (minFetchPeriod 0).
const MaxFetchRate = 2.0

// Result is what the test measured.
type Result struct {
	Records int64         `json:"records"`
	Bytes   int64         `json:"bytes"`
	Preload time.Duration `json:"preloadNs"`

	Baseline Side `json:"baseline"`
	Sluice   Side `json:"sluice"`
	Batches  int  `json:"batches"`
}

// Side is one side's figures.
type Side struct {
	Elapsed time.Duration `json:"elapsedNs"`
	// CPU is the process's (Sluice: driver and executors) CPU time.
	CPU time.Duration `json:"cpuNs"`
	// PeakRSS is the peak resident set of the process (Sluice: the largest
	// executor).
	PeakRSS   int64 `json:"peakRSSBytes"`
	DriverRSS int64 `json:"driverPeakRSSBytes,omitempty"`
	Executors int   `json:"executors,omitempty"`
}
