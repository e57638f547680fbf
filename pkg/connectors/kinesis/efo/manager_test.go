package efo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/connectors"
)

const fakeStreamARN = "arn:aws:kinesis:us-east-1:000000000000:stream/orders"

// fakeConsumers is ConsumerAPI with consumer states that change with
// (synctest's fake) time: a registered consumer is CREATING for
// createFor, a deregistered one DELETING for deleteFor.
type fakeConsumers struct {
	mu        sync.Mutex
	createFor time.Duration
	deleteFor time.Duration
	consumers map[string]*fakeConsumer
	gen       int
	calls     map[string]int
	// registerErrs are returned by the next RegisterStreamConsumer calls.
	registerErrs []error
	describeErrs []error
	// registerDelay is how long RegisterStreamConsumer takes to answer (a
	// busy service); set before the calls start.
	registerDelay time.Duration
}

type fakeConsumer struct {
	arn      string
	created  time.Time
	deleting time.Time // zero unless deregistered
}

func newFakeConsumers() *fakeConsumers {
	return &fakeConsumers{consumers: map[string]*fakeConsumer{}, calls: map[string]int{},
		createFor: 3 * time.Second, deleteFor: 10 * time.Second}
}

func (f *fakeConsumers) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// add registers a consumer that is ACTIVE already.
func (f *fakeConsumers) add(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	c := &fakeConsumer{arn: fmt.Sprintf("%s/consumer/%s:%d", fakeStreamARN, name, f.gen), created: time.Now().Add(-time.Hour)}
	f.consumers[name] = c
	return c.arn
}

// remove makes a consumer vanish (deregistered by hand, long ago).
func (f *fakeConsumers) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.consumers, name)
}

// state returns the consumer's status now, dropping it once deleted.
func (f *fakeConsumers) state(name string) (*fakeConsumer, types.ConsumerStatus) {
	c := f.consumers[name]
	if c == nil {
		return nil, ""
	}
	now := time.Now()
	switch {
	case !c.deleting.IsZero() && now.Sub(c.deleting) >= f.deleteFor:
		delete(f.consumers, name)
		return nil, ""
	case !c.deleting.IsZero():
		return c, types.ConsumerStatusDeleting
	case now.Sub(c.created) < f.createFor:
		return c, types.ConsumerStatusCreating
	}
	return c, types.ConsumerStatusActive
}

func (f *fakeConsumers) DescribeStreamSummary(_ context.Context, in *kinesis.DescribeStreamSummaryInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamSummaryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DescribeStreamSummary"]++
	if aws.ToString(in.StreamName) != "orders" && aws.ToString(in.StreamARN) != fakeStreamARN {
		return nil, &types.ResourceNotFoundException{Message: aws.String("no such stream")}
	}
	return &kinesis.DescribeStreamSummaryOutput{StreamDescriptionSummary: &types.StreamDescriptionSummary{StreamARN: aws.String(fakeStreamARN)}}, nil
}

