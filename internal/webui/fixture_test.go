package webui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// fakeAPI is the driver's JSON API (internal/driver/httpapi.go) over
// fixture data: the same routes, the same protojson encoding (zero values
// emitted, int64 as strings), the same refusals (401 without the token, 403
// below the role or without X-Sluice-Action), so the browser tests exercise
// the page against what the driver answers without a cluster.
type fakeAPI struct {
	mu        sync.Mutex
	base      time.Time
	role      string // the principal's role: viewer, operator or admin
	authOff   bool   // no authentication: no principal, everything allowed
	token     string // required bearer token; "" accepts any or none
	fail      *apiError
	jobs      map[string]*sluicev1.Job
	progress  map[string][]*sluicev1.BatchProgress
	executors []*sluicev1.ExecutorInfo
	requests  []request
}

type apiError struct {
	status     int
	Code       string `json:"code"`
	Message    string `json:"message"`
	LeaderHTTP string `json:"leaderHttp,omitempty"`
}

// request is what the fake saw of one API call.
type request struct {
	Method, Path, Authorization, Action string
}

var marshal = protojson.MarshalOptions{EmitUnpopulated: true}

const (
	runningJob  = "orders-enrich"
	retryingJob = "clicks-archive"
	retryCause  = "sink s3: PutObject clicks/batch=7/part-shardId-000000000001.jsonl: 503 SlowDown: please reduce your request rate"
)

// lagRecords and lagMs are the running job's lag per partition after its
// last batch.
var (
	lagRecords = []float64{120, 4500, 0, 987}
	lagMs      = []float64{1500, 62000, 0, 9800}
)

