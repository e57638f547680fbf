package executor

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/internal/rpc"
	clusterv1 "github.com/sluicehq/sluice/proto/sluice/cluster/v1"
)

// Outcomes of a task attempt in sluice_executor_task_attempts_total: ok, or
// the kind of its error (rpc.FailureKind: retryable, fatal, data_loss), or
// cancelled when the attempt was cut short by the driver, a broken stream,
// a fence or shutdown.
const outcomeOK, outcomeCancelled = "ok", "cancelled"

// metrics are the executor's Prometheus series, the connection state
// behind /readyz and the HTTP server's address. Each executor has its own registry, so that several can
// live in one process (sluice local, tests). Labels are bounded: the job
// name and the outcome, never attempt ids or partitions.
type metrics struct {
	reg        *prometheus.Registry
	running    prometheus.Gauge
	attempts   *prometheus.CounterVec
	recordsIn  *prometheus.CounterVec
	recordsOut *prometheus.CounterVec
	bytesIn    *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	connected  prometheus.Gauge
	reconnects prometheus.Counter
	// series are each job's series of the vectors above, looked up once:
	// a lookup hashes the labels under the vector's lock, and a batch of a
	// thousand short tasks made five of them per task. Series are never
	// deleted, so the cache never goes stale.
	series sync.Map // job → *jobSeries

	mu       sync.Mutex
	driver   string // address of the driver that welcomed the current stream; "" while not connected
	welcomes int
	httpAddr net.Addr // where --http listens, once Run started it
}

func newMetrics() *metrics {
	m := &metrics{
		reg:     prometheus.NewRegistry(),
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_executor_tasks_running", Help: "Task attempts in progress on this executor."}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_executor_task_attempts_total",
			Help: "Finished task attempts by outcome: ok, retryable, fatal, data_loss, cancelled."}, []string{"job", "outcome"}),
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_executor_records_read_total",
			Help: "Records read by task attempts, failed ones included."}, []string{"job"}),
		recordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_executor_records_written_total",
			Help: "Rows written (or returned to the driver) by task attempts, failed ones included."}, []string{"job"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_executor_bytes_read_total",
			Help: "Bytes read from the source by task attempts, failed ones included."}, []string{"job"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_executor_task_duration_seconds",
			Help:    "Duration of task attempts, from arrival at the executor to the result.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}, []string{"job"}),
		connected:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_executor_connected", Help: "1 while a leading driver has welcomed this executor's stream."}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_executor_reconnects_total", Help: "Streams welcomed by a driver after the first."}),
	}
	m.reg.MustRegister(m.running, m.attempts, m.recordsIn, m.recordsOut, m.bytesIn, m.duration, m.connected, m.reconnects,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// attempt counts a task attempt as running and returns what records its
// end; runTask defers the returned function, so res holds the final result:
//
//	done := e.metrics.attempt(t.GetJob(), res)
//	defer func() { done(failure, cancelled) }()
//
// The returned func takes the attempt's error (nil when it succeeded) and
// whether the attempt was cancelled (the session ended — stream broken,
// shutdown, fence — or the driver's CancelTasks); a cancelled failure counts
// as cancelled, not as a failure kind.
func (m *metrics) attempt(job string, res *clusterv1.TaskResult) func(err error, cancelled bool) {
	start := time.Now()
	m.running.Inc()
	return func(err error, cancelled bool) {
		m.running.Dec()
		js := m.jobSeries(job)
		js.duration.Observe(time.Since(start).Seconds())
		js.recordsIn.Add(float64(max(res.GetRecordsIn(), 0)))
		js.recordsOut.Add(float64(max(res.GetRecordsOut(), 0)))
		js.bytesIn.Add(float64(max(res.GetBytesIn(), 0)))
		if o := outcome(err, cancelled); o == outcomeOK {
			js.ok.Inc()
		} else {
			m.attempts.WithLabelValues(job, o).Inc()
		}
	}
}

// jobSeries are one job's series of the executor's vectors.
type jobSeries struct {
	duration                       prometheus.Observer
	recordsIn, recordsOut, bytesIn prometheus.Counter
	ok                             prometheus.Counter // attempts with outcome ok
}

func (m *metrics) jobSeries(job string) *jobSeries {
	if js, ok := m.series.Load(job); ok {
		return js.(*jobSeries)
	}
	js, _ := m.series.LoadOrStore(job, &jobSeries{
		duration: m.duration.WithLabelValues(job), recordsIn: m.recordsIn.WithLabelValues(job),
		recordsOut: m.recordsOut.WithLabelValues(job), bytesIn: m.bytesIn.WithLabelValues(job),
		ok: m.attempts.WithLabelValues(job, outcomeOK),
	})
	return js.(*jobSeries)
}

// outcome labels an attempt by its error's type, the same classification
// the driver applies to the error it decodes from the result.
func outcome(err error, cancelled bool) string {
	switch {
	case err == nil:
		return outcomeOK
	case cancelled:
		return outcomeCancelled
	}
	return rpc.FailureKind(err)
}

// welcomed records that the driver at addr accepted the stream.
func (m *metrics) welcomed(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.driver = addr
	m.welcomes++
	if m.welcomes > 1 {
		m.reconnects.Inc()
	}
	m.connected.Set(1)
}

// disconnected records that the stream ended.
func (m *metrics) disconnected() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.driver = ""
	m.connected.Set(0)
}

// connectedTo returns the address of the driver that welcomed the current
// stream, "" when there is none.
func (m *metrics) connectedTo() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.driver
}
