package driver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestHTTPAPINeedsARole: the JSON API asks for the same roles as the gRPC
// methods it stands for, refuses changes without the action header, and
// answers refusals with the gRPC code's name.
func TestHTTPAPINeedsARole(t *testing.T) {
	p := newPKI(t)
	c := startSecure(t, p)
	h := c.d.httpHandler()
	waitFor(t, "driver leads", func() error {
		_, err := p.api(t, c.addr, nil, p.adminTok).ListJobs(context.Background(), &sluicev1.ListJobsRequest{})
		return err
	})
	tests := []struct {
		name, method, path, token string
		action                    bool
		want                      int
		wantCode                  string
	}{
		{"no token", "GET", "/api/v1/jobs", "", false, http.StatusUnauthorized, "UNAUTHENTICATED"},
		{"wrong token", "GET", "/api/v1/jobs", "guess", false, http.StatusUnauthorized, "UNAUTHENTICATED"},
		{"viewer lists", "GET", "/api/v1/jobs", p.viewerTok, false, http.StatusOK, ""},
		{"viewer lists executors", "GET", "/api/v1/executors", p.viewerTok, false, http.StatusOK, ""},
		{"viewer gets unknown job", "GET", "/api/v1/jobs/nope", p.viewerTok, false, http.StatusNotFound, "NOT_FOUND"},
		{"viewer progress of unknown job", "GET", "/api/v1/jobs/nope/progress", p.viewerTok, false, http.StatusNotFound, "NOT_FOUND"},
		{"bad limit", "GET", "/api/v1/jobs/nope/progress?limit=x", p.viewerTok, false, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"negative limit", "GET", "/api/v1/jobs/nope/progress?limit=-1", p.viewerTok, false, http.StatusBadRequest, "INVALID_ARGUMENT"},
		{"viewer stops", "POST", "/api/v1/jobs/nope/stop", p.viewerTok, true, http.StatusForbidden, "PERMISSION_DENIED"},
		{"operator stops without the header", "POST", "/api/v1/jobs/nope/stop", p.operTok, false, http.StatusForbidden, "PERMISSION_DENIED"},
		{"operator stops", "POST", "/api/v1/jobs/nope/stop", p.operTok, true, http.StatusNotFound, "NOT_FOUND"},
		{"operator resumes", "POST", "/api/v1/jobs/nope/resume", p.operTok, true, http.StatusNotFound, "NOT_FOUND"},
		{"operator deletes", "DELETE", "/api/v1/jobs/nope", p.operTok, true, http.StatusForbidden, "PERMISSION_DENIED"},
		{"admin deletes", "DELETE", "/api/v1/jobs/nope", p.adminTok, true, http.StatusNotFound, "NOT_FOUND"},
		{"unknown route", "GET", "/api/v1/nothing", p.adminTok, false, http.StatusNotFound, "NOT_FOUND"},
		{"wrong method", "PUT", "/api/v1/jobs/nope/stop", p.adminTok, true, http.StatusNotFound, "NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.action {
				req.Header.Set(actionHeader, "1")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d (%s), want %d", rec.Code, strings.TrimSpace(rec.Body.String()), tt.want)
			}
			if tt.wantCode == "" {
				return
			}
			var body apiError
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body.String(), err)
			}
			if body.Code != tt.wantCode || body.Message == "" {
				t.Fatalf("body %+v, want code %s and a message", body, tt.wantCode)
			}
		})
	}

	t.Run("info names the caller", func(t *testing.T) {
		req := httptest.NewRequest("GET", "/api/v1/info", nil)
		req.Header.Set("Authorization", "Bearer "+p.operTok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var info apiInfo
		if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("status %d body %q: %v", rec.Code, rec.Body.String(), err)
		}
		if !info.AuthRequired || !info.IsLeader || info.Principal == nil || info.Principal.Name != "ci" ||
			info.Principal.Role != "operator" || info.CheckpointStore != "file" {
			t.Fatalf("info %+v", info)
		}
	})
	if logs := c.logs(); !strings.Contains(logs, `method=StopJob`) && !strings.Contains(logs, "refused a call") {
		t.Fatalf("refusals are not logged:\n%s", logs)
	}
}

// TestHTTPAPIWithoutAuth: a driver without authentication serves the API on
// a loopback --http (as its gRPC port) and refuses it elsewhere unless
// --insecure.
func TestHTTPAPIWithoutAuth(t *testing.T) {
	tests := []struct {
		http     string
		insecure bool
		want     int
	}{
		{"127.0.0.1:8080", false, http.StatusOK},
		{":8080", false, http.StatusForbidden},
		{":8080", true, http.StatusOK},
	}
	for _, tt := range tests {
		d := &Driver{cfg: Config{HTTP: tt.http, Insecure: tt.insecure}, sec: &security{}}
		h := &httpAPI{d: d, api: &api{d: d}}
		_, err := h.authorize(httptest.NewRequest("GET", "/api/v1/jobs", nil), "x", methodRule{})
		got := http.StatusOK
		if err != nil {
			got = http.StatusForbidden
		}
		if got != tt.want {
			t.Errorf("--http %s insecure=%v: %v, want status %d", tt.http, tt.insecure, err, tt.want)
		}
	}
}

