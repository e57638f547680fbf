// Package webui serves Sluice's web UI: a single page of hand-written HTML,
// CSS and JavaScript, embedded in the binary so that it works without
// internet access, that reads the driver's JSON API (/api/v1/...) and shows
// the jobs, one job's batches (Spark's Structured Streaming charts, the batch
// in flight, lag per partition, tasks, errors and spec) and the executors.
//
// Handler is the only export. The driver mounts it on its HTTP port under
// /ui/ next to /api/v1/; the page reaches the API by a relative URL
// (../api/v1/), so a reverse proxy may put both under a common prefix.
//
// Invariants:
//   - every response carries a Content-Security-Policy that allows only the
//     page's own files (no inline script or style, no other origin), so a job
//     name or an error message can never run as code; the JavaScript builds
//     the DOM with textContent and never with innerHTML;
//   - index.html names each asset with its content hash (app.js?v=...), so an
//     asset asked for by its current hash may be cached for a year while
//     index.html itself is revalidated on every load: a new driver version is
//     seen at the next reload, never mixed with an old script.
package webui
