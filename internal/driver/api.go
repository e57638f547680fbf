package driver

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/sluicehq/sluice/internal/driver/statusboard"
	"github.com/sluicehq/sluice/internal/jobspec"
	"github.com/sluicehq/sluice/internal/rpc"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// api implements DriverService. Every call needs leadership; a follower
// answers with the leader's address (rpc.NotLeaderError).
type api struct {
	sluicev1.UnimplementedDriverServiceServer
	d *Driver
}

// lockJob is the start of every call that changes a job: this driver must
// lead, and the job's name is locked (namelock.go) until unlock, so two
// calls on one job never interleave.
func (a *api) lockJob(ctx context.Context, verb, name string) (m *manager, unlock func(), err error) {
	if m, err = a.leader(); err != nil {
		return nil, nil, err
	}
	if unlock, err = a.d.jobLocks.lock(ctx, name); err != nil {
		return nil, nil, fmt.Errorf("%s job %q: %w", verb, name, err)
	}
	return m, unlock, nil
}

func (a *api) leader() (*manager, error) {
	m := a.d.currentManager()
	if m == nil {
		addr, httpURL := a.d.leaderAddrs()
		if addr == a.d.cfg.Advertise {
			// Elected but still loading the catalog.
			return nil, fmt.Errorf("this driver is taking over leadership: %w", rpc.ErrUnavailable)
		}
		return nil, &rpc.NotLeaderError{Leader: addr, HTTP: httpURL}
	}
	return m, nil
}

