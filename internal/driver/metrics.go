package driver

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/pkg/scheduler"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// metrics are the driver's Prometheus series; each driver has its own
// registry so that several drivers can live in one test process.
type metrics struct {
	reg         *prometheus.Registry
	leader      prometheus.Gauge
	batches     *prometheus.CounterVec
	inputRows   *prometheus.CounterVec
	outputRows  *prometheus.CounterVec
	badRows     *prometheus.CounterVec
	retries     *prometheus.CounterVec
	phase       *prometheus.HistogramVec
	lastBatch   *prometheus.GaugeVec
	sourceGauge *prometheus.GaugeVec
	restarts    *prometheus.CounterVec
	refused     *prometheus.CounterVec
	// speculative counts speculative copies of straggling tasks started.
	speculative *prometheus.CounterVec
	// groupCommitErrors counts failed commits of batch ends to a source's
	// consumer group (Kafka commitOffsetsToGroup), which never fail a job.
	groupCommitErrors *prometheus.CounterVec
}

func newMetrics(d *Driver) *metrics {
	m := &metrics{
		reg:        prometheus.NewRegistry(),
		leader:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "sluice_driver_is_leader", Help: "1 while this driver leads."}),
		batches:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_batches_total", Help: "Committed micro-batches."}, []string{"job"}),
		inputRows:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_input_rows_total", Help: "Records read in committed batches."}, []string{"job"}),
		outputRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_output_rows_total", Help: "Rows written in committed batches."}, []string{"job"}),
		badRows:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_bad_records_total", Help: "Bad records by policy outcome (skipped, dead_lettered)."}, []string{"job", "outcome"}),
		retries:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_task_retries_total", Help: "Failed task attempts that were retried."}, []string{"job"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "sluice_batch_phase_seconds", Help: "Duration of batch phases (plan, record, dispatch, execute, commit, total).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18)}, []string{"job", "phase"}),
		lastBatch:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_last_committed_batch", Help: "Id of the last committed batch."}, []string{"job"}),
		sourceGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "sluice_source_metric", Help: "Source figures of the last batch, e.g. maxOffsetsBehindLatest, maxMsBehindLatest."}, []string{"job", "name"}),
		restarts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_job_restarts_total", Help: "Restarts of a job after a retryable failure (restartStrategy)."}, []string{"job"}),
		refused:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_task_results_refused_total", Help: "Task results refused: wrong stream or token, or an end the range does not allow."}, []string{"reason"}),
	}
	m.speculative = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_speculative_tasks_total",
		Help: "Speculative copies of straggling tasks started (speculation.enabled); the first attempt to finish wins."}, []string{"job"})
	m.groupCommitErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_group_commit_errors_total",
		Help: "Failed commits of batch end offsets to the source's consumer group (commitOffsetsToGroup); the job goes on."}, []string{"job"})
	executors := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sluice_executors", Help: "Executors connected to this driver."},
		func() float64 { return float64(len(d.reg.snapshot(scheduler.SlotUnits))) })
	m.reg.MustRegister(m.leader, m.batches, m.inputRows, m.outputRows, m.badRows, m.retries, m.phase, m.lastBatch, m.sourceGauge, m.restarts, m.refused, m.speculative, executors, m.groupCommitErrors, jobStates{d},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

func (m *metrics) batch(job string, p *sluicev1.BatchProgress) {
	m.batches.WithLabelValues(job).Inc()
	m.inputRows.WithLabelValues(job).Add(float64(p.GetNumInputRows()))
	m.outputRows.WithLabelValues(job).Add(float64(p.GetNumOutputRows()))
	m.badRows.WithLabelValues(job, "skipped").Add(float64(p.GetSkippedRows()))
	m.badRows.WithLabelValues(job, "dead_lettered").Add(float64(p.GetDeadLetteredRows()))
	m.retries.WithLabelValues(job).Add(float64(p.GetTaskRetries()))
	for phase, ms := range p.GetDurationMs() {
		m.phase.WithLabelValues(job, phase).Observe(float64(ms) / 1000)
	}
	m.lastBatch.WithLabelValues(job).Set(float64(p.GetBatchId()))
}

func (m *metrics) source(job string, figures map[string]float64) {
	for k, v := range figures {
		m.sourceGauge.WithLabelValues(job, k).Set(v)
	}
}

// dropSource removes a source figure the job no longer reports.
func (m *metrics) dropSource(job, name string) { m.sourceGauge.DeleteLabelValues(job, name) }

// jobStateDesc is sluice_job_state: one series per job and state, 1 for the
// state the job is in and 0 for the others, as kube-state-metrics exposes
// pod phases, so an alert can say "RETRYING for 10 minutes" or "FAILED".
var jobStateDesc = prometheus.NewDesc("sluice_job_state",
	"1 for the state each job is in (PENDING, RUNNING, RETRYING, STOPPING, STOPPED, FINISHED, FAILED), 0 for the others; served by the leading driver only.",
	[]string{"job", "state"}, nil)

// jobStates collects sluice_job_state from the status board at scrape time,
// so deleted jobs vanish and nothing has to be kept in step. Only the
// leader's board is current; followers serve no series.
type jobStates struct{ d *Driver }

func (c jobStates) Describe(ch chan<- *prometheus.Desc) { ch <- jobStateDesc }

func (c jobStates) Collect(ch chan<- prometheus.Metric) {
	if c.d.currentManager() == nil {
		return
	}
	for _, j := range c.d.status.list() {
		for v := sluicev1.JobState_JOB_STATE_PENDING; v <= sluicev1.JobState_JOB_STATE_RETRYING; v++ {
			set := 0.0
			if j.GetState() == v {
				set = 1
			}
			ch <- prometheus.MustNewConstMetric(jobStateDesc, prometheus.GaugeValue, set, j.GetName(), stateName(v))
		}
	}
}
