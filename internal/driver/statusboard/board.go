// Package statusboard keeps what the API shows about each job (state,
// current batch, recent progress and errors) and fans out its changes to
// watchers. It is always on, on every driver, leader or not.
package statusboard

import (
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// Board keeps what the API shows about each job and fans out events
// to watchers. It is always on, leader or not.
type Board struct {
	mu       sync.Mutex
	jobs     map[string]*jobStatus
	watchers map[string]map[chan *sluicev1.JobEvent]struct{}
}

type jobStatus struct {
	rec checkpoint.JobRecord
	// spec is rec's spec, decoded and redacted once per catalog update
	// rather than on every view and watch event.
	spec     *sluicev1.JobSpec
	transErr string
	// restart is set from a restart until the next committed batch.
	restart *sluicev1.RestartInfo
	last    *sluicev1.BatchProgress
	lastID  int64
	// recent are the last batches' progress, oldest first, at most
	// numRecentProgress (GetRecentProgress).
	recent []*sluicev1.BatchProgress
	// current is the batch in flight, nil between batches; published is
	// when a change of it was last sent to watchers.
	current   *sluicev1.BatchRun
	published time.Time
	// errors are the last distinct errors, oldest first.
	errors []*sluicev1.JobError
}

// numRecentErrors is how many distinct errors a job's status keeps.
const numRecentErrors = 10

// noteError adds msg to the job's recent errors; the same message again
// counts up instead of pushing older ones out.
func (js *jobStatus) noteError(msg string, at time.Time) {
	if msg == "" {
		return
	}
	if n := len(js.errors); n > 0 && js.errors[n-1].GetMessage() == msg {
		e := proto.Clone(js.errors[n-1]).(*sluicev1.JobError) // views handed out keep the old one
		e.Count++
		e.Time = timestamppb.New(at)
		js.errors[n-1] = e
		return
	}
	if len(js.errors) >= numRecentErrors {
		js.errors = append(js.errors[:0:0], js.errors[1:]...)
	}
	js.errors = append(js.errors, &sluicev1.JobError{Time: timestamppb.New(at), Message: msg, Count: 1})
}

// numRecentProgress is how many batches' progress a job keeps in memory for
// GetRecentProgress and the UI's charts: Spark's default for
// spark.sql.streaming.numRecentProgressUpdates.
const numRecentProgress = 100

// numRecentTasks is how many of the recent batches' progress keep their
// per-task entries (BatchProgress.partitions); older ones keep only the
// Batch's figures. A batch of a thousand tasks has a thousand entries,
// about 400 KB: held for all numRecentProgress batches they made up most
// of a driver's heap. The UI lists the tasks of the last five batches
// (TASK_BATCHES in its app.js) and charts the figures of all of them.
const numRecentTasks = 5

// addRecent appends p to the recent batches' progress, drops the oldest
// beyond numRecentProgress, and strips the per-task entries of the one that
// leaves the newest numRecentTasks.
func (js *jobStatus) addRecent(p *sluicev1.BatchProgress) {
	if n := len(js.recent); n >= numRecentProgress {
		js.recent = append(js.recent[:0], js.recent[n-numRecentProgress+1:]...)
	}
	js.recent = append(js.recent, p)
	if i := len(js.recent) - 1 - numRecentTasks; i >= 0 && len(js.recent[i].GetPartitions()) > 0 {
		js.recent[i] = withoutTasks(js.recent[i])
	}
}

// withoutTasks is a shallow copy of p without its per-task entries. p
// itself is not changed: views handed out may still be reading it.
func withoutTasks(p *sluicev1.BatchProgress) *sluicev1.BatchProgress {
	out := &sluicev1.BatchProgress{}
	dst := out.ProtoReflect()
	p.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Number() != partitionsField {
			dst.Set(fd, v)
		}
		return true
	})
	return out
}

// partitionsField is BatchProgress.partitions' field number.
var partitionsField = (&sluicev1.BatchProgress{}).ProtoReflect().Descriptor().Fields().ByName("partitions").Number()

// currentEvery bounds how often progress within a batch is sent to
// watchers: often enough for a live view, rarely enough that a batch of
// thousands of tasks does not send thousands of events.
const currentEvery = 250 * time.Millisecond

// New returns an empty board.
func New() *Board {
	return &Board{jobs: map[string]*jobStatus{}, watchers: map[string]map[chan *sluicev1.JobEvent]struct{}{}}
}

func (s *Board) Update(rec checkpoint.JobRecord, last *sluicev1.BatchProgress) {
	s.mu.Lock()
	js := s.jobs[rec.Name]
	if js == nil {
		js = &jobStatus{lastID: -1}
		s.jobs[rec.Name] = js
	}
	if rec.LastError != "" && rec.LastError != js.rec.LastError {
		js.noteError(rec.LastError, rec.Updated)
	}
	js.rec = rec
	js.spec = &sluicev1.JobSpec{}
	_ = proto.Unmarshal(rec.Spec, js.spec) // written by this driver from a valid spec
	js.spec = jobspec.Redact(js.spec)
	if last != nil && last.GetBatchId() != js.lastID {
		js.last, js.lastID = last, last.GetBatchId()
		js.addRecent(last)
	}
	ev := &sluicev1.JobEvent{Job: s.viewLocked(js)}
	s.publishLocked(rec.Name, ev)
	s.mu.Unlock()
}