func (a *api) SubmitJob(ctx context.Context, req *sluicev1.SubmitJobRequest) (*sluicev1.Job, error) {
	spec, err := a.inferSchema(ctx, req.GetSpec())
	if err != nil {
		return nil, err
	}
	job, err := jobspec.Compile(spec)
	if err != nil {
		return nil, err
	}
	name := job.Spec.GetName()
	m, unlock, err := a.lockJob(ctx, "submit", name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	identity := job.SourceIdentity()
	now := time.Now().UTC()
	rec := checkpoint.JobRecord{Name: name, SourceIdentity: identity, Created: now}
	old, err := a.d.store.GetJob(ctx, name)
	switch {
	case err == nil:
		if m.running(name) || !statusboard.Terminal(statusboard.ParseState(old.State)) {
			return nil, fmt.Errorf("job %q is %s; stop it before submitting it again: %w", name, old.State, rpc.ErrAlreadyExists)
		}
		if old.SourceIdentity != identity {
			return nil, fmt.Errorf("job %q has checkpoints of another source (%s, now %s); "+
				"delete the job (sluice delete %s) or choose another name: %w", name, old.SourceIdentity, identity, name, rpc.ErrConflict)
		}
		rec.Created = old.Created
	case errors.Is(err, checkpoint.ErrNotFound):
	default:
		return nil, fmt.Errorf("read job %q: %w", name, err)
	}
	// Literal secrets are encrypted before the spec reaches the catalog.
	sealed, err := a.d.sealSpec(job.Spec)
	if err != nil {
		return nil, err
	}
	opts := proto.MarshalOptions{Deterministic: true}
	if rec.Spec, err = opts.Marshal(sealed); err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	if err := a.launch(ctx, m, rec, now); err != nil {
		return nil, err
	}
	a.d.log.Info("job submitted", "job", name, "resumed", rec.Created != now)
	return a.d.status.Get(name), nil
}

// launch records rec as PENDING and starts its batch loop. The caller holds
// the job's name lock and has checked that the job is not running.
func (a *api) launch(ctx context.Context, m *manager, rec checkpoint.JobRecord, now time.Time) error {
	rec.State, rec.Updated, rec.LastError = statusboard.StateName(sluicev1.JobState_JOB_STATE_PENDING), now, ""
	if err := a.d.store.PutJob(ctx, m.fence, rec); err != nil {
		return fmt.Errorf("record job %q: %w", rec.Name, err)
	}
	a.d.status.Update(rec, a.d.lastProgress(ctx, rec))
	if !m.launch(rec) {
		// Cannot happen while the name is locked and the catalog said the job
		// had ended; refuse rather than run a second loop.
		return fmt.Errorf("job %q already has a running batch loop: %w", rec.Name, rpc.ErrAlreadyExists)
	}
	return nil
}

// ResumeJob starts an ended job again with its stored (sealed) spec: the
// spec is checked as a submit would check it, but its secrets never leave
// the catalog.
func (a *api) ResumeJob(ctx context.Context, req *sluicev1.ResumeJobRequest) (*sluicev1.Job, error) {
	name := req.GetName()
	m, unlock, err := a.lockJob(ctx, "resume", name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rec, err := a.d.store.GetJob(ctx, name)
	switch {
	case errors.Is(err, checkpoint.ErrNotFound):
		return nil, fmt.Errorf("job %q: %w", name, rpc.ErrNotFound)
	case err != nil:
		return nil, fmt.Errorf("read job %q: %w", name, err)
	case rec.Unreadable != nil || rec.Spec == nil:
		return nil, fmt.Errorf("job %q has an unreadable catalog entry; submit its spec again or delete it: %w", name, rpc.ErrConflict)
	case m.running(name) || !statusboard.Terminal(statusboard.ParseState(rec.State)):
		return nil, fmt.Errorf("job %q is %s; only a stopped, finished or failed job can be resumed: %w", name, rec.State, rpc.ErrConflict)
	}
	spec := &sluicev1.JobSpec{}
	if err := proto.Unmarshal(rec.Spec, spec); err != nil {
		return nil, fmt.Errorf("job %q: decode its stored spec: %w", name, err)
	}
	if _, err := a.d.compileForUse(spec); err != nil {
		return nil, fmt.Errorf("job %q: its stored spec no longer compiles; submit it again: %w", name, err)
	}
	if err := a.launch(ctx, m, rec, time.Now().UTC()); err != nil {
		return nil, err
	}
	a.d.log.Info("job resumed", "job", name)
	return a.d.status.Get(name), nil
}

// GetRecentProgress returns the job's last batches' progress (Spark's
// recentProgress), oldest first.
func (a *api) GetRecentProgress(ctx context.Context, req *sluicev1.GetRecentProgressRequest) (*sluicev1.GetRecentProgressResponse, error) {
	if _, err := a.leader(); err != nil {
		return nil, err
	}
	if req.GetLimit() < 0 {
		return nil, fmt.Errorf("limit %d: must be 0 (all) or more: %w", req.GetLimit(), rpc.ErrInvalidArgument)
	}
	p, ok := a.d.status.RecentProgress(req.GetName(), int(req.GetLimit()))
	if !ok {
		return nil, fmt.Errorf("job %q: %w", req.GetName(), rpc.ErrNotFound)
	}
	return &sluicev1.GetRecentProgressResponse{Progress: p}, nil
}

func (a *api) GetJob(ctx context.Context, req *sluicev1.GetJobRequest) (*sluicev1.Job, error) {
	if _, err := a.leader(); err != nil {
		return nil, err
	}
	if j := a.d.status.Get(req.GetName()); j != nil {
		return j, nil
	}
	return nil, fmt.Errorf("job %q: %w", req.GetName(), rpc.ErrNotFound)
}

// Page sizes of ListJobs (AIP-158): the default, and the most one page
// holds whatever is asked.
const (
	defaultJobsPage = 100
	maxJobsPage     = 1000
)

func (a *api) ListJobs(ctx context.Context, req *sluicev1.ListJobsRequest) (*sluicev1.ListJobsResponse, error) {
	if _, err := a.leader(); err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, fmt.Errorf("page_size %d: must not be negative: %w", size, rpc.ErrInvalidArgument)
	case size == 0:
		size = defaultJobsPage
	case size > maxJobsPage:
		size = maxJobsPage
	}
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	// Jobs in name order; the page starts after the token's name (names
	// are never empty, so an empty token starts at the first job).
	jobs := a.d.status.List()
	start := sort.Search(len(jobs), func(i int) bool { return jobs[i].GetName() > after })
	end := min(start+size, len(jobs))
	resp := &sluicev1.ListJobsResponse{Jobs: jobs[start:end]}
	if end < len(jobs) {
		resp.NextPageToken = encodePageToken(jobs[end-1].GetName())
	}
	return resp, nil
}

// A page token is the last name of the previous page, opaque to clients
// (AIP-158): the next page starts after it, so jobs submitted or deleted
// between pages neither repeat nor shift the pages.
func encodePageToken(last string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("n:" + last))
}

func decodePageToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || !strings.HasPrefix(string(b), "n:") {
		return "", fmt.Errorf("page_token %q: not a token ListJobs returned: %w", tok, rpc.ErrInvalidArgument)
	}
	return strings.TrimPrefix(string(b), "n:"), nil
}

func (a *api) StopJob(ctx context.Context, req *sluicev1.StopJobRequest) (*sluicev1.Job, error) {
	m, unlock, err := a.lockJob(ctx, "stop", req.GetName())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if a.d.status.Get(req.GetName()) == nil {
		return nil, fmt.Errorf("job %q: %w", req.GetName(), rpc.ErrNotFound)
	}
	if err := m.stopJob(ctx, req.GetName()); err != nil {
		return nil, fmt.Errorf("stop job %q: %w", req.GetName(), err)
	}
	return a.d.status.Get(req.GetName()), nil
}

func (a *api) DeleteJob(ctx context.Context, req *sluicev1.DeleteJobRequest) (*sluicev1.DeleteJobResponse, error) {
	name := req.GetName()
	m, unlock, err := a.lockJob(ctx, "delete", name)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if a.d.status.Get(name) == nil {
		return nil, fmt.Errorf("job %q: %w", name, rpc.ErrNotFound)
	}
	if a.d.status.Unreadable(name) {
		// Nothing to stop and no spec to find its own store by: remove the
		// entry (and the logs in the driver's store) so the name is free.
		if err := a.d.store.DeleteJob(ctx, m.fence, name); err != nil {
			return nil, fmt.Errorf("delete job %q: %w", name, err)
		}
		a.d.status.Forget(name)
		a.d.log.Info("unreadable job entry deleted", "job", name)
		return &sluicev1.DeleteJobResponse{}, nil
	}
	if err := m.stopJob(ctx, name); err != nil {
		return nil, fmt.Errorf("stop job %q: %w", name, err)
	}
	rec, err := a.d.store.GetJob(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("delete job %q: %w", name, err)
	}
	if rec.Spec != nil {
		st, err := a.d.logStore(ctx, rec)
		if err != nil {
			return nil, fmt.Errorf("delete job %q: open its checkpoint store: %w", name, err)
		}
		if st != a.d.store {
			err := st.DeleteJob(ctx, m.fence, name)
			a.d.jobStores.forget(name)
			if err != nil && !errors.Is(err, checkpoint.ErrNotFound) {
				return nil, fmt.Errorf("delete job %q: its checkpoints: %w", name, err)
			}
		}
	}
	if err := a.d.store.DeleteJob(ctx, m.fence, name); err != nil {
		return nil, fmt.Errorf("delete job %q: %w", name, err)
	}
	a.d.status.Forget(name)
	a.d.log.Info("job deleted with its checkpoints", "job", name)
	return &sluicev1.DeleteJobResponse{}, nil
}

func (a *api) WatchJob(req *sluicev1.WatchJobRequest, srv sluicev1.DriverService_WatchJobServer) error {
	if _, err := a.leader(); err != nil {
		return err
	}
	ch, stop := a.d.status.Watch(req.GetName())
	defer stop()
	j := a.d.status.Get(req.GetName())
	if j == nil {
		return fmt.Errorf("job %q: %w", req.GetName(), rpc.ErrNotFound)
	}
	if err := srv.Send(&sluicev1.JobEvent{Job: j}); err != nil {
		return err
	}
	if statusboard.Terminal(j.GetState()) {
		return nil
	}
	for {
		select {
		case <-srv.Context().Done():
			return nil
		case <-a.d.lostCh():
			return fmt.Errorf("this driver stopped leading: %w", rpc.ErrUnavailable)
		case ev := <-ch:
			if err := srv.Send(ev); err != nil {
				return err
			}
			if statusboard.Terminal(ev.GetJob().GetState()) {
				return nil
			}
		}
	}
}

func (a *api) ListExecutors(ctx context.Context, _ *sluicev1.ListExecutorsRequest) (*sluicev1.ListExecutorsResponse, error) {
	if _, err := a.leader(); err != nil {
		return nil, err
	}
	return &sluicev1.ListExecutorsResponse{Executors: a.d.reg.List()}, nil
}
