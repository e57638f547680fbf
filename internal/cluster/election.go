package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/sluicehq/sluice/pkg/checkpoint"
)

// retryDelay is how long Campaign, the term watcher and Observe wait before
// retrying after etcd was unreachable or a session ended under them.
const retryDelay = 500 * time.Millisecond

// errSessionEnded means a candidate's lease ended while it was waiting to
// lead; Campaign then starts over with a new lease.
var errSessionEnded = errors.New("election session ended")

// Election elects one leader among drivers sharing an etcd prefix. It is safe
// for concurrent use. The client belongs to the caller and must outlive the
// Election.
type Election struct {
	client *clientv3.Client
	opts   options
	pfx    string // opts.prefix + "/": the range holding candidate keys

	// ctx is the lifecycle context: cancelled by Close, it stops campaigns,
	// lease keep-alives, term watchers and observers.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	sessions map[*concurrency.Session]struct{} // leases to revoke on Close
	wg       sync.WaitGroup                    // term watchers and observers
}

var _ Elector = (*Election)(nil)

// New returns an Election on client. Options are validated first; nothing
// talks to etcd until Campaign, Leader or Observe.
func New(client *clientv3.Client, opts ...Option) (*Election, error) {
	if client == nil {
		return nil, errors.New("new election: etcd client is nil")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("new election: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Election{
		client:   client,
		opts:     o,
		pfx:      o.prefix + "/",
		ctx:      ctx,
		cancel:   cancel,
		sessions: map[*concurrency.Session]struct{}{},
	}, nil
}

// Campaign blocks until this process leads or ctx ends. It grants a lease of
// the configured TTL, puts "<prefix>/<lease>" = advertise and waits for every
// older candidate key to go. If the lease ends while waiting (etcd
// unreachable for longer than the TTL), it starts over with a new lease, so
// only ctx, Close (ErrClosed) or an etcd error the client does not retry
// make it return without leading. The error then wraps ctx.Err() when ctx
// ended, and the candidate key is removed by revoking its lease (best effort,
// bounded by the TTL; otherwise the key expires with the lease).
//
// Several Campaigns may run at once; each is a separate candidate.
func (e *Election) Campaign(ctx context.Context, advertise string) (*Leadership, error) {
	if advertise == "" {
		return nil, errors.New("campaign: advertised address must not be empty: followers forward clients to it")
	}
	for {
		l, err := e.campaignOnce(ctx, advertise)
		if !errors.Is(err, errSessionEnded) {
			return l, err
		}
		e.opts.logger.Warn("election lease ended while campaigning, retrying", "prefix", e.opts.prefix)
		if err := e.sleep(ctx, retryDelay); err != nil {
			return nil, fmt.Errorf("campaign: %w", err)
		}
	}
}

func (e *Election) campaignOnce(parent context.Context, advertise string) (*Leadership, error) {
	// ctx ends with the caller's ctx, with Close, and (below) with the
	// session; parent tells the first apart from the others.
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()

	// Grant the lease with the caller's ctx (NewSession would grant with the
	// session's ctx, which the caller cannot cancel).
	ttl := int64(e.opts.leaseTTL / time.Second)
	grant, err := e.client.Grant(ctx, ttl)
	if err != nil {
		return nil, e.campaignErr(parent, fmt.Errorf("grant lease: %w", err))
	}
	// The session's keep-alive lives until Resign or Close, not until ctx:
	// ctx only bounds the wait to lead.
	s, err := concurrency.NewSession(e.client,
		concurrency.WithLease(grant.ID), concurrency.WithTTL(int(ttl)), concurrency.WithContext(e.ctx))
	if err != nil {
		e.revoke(grant.ID)
		return nil, e.campaignErr(parent, fmt.Errorf("start session: %w", err))
	}
	if !e.track(s) {
		e.drop(s)
		return nil, fmt.Errorf("campaign: %w", ErrClosed)
	}
	// A candidate whose lease died must not keep waiting: it would be told
	// it leads with a key that no longer exists.
	defer context.AfterFunc(s.Ctx(), cancel)()

	fence, err := e.stand(ctx, s, advertise)
	if err == nil && s.Ctx().Err() != nil {
		err = errSessionEnded
	}
	if err != nil {
		// Revoking the lease removes the candidate key if it was put.
		sessionEnded := s.Ctx().Err() != nil
		e.drop(s)
		if sessionEnded && parent.Err() == nil && e.ctx.Err() == nil {
			return nil, errSessionEnded
		}
		return nil, e.campaignErr(parent, err)
	}

	tctx, tcancel := context.WithCancel(e.ctx)
	stopped := make(chan struct{})
	l := newLeadership(fence, func(ctx context.Context) error {
		// With a closed client nothing can be handed over: the key
		// expires with the lease.
		usable := e.client.Ctx().Err() == nil
		alive := s.Ctx().Err() == nil
		// 1. Delete the key (guarded by its create revision) so a follower
		//    takes over now rather than after the TTL.
		var err error
		if usable {
			_, err = e.client.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(fence.Key), "=", fence.Epoch)).
				Then(clientv3.OpDelete(fence.Key)).
				Commit()
		}
		// 2. Stop the term watcher.
		tcancel()
		<-stopped
		// 3. Stop the keep-alive and revoke the lease; the key goes with it
		//    even if step 1 failed.
		s.Orphan()
		var rerr error
		if alive && usable {
			_, rerr = e.client.Revoke(ctx, s.Lease())
			if errors.Is(rerr, rpctypes.ErrLeaseNotFound) {
				rerr = nil // expired meanwhile: nothing left to hand over
			}
		}
		e.untrack(s)
		if err = errors.Join(err, rerr); err != nil {
			return fmt.Errorf("resign %s: %w", fence.Key, err)
		}
		return nil
	})
	started := e.spawn(func() {
		defer close(stopped)
		defer l.markLost()
		e.watchTerm(tctx, s, fence)
		e.opts.logger.Info("leadership lost", "key", fence.Key, "epoch", fence.Epoch)
	})
	if !started {
		// Close won the race with this campaign: do not hand out a term
		// that is already over.
		tcancel()
		e.drop(s)
		return nil, fmt.Errorf("campaign: %w", ErrClosed)
	}
	e.opts.logger.Info("leadership won", "key", fence.Key, "epoch", fence.Epoch, "advertise", advertise)
	return l, nil
}

