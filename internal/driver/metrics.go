package driver

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicehq/sluice/internal/driver/statusboard"
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
	// state holds the counters of stateful jobs (outputMode).
	state *stateMetrics
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
		func() float64 { return float64(len(d.reg.Snapshot(scheduler.SlotUnits))) })
	m.state = &stateMetrics{d: d, jobs: map[string]*stateCounts{}}
	m.reg.MustRegister(m.leader, m.batches, m.inputRows, m.outputRows, m.badRows, m.retries, m.phase, m.lastBatch, m.sourceGauge, m.restarts, m.refused, m.speculative, executors, m.groupCommitErrors, jobStates{d}, m.state,
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
	m.state.batch(job, p)
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
	for _, j := range c.d.status.List() {
		for v := sluicev1.JobState_JOB_STATE_PENDING; v <= sluicev1.JobState_JOB_STATE_RETRYING; v++ {
			set := 0.0
			if j.GetState() == v {
				set = 1
			}
			ch <- prometheus.MustNewConstMetric(jobStateDesc, prometheus.GaugeValue, set, j.GetName(), statusboard.StateName(v))
		}
	}
}

// The state series of a stateful job (outputMode update or complete), named
// after Spark's StateOperatorProgress. The gauges describe the last batch.
var (
	stateRowsDesc = prometheus.NewDesc("sluice_state_rows",
		"Groups in the job's state after the last batch (Spark's numRowsTotal).", []string{"job"}, nil)
	stateRowsUpdatedDesc = prometheus.NewDesc("sluice_state_rows_updated",
		"Groups the last batch changed (numRowsUpdated).", []string{"job"}, nil)
	stateMemoryDesc = prometheus.NewDesc("sluice_state_memory_used_bytes",
		"Memory the job's state partitions use on their executors after the last batch (memoryUsedBytes).", []string{"job"}, nil)
	stateDiskDesc = prometheus.NewDesc("sluice_state_on_disk_bytes",
		"Size of the job's state stores on the executors' disks after the last batch.", []string{"job"}, nil)
	statePartitionsDesc = prometheus.NewDesc("sluice_state_partitions",
		"State partitions of the job (numShufflePartitions).", []string{"job"}, nil)
	stateCommitDesc = prometheus.NewDesc("sluice_state_commit_seconds",
		"Commit of the slowest state partition in the last batch (commitTimeMs).", []string{"job"}, nil)
	stateRestoreDesc = prometheus.NewDesc("sluice_state_restore_seconds",
		"Slowest restore of a state partition from checkpoint.state in the last batch; 0 when every partition was warm.", []string{"job"}, nil)
	stateRestoredDesc = prometheus.NewDesc("sluice_state_restored_partitions",
		"State partitions the last batch restored from checkpoint.state (moved to another executor, or replayed).", []string{"job"}, nil)
	stateDroppedDesc = prometheus.NewDesc("sluice_state_rows_dropped_by_watermark_total",
		"Records dropped as older than the watermark (numRowsDroppedByWatermark) in committed batches.", []string{"job"}, nil)
	stateWrittenDesc = prometheus.NewDesc("sluice_state_checkpoint_written_bytes_total",
		"Bytes of state changelogs and snapshots committed batches wrote to checkpoint.state.", []string{"job"}, nil)
	watermarkDesc = prometheus.NewDesc("sluice_watermark_seconds",
		"The event-time watermark the job's last batch used, in Unix seconds; only for jobs with a watermark.", []string{"job"}, nil)
)

// stateMetrics collects the state series at scrape time, as jobStates does:
// the gauges from the last progress on the status board, so that a deleted
// job's series vanish with it, and the counters from what batch added up
// for the jobs still on the board. Followers serve no series.
type stateMetrics struct {
	d *Driver
	// mu is held across reading the board in Collect, so that counts added
	// meanwhile are not pruned as those of a deleted job.
	mu   sync.Mutex
	jobs map[string]*stateCounts
}

type stateCounts struct{ dropped, written float64 }