func (f *fakeConsumers) RegisterStreamConsumer(ctx context.Context, in *kinesis.RegisterStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.RegisterStreamConsumerOutput, error) {
	if f.registerDelay > 0 {
		select {
		case <-time.After(f.registerDelay):
		case <-ctx.Done():
			f.mu.Lock()
			f.calls["RegisterStreamConsumer (cut off)"]++
			f.mu.Unlock()
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["RegisterStreamConsumer"]++
	if len(f.registerErrs) > 0 {
		err := f.registerErrs[0]
		f.registerErrs = f.registerErrs[1:]
		return nil, err
	}
	name := aws.ToString(in.ConsumerName)
	if c, _ := f.state(name); c != nil {
		return nil, &types.ResourceInUseException{Message: aws.String("consumer " + name + " exists")}
	}
	f.gen++
	c := &fakeConsumer{arn: fmt.Sprintf("%s/consumer/%s:%d", fakeStreamARN, name, f.gen), created: time.Now()}
	f.consumers[name] = c
	return &kinesis.RegisterStreamConsumerOutput{Consumer: &types.Consumer{ConsumerARN: aws.String(c.arn), ConsumerName: aws.String(name),
		ConsumerStatus: types.ConsumerStatusCreating, ConsumerCreationTimestamp: aws.Time(c.created)}}, nil
}

func (f *fakeConsumers) DescribeStreamConsumer(_ context.Context, in *kinesis.DescribeStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.DescribeStreamConsumerOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DescribeStreamConsumer"]++
	if len(f.describeErrs) > 0 {
		err := f.describeErrs[0]
		f.describeErrs = f.describeErrs[1:]
		return nil, err
	}
	name := aws.ToString(in.ConsumerName)
	c, st := f.state(name)
	if c == nil {
		return nil, &types.ResourceNotFoundException{Message: aws.String("consumer " + name + " not found")}
	}
	return &kinesis.DescribeStreamConsumerOutput{ConsumerDescription: &types.ConsumerDescription{ConsumerARN: aws.String(c.arn),
		ConsumerName: aws.String(name), ConsumerStatus: st, ConsumerCreationTimestamp: aws.Time(c.created), StreamARN: in.StreamARN}}, nil
}

func (f *fakeConsumers) DeregisterStreamConsumer(_ context.Context, in *kinesis.DeregisterStreamConsumerInput, _ ...func(*kinesis.Options)) (*kinesis.DeregisterStreamConsumerOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DeregisterStreamConsumer"]++
	name := aws.ToString(in.ConsumerName)
	c, st := f.state(name)
	if c == nil {
		return nil, &types.ResourceNotFoundException{Message: aws.String("consumer " + name + " not found")}
	}
	if st != types.ConsumerStatusDeleting {
		c.deleting = time.Now()
	}
	return &kinesis.DeregisterStreamConsumerOutput{}, nil
}

func (f *fakeConsumers) ListStreamConsumers(_ context.Context, in *kinesis.ListStreamConsumersInput, _ ...func(*kinesis.Options)) (*kinesis.ListStreamConsumersOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListStreamConsumers"]++
	out := &kinesis.ListStreamConsumersOutput{}
	for name := range f.consumers {
		c, st := f.state(name)
		if c != nil {
			out.Consumers = append(out.Consumers, types.Consumer{ConsumerARN: aws.String(c.arn), ConsumerName: aws.String(name), ConsumerStatus: st})
		}
	}
	return out, nil
}

// statusLog records every status a Manager reports.
type statusLog struct {
	mu sync.Mutex
	s  []Status
}

func (l *statusLog) add(s Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.s = append(l.s, s)
}

func (l *statusLog) messages() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, s := range l.s {
		fmt.Fprintf(&b, "[%s] %s\n", s.Phase, s.Message)
	}
	return b.String()
}

func newTestManager(t *testing.T, api ConsumerAPI, cfg Config, log *statusLog) *Manager {
	t.Helper()
	m, err := NewManager(api, "orders", "job1", cfg, WithLogger(testLog(t)), WithStatusFunc(log.add),
		WithWaitBackoff(time.Second, 8*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestManagerJobManagedRegistersAndWaitsForActive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, log := newFakeConsumers(), &statusLog{}
		m := newTestManager(t, api, Config{}, log)
		start := time.Now()
		arn, err := m.Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop(context.Background(), StopFailed)
		if !strings.Contains(arn, "/consumer/sluice_job1:") || m.ConsumerARN() != arn {
			t.Errorf("ARN %q (ConsumerARN %q), want the registered sluice_job1", arn, m.ConsumerARN())
		}
		if waited := time.Since(start); waited < api.createFor {
			t.Errorf("Start returned after %s, before the consumer left CREATING (%s)", waited, api.createFor)
		}
		if n := api.count("RegisterStreamConsumer"); n != 1 {
			t.Errorf("%d registrations, want 1", n)
		}
		msgs := log.messages()
		if !strings.Contains(msgs, "is CREATING; checking again in") || !strings.Contains(msgs, "[active]") {
			t.Errorf("statuses do not show the wait:\n%s", msgs)
		}
		if s := m.Status(); s.Phase != PhaseActive || s.ARN != arn || s.Stream != fakeStreamARN {
			t.Errorf("Status = %+v", s)
		}
	})
}

func TestManagerReusesExistingConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, log := newFakeConsumers(), &statusLog{}
		existing := api.add("sluice_job1")
		m := newTestManager(t, api, Config{}, log)
		arn, err := m.Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop(context.Background(), StopFailed)
		if arn != existing {
			t.Errorf("ARN %s, want the existing %s", arn, existing)
		}
		if n := api.count("RegisterStreamConsumer"); n != 0 {
			t.Errorf("%d registrations of an existing consumer", n)
		}
	})
}