func (s *Board) SetError(job, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if js := s.jobs[job]; js != nil && js.transErr != msg {
		js.transErr = msg
		js.noteError(msg, time.Now())
		s.publishLocked(job, &sluicev1.JobEvent{Job: s.viewLocked(js)})
	}
}

// SetRestart shows why and when the job restarts.
func (s *Board) SetRestart(job string, r *sluicev1.RestartInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if js := s.jobs[job]; js != nil {
		js.restart = r
		s.publishLocked(job, &sluicev1.JobEvent{Job: s.viewLocked(js)})
	}
}

func (s *Board) Batch(job string, p *sluicev1.BatchProgress) {
	s.mu.Lock()
	defer s.mu.Unlock()
	js := s.jobs[job]
	if js == nil {
		return
	}
	js.last, js.lastID, js.transErr, js.restart, js.current = p, p.GetBatchId(), "", nil, nil
	js.addRecent(p)
	s.publishLocked(job, &sluicev1.JobEvent{Job: s.viewLocked(js), Batch: p})
}

// SetCurrent shows the batch in flight (nil: none). run is copied, so the
// caller may go on changing it. Watchers hear of a change at most every
// currentEvery, or at once when force is set (planning fails, or the batch
// is no longer in flight).
func (s *Board) SetCurrent(job string, run *sluicev1.BatchRun, force bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	js := s.jobs[job]
	if js == nil {
		return
	}
	if run == nil {
		js.current = nil
	} else {
		js.current = proto.Clone(run).(*sluicev1.BatchRun)
	}
	if now := time.Now(); force || now.Sub(js.published) >= currentEvery {
		js.published = now
		s.publishLocked(job, &sluicev1.JobEvent{Job: s.viewLocked(js)})
	}
}

// RecentProgress returns up to limit (0: all) of the job's last batches'
// progress, oldest first; ok is false when the board does not know the job.
func (s *Board) RecentProgress(job string, limit int) ([]*sluicev1.BatchProgress, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	js := s.jobs[job]
	if js == nil {
		return nil, false
	}
	out := js.recent
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return append([]*sluicev1.BatchProgress(nil), out...), true
}

func (s *Board) Forget(job string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.jobs, job)
}

// Unreadable reports whether the job's catalog entry could not be decoded.
func (s *Board) Unreadable(job string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	js := s.jobs[job]
	return js != nil && js.rec.Unreadable != nil
}

// Get returns the job's view, or nil when the board does not know it.
func (s *Board) Get(job string) *sluicev1.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if js := s.jobs[job]; js != nil {
		return s.viewLocked(js)
	}
	return nil
}

func (s *Board) List() []*sluicev1.Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*sluicev1.Job, 0, len(s.jobs))
	for _, js := range s.jobs {
		out = append(out, s.viewLocked(js))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

func (s *Board) Watch(job string) (chan *sluicev1.JobEvent, func()) {
	ch := make(chan *sluicev1.JobEvent, 256)
	s.mu.Lock()
	if s.watchers[job] == nil {
		s.watchers[job] = map[chan *sluicev1.JobEvent]struct{}{}
	}
	s.watchers[job][ch] = struct{}{}
	s.mu.Unlock()
	return ch, func() {
		s.mu.Lock()
		delete(s.watchers[job], ch)
		s.mu.Unlock()
	}
}

func (s *Board) publishLocked(job string, ev *sluicev1.JobEvent) {
	for ch := range s.watchers[job] {
		select {
		case ch <- ev:
		default: // a watcher that cannot keep up misses events, never blocks a job
		}
	}
}

func (s *Board) viewLocked(js *jobStatus) *sluicev1.Job {
	rec := js.rec
	j := &sluicev1.Job{
		Name: rec.Name, Spec: js.spec, State: ParseState(rec.State), LastError: rec.LastError,
		LastCommittedBatch: js.lastID, LastProgress: js.last,
		CreateTime: timestamppb.New(rec.Created), UpdateTime: timestamppb.New(rec.Updated),
		RecentErrors: append([]*sluicev1.JobError(nil), js.errors...),
	}
	// A transient problem (retrying) describes a live job; once the job has
	// ended, the recorded reason is the one that counts.
	if js.transErr != "" && !Terminal(j.State) {
		j.LastError = js.transErr
	}
	if !Terminal(j.State) {
		j.Restart = js.restart
		j.Current = js.current
	}
	return j
}

// StateName is a state as the catalog stores it (RUNNING).
func StateName(s sluicev1.JobState) string { return s.String()[len("JOB_STATE_"):] }

func ParseState(s string) sluicev1.JobState {
	if v, ok := sluicev1.JobState_value["JOB_STATE_"+s]; ok {
		return sluicev1.JobState(v)
	}
	return sluicev1.JobState_JOB_STATE_UNSPECIFIED
}

func Terminal(s sluicev1.JobState) bool {
	switch s {
	case sluicev1.JobState_JOB_STATE_STOPPED, sluicev1.JobState_JOB_STATE_FINISHED, sluicev1.JobState_JOB_STATE_FAILED:
		return true
	}
	return false
}