// batch adds a committed batch's state counts; a batch without state adds
// nothing, so stateless jobs get no counter series.
func (s *stateMetrics) batch(job string, p *sluicev1.BatchProgress) {
	if len(p.GetStateOperators()) == 0 {
		return
	}
	op := sumStateOperators(p.GetStateOperators())
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.jobs[job]
	if c == nil {
		c = &stateCounts{}
		s.jobs[job] = c
	}
	c.dropped += float64(op.GetNumRowsDroppedByWatermark())
	c.written += float64(op.GetCheckpointBytesWritten())
}

func (s *stateMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{stateRowsDesc, stateRowsUpdatedDesc, stateMemoryDesc, stateDiskDesc, statePartitionsDesc,
		stateCommitDesc, stateRestoreDesc, stateRestoredDesc, stateDroppedDesc, stateWrittenDesc, watermarkDesc} {
		ch <- d
	}
}

func (s *stateMetrics) Collect(ch chan<- prometheus.Metric) {
	if s.d.currentManager() == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	jobs := s.d.status.List()
	known := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		name := j.GetName()
		known[name] = true
		p := j.GetLastProgress()
		if ops := p.GetStateOperators(); len(ops) > 0 {
			op := sumStateOperators(ops)
			gauge := func(d *prometheus.Desc, v float64) {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
			}
			gauge(stateRowsDesc, float64(op.GetNumRowsTotal()))
			gauge(stateRowsUpdatedDesc, float64(op.GetNumRowsUpdated()))
			gauge(stateMemoryDesc, float64(op.GetMemoryUsedBytes()))
			gauge(stateDiskDesc, float64(op.GetStateOnDiskBytes()))
			gauge(statePartitionsDesc, float64(op.GetNumShufflePartitions()))
			gauge(stateCommitDesc, float64(op.GetCommitTimeMs())/1000)
			gauge(stateRestoreDesc, float64(op.GetRestoreTimeMs())/1000)
			gauge(stateRestoredDesc, float64(op.GetNumRestoredPartitions()))
		}
		if wm, ok := p.GetEventTime()["watermark"]; ok {
			// A value the driver did not write as RFC 3339 is left out
			// rather than shown as 1970.
			if t, err := time.Parse(time.RFC3339Nano, wm); err == nil {
				ch <- prometheus.MustNewConstMetric(watermarkDesc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, name)
			}
		}
		if c := s.jobs[name]; c != nil {
			ch <- prometheus.MustNewConstMetric(stateDroppedDesc, prometheus.CounterValue, c.dropped, name)
			ch <- prometheus.MustNewConstMetric(stateWrittenDesc, prometheus.CounterValue, c.written, name)
		}
	}
	// A job gone from the board was deleted: its counts go too, so that a
	// job created again under its name counts from zero.
	for name := range s.jobs {
		if !known[name] {
			delete(s.jobs, name)
		}
	}
}

// sumStateOperators adds up a batch's state operators; a stateful job has
// one today (stateStoreSave), and a sum keeps the series right if a job
// ever has several.
func sumStateOperators(ops []*sluicev1.StateOperatorProgress) *sluicev1.StateOperatorProgress {
	if len(ops) == 1 {
		return ops[0]
	}
	sum := &sluicev1.StateOperatorProgress{}
	for _, op := range ops {
		sum.NumRowsTotal += op.GetNumRowsTotal()
		sum.NumRowsUpdated += op.GetNumRowsUpdated()
		sum.MemoryUsedBytes += op.GetMemoryUsedBytes()
		sum.NumRowsDroppedByWatermark += op.GetNumRowsDroppedByWatermark()
		sum.CommitTimeMs += op.GetCommitTimeMs()
		sum.RestoreTimeMs += op.GetRestoreTimeMs()
		sum.NumRestoredPartitions += op.GetNumRestoredPartitions()
		sum.NumShufflePartitions += op.GetNumShufflePartitions()
		sum.StateOnDiskBytes += op.GetStateOnDiskBytes()
		sum.CheckpointBytesWritten += op.GetCheckpointBytesWritten()
	}
	return sum
}
