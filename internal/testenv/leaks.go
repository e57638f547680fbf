package testenv

// SharedEngineGoroutine is the top function of the one goroutine a test
// may leave behind on purpose, for goleak.IgnoreTopFunction: the process's
// SQL engine (sqltransform.SharedEngine, a database/sql pool over DuckDB),
// which the first SQL job, query or sink expression opens and the process
// keeps, keeps its pool's connection opener running.
const SharedEngineGoroutine = "database/sql.(*DB).connectionOpener"