// newFakeAPI builds the fixture: a RUNNING Kafka → PostgreSQL job with 20
// committed batches (22 to 41) over 4 partitions and batch 42 in flight, a
// RETRYING Kinesis → S3 job on its third restart, two executors. Times are
// relative to now, so ages read naturally in screenshots; nothing the tests
// assert depends on them.
func newFakeAPI(role string) *fakeAPI {
	f := &fakeAPI{base: time.Now().Truncate(time.Second), role: role,
		jobs: map[string]*sluicev1.Job{}, progress: map[string][]*sluicev1.BatchProgress{}}
	ts := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(f.base.Add(d)) }

	running := &sluicev1.Job{
		Name:  runningJob,
		State: sluicev1.JobState_JOB_STATE_RUNNING,
		Spec: &sluicev1.JobSpec{
			Name: runningJob,
			Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
				BootstrapServers: "kafka-0.kafka:9092,kafka-1.kafka:9092", Subscribe: []string{"orders"},
				StartingOffsets: "earliest", MaxOffsetsPerTrigger: 50000,
				Properties: map[string]string{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "sluice", "sasl.password": "*****"},
			}}},
			Transforms: []*sluicev1.Transform{
				{Kind: &sluicev1.Transform_Decode{Decode: &sluicev1.Decode{Format: "json", Schema: "id BIGINT, amount BIGINT"}}},
				{Kind: &sluicev1.Transform_Filter{Filter: "amount > 0"}},
			},
			Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{
				Url: "postgres://sluice:*****@pg:5432/shop?sslmode=verify-full", Table: "public.orders_enriched", Mode: "upsert", KeyColumns: []string{"order_id"},
			}}},
			Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "2s"}},
		},
		CreateTime: ts(-3 * time.Hour),
		UpdateTime: ts(-2 * time.Second),
		Current: &sluicev1.BatchRun{BatchId: 42, StartTime: ts(-time.Second), Phase: "execute",
			TasksTotal: 4, TasksDone: 2, TasksRunning: 2, InputRows: 1200, TaskRetries: 1},
		RecentErrors: []*sluicev1.JobError{
			{Time: ts(-25 * time.Minute), Message: "task orders/2 attempt a-17 on exec-b: read orders/2 from 18231: connection reset by peer", Count: 1},
		},
	}
	var batches []*sluicev1.BatchProgress
	for b := int64(22); b <= 41; b++ {
		batches = append(batches, f.batch(b, ts(time.Duration(b-42)*2*time.Second)))
	}
	f.setProgress(running, batches)
	f.jobs[runningJob] = running

	retrying := &sluicev1.Job{
		Name:      retryingJob,
		State:     sluicev1.JobState_JOB_STATE_RETRYING,
		LastError: retryCause,
		Spec: &sluicev1.JobSpec{
			Name: retryingJob,
			Source: &sluicev1.Source{Kind: &sluicev1.Source_Kinesis{Kinesis: &sluicev1.KinesisSource{
				StreamName: "clicks", Region: "eu-west-1", AwsAccessKey: "AKIAEXAMPLE", AwsSecretKey: "*****",
			}}},
			Sink:    &sluicev1.Sink{Kind: &sluicev1.Sink_S3{S3: &sluicev1.S3Sink{Bucket: "archive", Prefix: "clicks/", Region: "eu-west-1"}}},
			Trigger: &sluicev1.Trigger{Kind: &sluicev1.Trigger_ProcessingTime{ProcessingTime: "10s"}},
			Checkpoint: &sluicev1.Checkpoint{Kind: &sluicev1.Checkpoint_Dynamodb{Dynamodb: &sluicev1.DynamoDBCheckpoint{
				Table: "sluice_checkpoints", Region: "eu-west-1"}}, MinBatchesToRetain: 50},
		},
		CreateTime: ts(-26 * time.Hour),
		UpdateTime: ts(-5 * time.Second),
		Restart:    &sluicev1.RestartInfo{Attempt: 3, NextAttemptTime: ts(40 * time.Second), Cause: retryCause},
		RecentErrors: []*sluicev1.JobError{
			{Time: ts(-5 * time.Second), Message: retryCause, Count: 3},
		},
	}
	var kb []*sluicev1.BatchProgress
	for b := int64(5); b <= 7; b++ {
		bp := &sluicev1.BatchProgress{
			BatchId: b, Timestamp: ts(time.Duration(b-8) * 10 * time.Second), NumInputRows: 800 + b*10, NumOutputRows: 800 + b*10,
			InputBytes: 250_000, NumTasks: 2, InputRowsPerSecond: 80, ProcessedRowsPerSecond: 95,
			DurationMs: map[string]int64{"plan": 40, "record": 12, "dispatch": 3, "execute": 2400, "commit": 300, "total": 2755},
			Metrics:    map[string]float64{"avgMsBehindLatest": 2500, "maxMsBehindLatest": 4000, "minMsBehindLatest": 1000},
		}
		for i, behind := range []float64{4000, 1000} {
			id := fmt.Sprintf("clicks/shardId-00000000000%d", i)
			bp.Partitions = append(bp.Partitions, &sluicev1.PartitionProgress{Partition: id, Start: "49650", End: "49651",
				Records: 400 + b*5, Executor: "exec-a", Metrics: map[string]float64{"millisBehindLatest": behind}, DurationMs: 2300, Attempts: 1})
		}
		kb = append(kb, bp)
	}
	f.setProgress(retrying, kb)
	f.jobs[retryingJob] = retrying

	f.executors = []*sluicev1.ExecutorInfo{
		{Id: "exec-a", Address: "10.0.1.11:7071", Slots: 4, Running: 2, ConnectTime: ts(-3 * time.Hour), LastHeartbeatTime: ts(-time.Second), TasksCompleted: 1184, TasksFailed: 0},
		{Id: "exec-b", Address: "10.0.1.12:7071", Slots: 4, Running: 1, ConnectTime: ts(-2 * time.Hour), LastHeartbeatTime: ts(-2 * time.Second), TasksCompleted: 1093, TasksFailed: 3},
	}
	return f
}

