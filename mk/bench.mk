# Benchmarks (never part of `make test`): included by the Makefile, whose
# `bench` target runs bench-all. Settings come from BENCH_* variables; run
# `go run ./bench/cmd/sluicebench -h` for the list. A quick run:
#   BENCH_N=200000 BENCH_OVERHEAD_PARTITIONS=16,256 BENCH_MEMORY_BATCHES=200 make bench
# Only the Kafka throughput rows (1 SQL, 1b shorthand steps, 1c count-only, 2 copy), with
# results kept out of bench/results:
#   BENCH_N=200000 BENCH_SCENARIOS=1,2 BENCH_RESULTS=/tmp/bench make bench-harness

.PHONY: bench-all bench-go bench-harness

bench-all: bench-go bench-harness ## Go micro-benchmarks, then the scenario harness (bench/, docs/performance.md)

bench-go: ## Go benchmarks of pkg/scheduler and pkg/sqltransform
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/scheduler/ ./pkg/sqltransform/

bench-harness: ## scenarios against same-run baselines; table on stdout, rows in bench/results/
	$(GO) run ./bench/cmd/sluicebench