// TestResumeAndRecentProgress: the batch in flight shows in the job, the
// last batches' progress (with each task's executor, duration and
// attempts) comes back oldest first, and a stopped job resumes with its
// stored spec, over gRPC and the JSON API alike.
func TestResumeAndRecentProgress(t *testing.T) {
	c := startCluster(t, t.TempDir())
	_, brokers := kafkaWith(t, "ev", 2, 400)
	out := filepath.Join(t.TempDir(), "out")
	ctx := context.Background()

	watch, err := c.api.WatchJob(ctx, &sluicev1.WatchJobRequest{Name: "rp"})
	if err == nil {
		_, err = watch.Recv()
	}
	if code(err) != codes.NotFound {
		t.Fatalf("watch before submit: %v, want NotFound", err)
	}
	if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec("rp", brokers, "ev", out, fast)}); err != nil {
		t.Fatal(err)
	}
	// Watch until a batch in flight has been seen and three batches committed.
	wctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	watch, err = c.api.WatchJob(wctx, &sluicev1.WatchJobRequest{Name: "rp"})
	if err != nil {
		t.Fatal(err)
	}
	var sawCurrent bool
	for batches := 0; batches < 3 || !sawCurrent; {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch: %v (batches %d, saw current %v)", err, batches, sawCurrent)
		}
		if cur := ev.GetJob().GetCurrent(); cur != nil && cur.GetTasksTotal() > 0 && cur.GetPhase() != "" {
			sawCurrent = true
		}
		if ev.GetBatch() != nil {
			batches++
			if ev.GetJob().GetCurrent() != nil {
				t.Fatalf("committed batch %d still shows a batch in flight: %v", ev.GetBatch().GetBatchId(), ev.GetJob().GetCurrent())
			}
		}
	}
	cancel()

	rp, err := c.api.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: "rp"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rp.GetProgress()) < 3 {
		t.Fatalf("%d batches of progress, want 3 or more", len(rp.GetProgress()))
	}
	for i, p := range rp.GetProgress() {
		if i > 0 && p.GetBatchId() <= rp.GetProgress()[i-1].GetBatchId() {
			t.Fatalf("progress not oldest first: %d after %d", p.GetBatchId(), rp.GetProgress()[i-1].GetBatchId())
		}
		for _, part := range p.GetPartitions() {
			if part.GetExecutor() != "e1" || part.GetAttempts() < 1 || part.GetDurationMs() < 0 {
				t.Fatalf("batch %d partition %+v: want executor e1, attempts ≥ 1", p.GetBatchId(), part)
			}
		}
	}
	last, err := c.api.GetRecentProgress(ctx, &sluicev1.GetRecentProgressRequest{Name: "rp", Limit: 1})
	if err != nil || len(last.GetProgress()) != 1 {
		t.Fatalf("limit 1: %v, %d batches", err, len(last.GetProgress()))
	}

	// The same over HTTP (loopback, no auth configured: open).
	h := c.d.httpHandler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/jobs/rp/progress?limit=2", nil))
	var viaHTTP sluicev1.GetRecentProgressResponse
	if err := protojson.Unmarshal(rec.Body.Bytes(), &viaHTTP); err != nil || rec.Code != http.StatusOK || len(viaHTTP.GetProgress()) != 2 {
		t.Fatalf("GET progress: status %d, %v, body %.200s", rec.Code, err, rec.Body.String())
	}

	if _, err := c.api.ResumeJob(ctx, &sluicev1.ResumeJobRequest{Name: "rp"}); code(err) != codes.FailedPrecondition {
		t.Fatalf("resume a running job: %v, want FailedPrecondition", err)
	}
	if _, err := c.api.ResumeJob(ctx, &sluicev1.ResumeJobRequest{Name: "nope"}); code(err) != codes.NotFound {
		t.Fatalf("resume an unknown job: %v, want NotFound", err)
	}
	stopReq := httptest.NewRequest("POST", "/api/v1/jobs/rp/stop", nil)
	stopReq.Header.Set(actionHeader, "1")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, stopReq)
	if rec.Code != http.StatusOK {
		t.Fatalf("POST stop: %d %s", rec.Code, rec.Body.String())
	}
	stopped := waitState(t, c.api, "rp", sluicev1.JobState_JOB_STATE_STOPPED)
	if stopped.GetCurrent() != nil {
		t.Fatalf("a stopped job shows a batch in flight: %v", stopped.GetCurrent())
	}
	resumeReq := httptest.NewRequest("POST", "/api/v1/jobs/rp/resume", nil)
	resumeReq.Header.Set(actionHeader, "1")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, resumeReq)
	if rec.Code != http.StatusOK {
		t.Fatalf("POST resume: %d %s", rec.Code, rec.Body.String())
	}
	from := stopped.GetLastCommittedBatch()
	waitFor(t, "a batch after the resume", func() error {
		j, err := c.api.GetJob(ctx, &sluicev1.GetJobRequest{Name: "rp"})
		if err != nil {
			return err
		}
		if j.GetLastCommittedBatch() <= from {
			return fmt.Errorf("last committed batch %d, state %s", j.GetLastCommittedBatch(), j.GetState())
		}
		return nil
	})
	// Every record once: the resume read on from the checkpoint.
	waitFor(t, "all 400 records", func() error {
		got := ids(t, out, "rp")
		if len(got) != 400 {
			return fmt.Errorf("%d ids", len(got))
		}
		for id, n := range got {
			if n != 1 {
				return fmt.Errorf("id %d written %d times", id, n)
			}
		}
		return nil
	})
}