// batch makes the running job's batch b: deterministic figures that vary
// from batch to batch so the charts have a shape.
func (f *fakeAPI) batch(b int64, at *timestamppb.Timestamp) *sluicev1.BatchProgress {
	rows := 4000 + (b*737)%2500
	exec := 300 + (b*211)%900
	bp := &sluicev1.BatchProgress{
		BatchId: b, Timestamp: at, NumInputRows: rows, NumOutputRows: rows - b%7, InputBytes: rows * 310, NumTasks: 4,
		InputRowsPerSecond: float64(rows) / 2, ProcessedRowsPerSecond: float64(rows) * 1000 / float64(exec+160),
		DurationMs: map[string]int64{"plan": 35 + b%20, "record": 15, "dispatch": 4 + b%5, "execute": exec, "commit": 90 + (b*13)%60},
		Metrics:    map[string]float64{"maxOffsetsBehindLatest": 4500, "avgOffsetsBehindLatest": 1401.75, "minOffsetsBehindLatest": 0, "maxMsBehindLatest": 62000, "avgMsBehindLatest": 18325},
	}
	var total int64
	for _, v := range bp.DurationMs {
		total += v
	}
	bp.DurationMs["total"] = total + 20
	for p := range 4 {
		attempts := int32(1)
		if b == 40 && p == 2 {
			attempts = 2
		}
		start := 18000 + b*1000 + int64(p)*100000
		bp.Partitions = append(bp.Partitions, &sluicev1.PartitionProgress{
			Partition: fmt.Sprintf("orders/%d", p), Start: strconv.FormatInt(start, 10), End: strconv.FormatInt(start+rows/4, 10),
			Records: rows / 4, Executor: []string{"exec-a", "exec-b"}[p%2],
			Metrics:    map[string]float64{"offsetsBehindLatest": lagRecords[p], "msBehindLatest": lagMs[p]},
			DurationMs: exec - 20 + int64(p)*7, Attempts: attempts,
		})
	}
	return bp
}

func (f *fakeAPI) setProgress(j *sluicev1.Job, batches []*sluicev1.BatchProgress) {
	f.progress[j.Name] = batches
	last := batches[len(batches)-1]
	j.LastProgress = last
	j.LastCommittedBatch = last.BatchId
}

// commitBatch finishes the running job's batch in flight and starts the
// next, as the driver would report between two polls.
func (f *fakeAPI) commitBatch() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	j := f.jobs[runningJob]
	b := j.Current.BatchId
	f.setProgress(j, append(f.progress[runningJob], f.batch(b, timestamppb.Now())))
	j.Current = &sluicev1.BatchRun{BatchId: b + 1, StartTime: timestamppb.Now(), Phase: "record", TasksTotal: 4}
	return b
}