// stand puts this candidate's key and waits until every older candidate key
// is gone. It does what concurrency.Election.Campaign does, except that
// giving up is left to the caller (drop revokes the lease, and the key with
// it): Election.Campaign resigns with the client's context on cancellation,
// which blocks for as long as etcd is unreachable.
func (e *Election) stand(ctx context.Context, s *concurrency.Session, advertise string) (checkpoint.Fence, error) {
	key := fmt.Sprintf("%s%x", e.pfx, s.Lease())
	// The lease is new, so the key cannot exist yet; the comparison only
	// guards against a put retried after an ambiguous failure.
	resp, err := e.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, advertise, clientv3.WithLease(s.Lease()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return checkpoint.Fence{}, fmt.Errorf("put candidate key %s: %w", key, err)
	}
	rev := resp.Header.Revision
	if !resp.Succeeded {
		rev = resp.Responses[0].GetResponseRange().Kvs[0].CreateRevision
	}
	// Wait for the youngest older candidate to go, until there is none.
	// Watching only the next-older key (not the leader's) avoids every
	// candidate waking on each change.
	for {
		resp, err := e.client.Get(ctx, e.pfx, append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))...)
		if err != nil {
			return checkpoint.Fence{}, fmt.Errorf("list older candidates: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return checkpoint.Fence{Key: key, Epoch: rev}, nil
		}
		older := string(resp.Kvs[0].Key)
		if err := e.waitDelete(ctx, older, resp.Header.Revision); err != nil {
			return checkpoint.Fence{}, fmt.Errorf("wait for candidate %s: %w", older, err)
		}
	}
}

// waitDelete returns once key is deleted after revision rev, or when the
// history from rev was compacted away (the caller lists candidates again).
func (e *Election) waitDelete(ctx context.Context, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range e.client.Watch(wctx, key, clientv3.WithRev(rev)) {
		if wr.CompactRevision != 0 {
			return nil
		}
		if err := wr.Err(); err != nil {
			return err
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch ended")
}

// campaignErr explains why a campaign attempt failed, preferring the caller's
// reason (ctx, Close) over the etcd error it caused.
func (e *Election) campaignErr(parent context.Context, err error) error {
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("campaign: %w", parent.Err())
	case e.ctx.Err() != nil:
		return fmt.Errorf("campaign: %w", ErrClosed)
	default:
		return fmt.Errorf("campaign: %w", err)
	}
}

// watchTerm returns when the term ends: the lease ended (expired, revoked,
// client closed), the election key was deleted or recreated, or ctx ended
// (Resign, Close). Watching the key matters because an operator deleting it
// ends the term for etcd (writes are fenced) while the lease is still alive.
func (e *Election) watchTerm(ctx context.Context, s *concurrency.Session, f checkpoint.Fence) {
	// Calls below must not outlive the session: a Get on a closed client
	// can block in retries.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.Ctx(), cancel)()
	rev := f.Epoch
	for {
		if !e.watchKey(ctx, s, f.Key, rev) {
			return
		}
		// The watch broke (compaction, connection reset): check the key is
		// still ours, then watch again from now.
		resp, err := e.client.Get(ctx, f.Key)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-s.Done():
				return
			case <-time.After(retryDelay):
				continue
			}
		}
		if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != f.Epoch {
			return
		}
		rev = resp.Header.Revision + 1
	}
}

