# Fault tests, included by the Makefile. `make chaos` runs the full form;
# `make test` runs only the short form (through `go test ./test/...`).
# The full form kills and pauses executors and the leading driver, stops
# PostgreSQL twice and kills and pauses etcd while a Kafka → PostgreSQL job
# runs, then checks every record is in the table exactly once and the job
# was never FAILED (docs/development.md, "Fault tests (make chaos)").
#   SLUICE_CHAOS_FAULTS=exec-kill,leader-kill make chaos   # only some faults
#   SLUICE_CHAOS_LOGS=/tmp/chaos make chaos                # keep the process logs

chaos: ## fault tests with the built binaries, full form (about 4 minutes; docs/development.md, Fault tests)
	SLUICE_CHAOS=full $(GO) test -count=1 -v -timeout 20m ./test/chaos/