// A quick restart after a clean stop with requireConsumerDeregistration
// lands on a consumer still DELETING (FLINK-37908): the job waits until it
// is gone, then registers it again, instead of failing in a loop.
func TestManagerWaitsOutDeletingThenRegisters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, log := newFakeConsumers(), &statusLog{}
		old := api.add("sluice_job1")
		if _, err := api.DeregisterStreamConsumer(t.Context(), &kinesis.DeregisterStreamConsumerInput{
			StreamARN: aws.String(fakeStreamARN), ConsumerName: aws.String("sluice_job1")}); err != nil {
			t.Fatal(err)
		}
		m := newTestManager(t, api, Config{}, log)
		start := time.Now()
		arn, err := m.Start(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Stop(context.Background(), StopFailed)
		if arn == old {
			t.Error("got the deleted consumer's ARN")
		}
		if waited := time.Since(start); waited < api.deleteFor+api.createFor {
			t.Errorf("Start returned after %s, want DELETING (%s) then CREATING (%s) waited out", waited, api.deleteFor, api.createFor)
		}
		msgs := log.messages()
		if !strings.Contains(msgs, "is DELETING (an earlier deregistration still in progress); it will be registered again once it is gone") {
			t.Errorf("statuses do not explain the DELETING wait:\n%s", msgs)
		}
	})
}

func TestManagerSelfManaged(t *testing.T) {
	t.Run("missing consumer is a permanent error", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api, log := newFakeConsumers(), &statusLog{}
			m := newTestManager(t, api, Config{ConsumerLifecycle: SelfManaged, ConsumerName: "mine"}, log)
			_, err := m.Start(t.Context())
			if !errors.Is(err, ErrConsumerNotFound) || !connectors.IsPermanent(err) {
				t.Fatalf("Start = %v, want a permanent ErrConsumerNotFound", err)
			}
			if !strings.Contains(err.Error(), "sluice kinesis consumers register --stream "+fakeStreamARN+" --consumer mine") {
				t.Errorf("the error does not say how to register it: %v", err)
			}
			if n := api.count("RegisterStreamConsumer"); n != 0 {
				t.Errorf("%d registrations of a self-managed consumer", n)
			}
			if m.Status().Phase != PhaseFailed {
				t.Errorf("status %+v, want failed", m.Status())
			}
		})
	})
	t.Run("existing consumer is used, CREATING waited for", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api, log := newFakeConsumers(), &statusLog{}
			if _, err := api.RegisterStreamConsumer(t.Context(), &kinesis.RegisterStreamConsumerInput{
				StreamARN: aws.String(fakeStreamARN), ConsumerName: aws.String("mine")}); err != nil {
				t.Fatal(err)
			}
			m := newTestManager(t, api, Config{ConsumerLifecycle: SelfManaged, ConsumerName: "mine"}, log)
			arn, err := m.Start(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(arn, "/consumer/mine:") {
				t.Errorf("ARN %s, want consumer mine", arn)
			}
			if err := m.Stop(context.Background(), StopClean); err != nil {
				t.Fatal(err)
			}
			if n := api.count("DeregisterStreamConsumer"); n != 0 {
				t.Errorf("a self-managed consumer was deregistered (%d calls)", n)
			}
		})
	})
}

// Transient refusals are retried with a status that says what to check;
// refusals retrying cannot fix end Start with a permanent error.
func TestManagerRegistrationErrors(t *testing.T) {
	t.Run("limit exceeded is retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api, log := newFakeConsumers(), &statusLog{}
			api.registerErrs = []error{&types.LimitExceededException{Message: aws.String("too many")}, &types.LimitExceededException{Message: aws.String("too many")}}
			api.describeErrs = []error{&types.InternalFailureException{Message: aws.String("blip")}}
			m := newTestManager(t, api, Config{}, log)
			if _, err := m.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer m.Stop(context.Background(), StopFailed)
			msgs := log.messages()
			if !strings.Contains(msgs, "LimitExceededException") || !strings.Contains(msgs, "20 consumers") || !strings.Contains(msgs, "blip") {
				t.Errorf("statuses do not explain the retries:\n%s", msgs)
			}
		})
	})
	t.Run("access denied is permanent", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api, log := newFakeConsumers(), &statusLog{}
			api.registerErrs = []error{&types.AccessDeniedException{Message: aws.String("not allowed")}}
			m := newTestManager(t, api, Config{}, log)
			_, err := m.Start(t.Context())
			var ad *types.AccessDeniedException
			if !errors.As(err, &ad) || !connectors.IsPermanent(err) {
				t.Fatalf("Start = %v, want a permanent AccessDeniedException", err)
			}
		})
	})
	t.Run("missing stream", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api := newFakeConsumers()
			m, err := NewManager(api, "nope", "job1", Config{}, WithLogger(testLog(t)))
			if err != nil {
				t.Fatal(err)
			}
			_, err = m.Start(t.Context())
			var nf *types.ResourceNotFoundException
			if !errors.As(err, &nf) || !strings.Contains(err.Error(), "describe stream nope") {
				t.Fatalf("Start = %v, want the stream's ResourceNotFoundException", err)
			}
		})
	})
	t.Run("wait ends with ctx", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api, log := newFakeConsumers(), &statusLog{}
			api.createFor = time.Hour
			m := newTestManager(t, api, Config{}, log)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			_, err := m.Start(ctx)
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "CREATING") {
				t.Fatalf("Start = %v, want the deadline with the state waited for", err)
			}
		})
	})
}