// watchKey watches key from rev. It returns false when the term is over and
// true when the watch broke and should be re-established.
func (e *Election) watchKey(ctx context.Context, s *concurrency.Session, key string, rev int64) bool {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := e.client.Watch(wctx, key, clientv3.WithRev(rev))
	for {
		select {
		case <-ctx.Done():
			return false
		case <-s.Done():
			return false
		case wr, ok := <-wch:
			if !ok || wr.Err() != nil || wr.Canceled {
				return true
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					return false
				}
			}
		}
	}
}

// Leader returns the advertised address of the current leader: the value of
// the oldest candidate key. It returns an error matching ErrNoLeader when
// there is no candidate.
func (e *Election) Leader(ctx context.Context) (string, error) {
	resp, err := e.client.Get(ctx, e.pfx, clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("leader of %s: %w", e.opts.prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("leader of %s: %w", e.opts.prefix, ErrNoLeader)
	}
	return string(resp.Kvs[0].Value), nil
}

// Observe reports the leader's advertised address each time it changes,
// starting with the current one; "" means nobody leads. Consecutive equal
// addresses are reported once. Transient etcd errors are retried; the channel
// is closed only when ctx ends, the Election is closed or the client is
// closed. A slow receiver may miss intermediate leaders but always receives
// the latest.
func (e *Election) Observe(ctx context.Context) <-chan string {
	ch := make(chan string)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.ctx, cancel)
	started := e.spawn(func() {
		defer close(ch)
		defer cancel()
		defer stop()
		e.observe(ctx, ch)
	})
	if !started {
		stop()
		cancel()
		close(ch)
	}
	return ch
}

func (e *Election) observe(ctx context.Context, ch chan<- string) {
	last, sent := "", false
	for ctx.Err() == nil && e.client.Ctx().Err() == nil {
		resp, err := e.client.Get(ctx, e.pfx, clientv3.WithFirstCreate()...)
		if err != nil {
			e.sleep(ctx, retryDelay)
			continue
		}
		addr := ""
		if len(resp.Kvs) > 0 {
			addr = string(resp.Kvs[0].Value)
		}
		if !sent || addr != last {
			select {
			case ch <- addr:
				last, sent = addr, true
			case <-ctx.Done():
				return
			}
		}
		// Any change under the prefix (a candidate joining, the leader's key
		// going) may change the leader: wait for one, then look again.
		wctx, wcancel := context.WithCancel(ctx)
		wch := e.client.Watch(wctx, e.pfx, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
		for wr := range wch {
			if wr.Err() != nil || len(wr.Events) > 0 {
				break
			}
		}
		wcancel()
	}
}

// Close ends every campaign and term of this Election and waits, in order:
//
//  1. cancels the lifecycle context: campaigns return ErrClosed, lease
//     keep-alives stop, and every Leadership's Lost is closed;
//  2. waits for term watchers and observers to return;
//  3. revokes every lease still held, bounded by ctx, so followers take over
//     at once instead of after the TTL (a lease not revoked expires anyway).
//
// The etcd client is not closed: it belongs to the caller. Close is
// idempotent.
func (e *Election) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	sessions := e.sessions
	e.sessions = map[*concurrency.Session]struct{}{}
	e.mu.Unlock()

	// Only leases still kept alive are worth revoking: the others expired,
	// or their client is closed and a revoke would only retry until ctx ends.
	var alive []*concurrency.Session
	for s := range sessions {
		if s.Ctx().Err() == nil {
			alive = append(alive, s)
		}
	}
	e.cancel()
	e.wg.Wait()
	var errs []error
	for _, s := range alive {
		s.Orphan()
		if e.client.Ctx().Err() != nil {
			break
		}
		if _, err := e.client.Revoke(ctx, s.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			errs = append(errs, fmt.Errorf("revoke lease %x: %w", s.Lease(), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close election %s: %w", e.opts.prefix, err)
	}
	return nil
}

func (e *Election) track(s *concurrency.Session) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.sessions[s] = struct{}{}
	return true
}

// spawn runs f on a goroutine that Close waits for, unless Close has begun.
func (e *Election) spawn(f func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

func (e *Election) untrack(s *concurrency.Session) {
	e.mu.Lock()
	delete(e.sessions, s)
	e.mu.Unlock()
}

// drop ends a session that did not become a term: stop its keep-alive and
// revoke its lease so its candidate key does not linger for the TTL.
func (e *Election) drop(s *concurrency.Session) {
	s.Orphan()
	e.revoke(s.Lease())
	e.untrack(s)
}

// revoke is best effort: an unrevoked lease expires after the TTL. It is
// bounded by the TTL and not by any caller ctx, which may be what just ended.
func (e *Election) revoke(id clientv3.LeaseID) {
	if e.client.Ctx().Err() != nil {
		return // closed client: a revoke would only retry until it times out
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.leaseTTL)
	defer cancel()
	if _, err := e.client.Revoke(ctx, id); err != nil {
		e.opts.logger.Debug("revoke election lease", "lease", fmt.Sprintf("%x", id), "err", err)
	}
}

func (e *Election) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-e.ctx.Done():
		return ErrClosed
	}
}