func (f *fakeAPI) set(fn func(f *fakeAPI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// seen returns the API calls so far that match method and path ("" = any).
func (f *fakeAPI) seen(method, path string) []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []request
	for _, r := range f.requests {
		if (method == "" || r.Method == method) && (path == "" || r.Path == path) {
			out = append(out, r)
		}
	}
	return out
}

// server serves the UI and the fake API on loopback.
func (f *fakeAPI) server(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/ui/", Handler())
	mux.HandleFunc("GET /api/v1/info", f.wrap("viewer", func(r *http.Request) (any, *apiError) {
		info := map[string]any{"leader": "10.0.0.5:7070", "leaderHttp": "http://10.0.0.5:8080", "isLeader": true,
			"authRequired": true, "principal": map[string]string{"name": "alice", "role": f.role, "via": "token"}, "checkpointStore": "etcd"}
		if f.authOff {
			info["authRequired"] = false
			delete(info, "principal")
		}
		return info, nil
	}))
	mux.HandleFunc("GET /api/v1/jobs", f.wrap("viewer", func(r *http.Request) (any, *apiError) {
		resp := &sluicev1.ListJobsResponse{}
		for _, name := range []string{runningJob, retryingJob} {
			if j := f.jobs[name]; j != nil {
				resp.Jobs = append(resp.Jobs, j)
			}
		}
		return resp, nil
	}))
	mux.HandleFunc("GET /api/v1/jobs/{name}", f.wrap("viewer", func(r *http.Request) (any, *apiError) {
		return f.job(r)
	}))
	mux.HandleFunc("GET /api/v1/jobs/{name}/progress", f.wrap("viewer", func(r *http.Request) (any, *apiError) {
		if _, e := f.job(r); e != nil {
			return nil, e
		}
		p := f.progress[r.PathValue("name")]
		if n, _ := strconv.Atoi(r.URL.Query().Get("limit")); n > 0 && n < len(p) {
			p = p[len(p)-n:]
		}
		return &sluicev1.GetRecentProgressResponse{Progress: p}, nil
	}))
	mux.HandleFunc("GET /api/v1/executors", f.wrap("viewer", func(r *http.Request) (any, *apiError) {
		return &sluicev1.ListExecutorsResponse{Executors: f.executors}, nil
	}))
	mux.HandleFunc("POST /api/v1/jobs/{name}/stop", f.wrap("operator", func(r *http.Request) (any, *apiError) {
		j, e := f.job(r)
		if e != nil {
			return nil, e
		}
		j.State, j.Current, j.Restart = sluicev1.JobState_JOB_STATE_STOPPED, nil, nil
		return j, nil
	}))
	mux.HandleFunc("POST /api/v1/jobs/{name}/resume", f.wrap("operator", func(r *http.Request) (any, *apiError) {
		j, e := f.job(r)
		if e != nil {
			return nil, e
		}
		j.State = sluicev1.JobState_JOB_STATE_RUNNING
		return j, nil
	}))
	mux.HandleFunc("DELETE /api/v1/jobs/{name}", f.wrap("admin", func(r *http.Request) (any, *apiError) {
		if _, e := f.job(r); e != nil {
			return nil, e
		}
		delete(f.jobs, r.PathValue("name"))
		return &sluicev1.DeleteJobResponse{}, nil
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func (f *fakeAPI) job(r *http.Request) (*sluicev1.Job, *apiError) {
	j := f.jobs[r.PathValue("name")]
	if j == nil {
		return nil, &apiError{status: http.StatusNotFound, Code: "NOT_FOUND", Message: fmt.Sprintf("job %q: not found", r.PathValue("name"))}
	}
	return j, nil
}

var roles = map[string]int{"viewer": 1, "operator": 2, "admin": 3}

// wrap records the call and refuses it as the driver would, then answers
// run's value: a proto message as protojson, anything else as JSON.
func (f *fakeAPI) wrap(need string, run func(*http.Request) (any, *apiError)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.requests = append(f.requests, request{Method: r.Method, Path: r.URL.Path,
			Authorization: r.Header.Get("Authorization"), Action: r.Header.Get("X-Sluice-Action")})
		var v any
		e := f.fail
		switch {
		case e != nil:
		case f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token:
			e = &apiError{status: http.StatusUnauthorized, Code: "UNAUTHENTICATED", Message: "unknown token"}
		case r.Method != http.MethodGet && r.Header.Get("X-Sluice-Action") == "":
			e = &apiError{status: http.StatusForbidden, Code: "PERMISSION_DENIED", Message: "a change needs the X-Sluice-Action header"}
		case !f.authOff && roles[f.role] < roles[need]:
			e = &apiError{status: http.StatusForbidden, Code: "PERMISSION_DENIED", Message: fmt.Sprintf("alice has role %s; this needs %s", f.role, need)}
		default:
			v, e = run(r)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if e != nil {
			w.WriteHeader(e.status)
			_ = json.NewEncoder(w).Encode(e)
			return
		}
		var b []byte
		var err error
		if m, ok := v.(proto.Message); ok {
			b, err = marshal.Marshal(m)
		} else {
			b, err = json.Marshal(v)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(b)
	}
}