// A consumer deregistered behind the job's back is found by the refresh:
// job-managed registers it again (new ARN); self-managed reports it lost and
// recovers when the user registers it again.
func TestManagerRefresh(t *testing.T) {
	t.Run("job-managed re-registers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api, log := newFakeConsumers(), &statusLog{}
			old := api.add("sluice_job1")
			m := newTestManager(t, api, Config{ConsumerRefreshInterval: time.Minute}, log)
			if _, err := m.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer m.Stop(context.Background(), StopFailed)
			api.remove("sluice_job1")
			time.Sleep(time.Minute + api.createFor + 30*time.Second)
			synctest.Wait()
			arn := m.ConsumerARN()
			if arn == old || arn == "" {
				t.Fatalf("ARN %q after the refresh, want a new one", arn)
			}
			if s := m.Status(); s.Phase != PhaseActive || s.ARN != arn {
				t.Errorf("status %+v, want active with the new ARN", s)
			}
			if !strings.Contains(log.messages(), "[lost] consumer sluice_job1 on "+fakeStreamARN+" is not registered any more; registering it again") {
				t.Errorf("statuses:\n%s", log.messages())
			}
		})
	})
	t.Run("self-managed reports", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api, log := newFakeConsumers(), &statusLog{}
			api.add("mine")
			m := newTestManager(t, api, Config{ConsumerLifecycle: SelfManaged, ConsumerName: "mine", ConsumerRefreshInterval: time.Minute}, log)
			if _, err := m.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer m.Stop(context.Background(), StopFailed)
			api.remove("mine")
			time.Sleep(time.Minute + time.Second)
			synctest.Wait()
			s := m.Status()
			if s.Phase != PhaseLost || !errors.Is(s.Err, ErrConsumerNotFound) {
				t.Fatalf("status %+v, want lost with ErrConsumerNotFound", s)
			}
			if n := api.count("RegisterStreamConsumer"); n != 0 {
				t.Errorf("a self-managed consumer was registered (%d calls)", n)
			}
			newARN := api.add("mine")
			time.Sleep(time.Minute)
			synctest.Wait()
			if s := m.Status(); s.Phase != PhaseActive || m.ConsumerARN() != newARN {
				t.Errorf("status %+v (ARN %s), want active again with %s", s, m.ConsumerARN(), newARN)
			}
		})
	})
}

// The consumer is deregistered only on a clean stop of a job-managed
// consumer with requireConsumerDeregistration; a failure never deregisters
// (restarts would land on a DELETING consumer, FLINK-24431).
func TestManagerStopDeregistersOnlyOnCleanStop(t *testing.T) {
	for _, tc := range []struct {
		name    string
		require bool
		kind    StopKind
		want    int
	}{
		{"clean stop, required", true, StopClean, 1},
		{"failure, required", true, StopFailed, 0},
		{"clean stop, not required", false, StopClean, 0},
		{"failure, not required", false, StopFailed, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				api, log := newFakeConsumers(), &statusLog{}
				m := newTestManager(t, api, Config{RequireConsumerDeregistration: tc.require}, log)
				if _, err := m.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := m.Stop(t.Context(), tc.kind); err != nil {
					t.Fatal(err)
				}
				if n := api.count("DeregisterStreamConsumer"); n != tc.want {
					t.Errorf("%d deregistrations, want %d", n, tc.want)
				}
				if m.Status().Phase != PhaseStopped {
					t.Errorf("status %+v, want stopped", m.Status())
				}
				if err := m.Stop(t.Context(), tc.kind); err != nil || api.count("DeregisterStreamConsumer") != tc.want {
					t.Errorf("a second Stop did something: %v", err)
				}
				if _, err := m.Start(t.Context()); !errors.Is(err, ErrClosed) {
					t.Errorf("Start after Stop = %v, want ErrClosed", err)
				}
			})
		})
	}
}

