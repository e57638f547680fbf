package driver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// TestListJobsPages: ListJobs pages through the jobs in name order
// (AIP-158): a page holds page_size jobs, next_page_token leads to the rest
// and is empty on the last page, a job submitted between pages shows up in
// its place without repeating others, and bad sizes and tokens are
// InvalidArgument. The JSON API takes pageSize and pageToken.
func TestListJobsPages(t *testing.T) {
	dir := t.TempDir()
	_, brokers := kafkaWith(t, "pages", 1, 0)
	c := startClusterWith(t, filepath.Join(dir, "ckpt"), 0)
	ctx := context.Background()
	submit := func(name string) {
		t.Helper()
		if _, err := c.api.SubmitJob(ctx, &sluicev1.SubmitJobRequest{Spec: spec(name, brokers, "pages", filepath.Join(dir, name), fast)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"j4", "j1", "j5", "j2"} {
		submit(n)
	}
	page := func(size int32, token string) ([]string, string) {
		t.Helper()
		resp, err := c.api.ListJobs(ctx, &sluicev1.ListJobsRequest{PageSize: size, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, j := range resp.GetJobs() {
			names = append(names, j.GetName())
		}
		return names, resp.GetNextPageToken()
	}
	first, tok := page(2, "")
	if fmt.Sprint(first) != "[j1 j2]" || tok == "" {
		t.Fatalf("first page %v, token %q", first, tok)
	}
	submit("j3") // after the first page's last name: the next page holds it
	second, tok := page(2, tok)
	if fmt.Sprint(second) != "[j3 j4]" || tok == "" {
		t.Fatalf("second page %v, token %q", second, tok)
	}
	last, tok := page(2, tok)
	if fmt.Sprint(last) != "[j5]" || tok != "" {
		t.Fatalf("last page %v, token %q", last, tok)
	}
	if all, tok := page(0, ""); len(all) != 5 || tok != "" {
		t.Fatalf("default page %v, token %q", all, tok)
	}
	for _, req := range []*sluicev1.ListJobsRequest{{PageSize: -1}, {PageToken: "not-a-token"}} {
		if _, err := c.api.ListJobs(ctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("ListJobs(%v) = %v, want InvalidArgument", req, err)
		}
	}

	rec := httptest.NewRecorder()
	c.d.httpHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/jobs?pageSize=3", nil))
	body := rec.Body.Bytes()
	var got struct {
		Jobs          []struct{ Name string }
		NextPageToken string
	}
	if err := json.Unmarshal(body, &got); err != nil || len(got.Jobs) != 3 || got.NextPageToken == "" {
		t.Fatalf("GET /api/v1/jobs?pageSize=3: %s (%v)", body, err)
	}
}