// A caller of Await that stops waiting (a driver's Plan, after its bounded
// wait) does not cut off the Start: a RegisterStreamConsumer slower than
// every caller's wait is made once and answered, while the callers see in
// Status that it was sent and not answered yet; then CREATING; then the
// consumer is ACTIVE and Await returns its ARN.
func TestManagerAwaitRidesOutSlowCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		api, log := newFakeConsumers(), &statusLog{}
		// Answered at 17s, CREATING until 27s: the callers ending at 20s
		// and 25s see CREATING.
		api.registerDelay, api.createFor = 17*time.Second, 10*time.Second
		m := newTestManager(t, api, Config{}, log)
		defer m.Stop(context.Background(), StopFailed)
		await := func() (string, error) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			return m.Await(ctx)
		}
		for range 3 { // 15s: the registration has not answered
			if _, err := await(); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Await = %v, want the caller's deadline", err)
			}
			if s := m.Status(); s.Phase != PhaseWaiting || !strings.Contains(s.Message, "registering it (RegisterStreamConsumer sent, no answer yet)") {
				t.Fatalf("status while registering: %+v", s)
			}
		}
		var sawCreating bool
		for {
			arn, err := await()
			if err == nil {
				if !strings.Contains(arn, "/consumer/sluice_job1:") {
					t.Fatalf("ARN %q", arn)
				}
				break
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Await = %v", err)
			}
			sawCreating = sawCreating || m.Status().ConsumerStatus == types.ConsumerStatusCreating
		}
		if !sawCreating {
			t.Errorf("no caller saw CREATING:\n%s", log.messages())
		}
		if n, cut := api.count("RegisterStreamConsumer"), api.count("RegisterStreamConsumer (cut off)"); n != 1 || cut != 0 {
			t.Errorf("%d registrations answered, %d cut off; want 1 and 0", n, cut)
		}
		if n := api.count("DescribeStreamSummary"); n != 1 {
			t.Errorf("the stream was looked up %d times: each caller started again", n)
		}
		if arn, err := m.Await(t.Context()); err != nil || arn != m.ConsumerARN() {
			t.Errorf("Await once ACTIVE = %q, %v", arn, err)
		}
	})
}

// A Start run by Await that fails is returned once; the next Await starts
// again. Stop ends a Start in progress (no goroutine left behind: synctest
// would hang) and still deregisters what it registered on a clean stop.
func TestManagerAwaitFailureAndStop(t *testing.T) {
	t.Run("failure is returned, then started again", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api := newFakeConsumers()
			m, err := NewManager(api, "nope", "job1", Config{}, WithLogger(testLog(t)))
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 2; i++ {
				var nf *types.ResourceNotFoundException
				if _, err := m.Await(t.Context()); !errors.As(err, &nf) {
					t.Fatalf("Await = %v, want the stream's ResourceNotFoundException", err)
				}
				if n := api.count("DescribeStreamSummary"); n != i {
					t.Fatalf("%d lookups after %d Awaits", n, i)
				}
			}
		})
	})
	t.Run("stop ends a start in progress", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			api, log := newFakeConsumers(), &statusLog{}
			api.registerDelay = time.Hour
			m := newTestManager(t, api, Config{RequireConsumerDeregistration: true}, log)
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if _, err := m.Await(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Await = %v", err)
			}
			if err := m.Stop(t.Context(), StopClean); err != nil {
				t.Fatal(err)
			}
			if n := api.count("RegisterStreamConsumer (cut off)"); n != 1 {
				t.Errorf("%d registrations cut off by Stop, want 1", n)
			}
			if n := api.count("DeregisterStreamConsumer"); n != 1 {
				t.Errorf("%d deregistrations on a clean stop, want 1", n)
			}
			if _, err := m.Await(t.Context()); !errors.Is(err, ErrClosed) {
				t.Errorf("Await after Stop = %v, want ErrClosed", err)
			}
			if s := m.Status(); s.Phase != PhaseStopped {
				t.Errorf("status %+v, want stopped", s)
			}
		})
	})
}
