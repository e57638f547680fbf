package webui

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/sluicehq/sluice/internal/testenv"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// The browser tests load the UI in headless Chromium against fakeAPI. They
// wait for DOM conditions (testenv.WaitJS), never for time, and save a
// screenshot of each page, desktop and phone, in $SLUICE_ARTIFACTS/ui.

// page is one browser tab on the fixture server.
type page struct {
	t   *testing.T
	ctx context.Context
	api *fakeAPI
	url string
}

func openUI(t *testing.T, role string, configure ...func(*fakeAPI)) *page {
	t.Helper()
	f := newFakeAPI(role)
	for _, c := range configure {
		c(f)
	}
	srv := f.server(t)
	return &page{t: t, ctx: testenv.NewBrowser(t), api: f, url: srv.URL + "/ui/"}
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.t.Fatal(err)
	}
}

// open loads the UI at the route (a hash such as "#/executors").
func (p *page) open(route string) {
	p.t.Helper()
	p.do(chromedp.Navigate(p.url + route))
}

func (p *page) wait(expr, what string) {
	p.t.Helper()
	testenv.WaitJS(p.t, p.ctx, expr, what)
}

// eval evaluates expr in the page and decodes its JSON value into T.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// click clicks the first element matching the CSS selector, in one step in
// the page: the tables are rebuilt at every poll, so a node found by one
// protocol call may be gone at the next.
func (p *page) click(selector string) {
	p.t.Helper()
	p.wait(fmt.Sprintf(`!!document.querySelector(%q)`, selector), "element "+selector)
	sel, _ := json.Marshal(selector)
	if !eval[bool](p, fmt.Sprintf(`(() => { const el = document.querySelector(%s); if (!el) return false; el.click(); return true })()`, sel)) {
		p.t.Fatalf("click %s: no such element", selector)
	}
}

func (p *page) text(selector string) string {
	p.t.Helper()
	sel, _ := json.Marshal(selector)
	return eval[string](p, fmt.Sprintf(`(document.querySelector(%s) || {}).textContent || ""`, sel))
}

func (p *page) count(selector string) int {
	p.t.Helper()
	sel, _ := json.Marshal(selector)
	return eval[int](p, fmt.Sprintf(`document.querySelectorAll(%s).length`, sel))
}

// phone switches the tab to a 390x844 phone and waits until the charts are
// drawn for its width; desktop switches back to 1280x800.
func (p *page) phone() {
	p.t.Helper()
	p.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulatePortrait, chromedp.EmulateScale(2)))
	p.wait(`innerWidth === 390`, "the phone viewport")
	p.wait(`[...document.querySelectorAll('figure.chart svg[width]')].every(s => +s.getAttribute('width') <= 390)`, "charts redrawn for the phone")
}

func (p *page) desktop() {
	p.t.Helper()
	p.do(chromedp.EmulateViewport(1280, 800))
	p.wait(`innerWidth === 1280`, "the desktop viewport")
}

// noHorizontalScroll fails when the page is wider than the viewport (wide
// tables must scroll inside their panel, not move the page).
func (p *page) noHorizontalScroll(where string) {
	p.t.Helper()
	p.wait(`document.documentElement.scrollWidth <= innerWidth`, where+" fitting the viewport without horizontal scrolling")
}

func (p *page) screenshot(name string) {
	p.t.Helper()
	testenv.Screenshot(p.t, p.ctx, name)
}

const (
	rowsSelector = `[data-testid=job-row]`
	jobsListed   = `document.querySelectorAll('[data-testid=job-row]').length === 2`
)

func rowOf(job string) string { return fmt.Sprintf(`[data-testid=job-row][data-job=%q]`, job) }

func TestJobsPage(t *testing.T) {
	p := openUI(t, "operator")
	p.open("")
	p.wait(jobsListed, "both jobs listed")
	p.wait(`document.body.dataset.poll === 'scheduled'`, "the first poll done")

	if got := eval[[]string](p, `[...document.querySelectorAll('[data-testid=job-row]')].map(r => r.dataset.job + ' ' + r.dataset.state)`); strings.Join(got, ", ") != "clicks-archive RETRYING, orders-enrich RUNNING" {
		t.Errorf("jobs and states: %q", got)
	}
	for _, tt := range []struct{ job, testid, want string }{
		{runningJob, "job-state", "RUNNING"},
		{runningJob, "job-trigger", "processingTime 2s"},
		{runningJob, "job-source", "Kafkaorders"},
		{runningJob, "job-sink", "PostgreSQLpublic.orders_enriched"},
		{runningJob, "job-lag", "5,607 records · 1 min 2 s behind"},
		{runningJob, "job-input-rate", "2,109 rows/s"}, // batch 41: (4000 + 41*737 % 2500) rows in 2 s
		{retryingJob, "job-state", "RETRYING"},
		{retryingJob, "retry-cause", "cause: sink s3: PutObject"},
		{retryingJob, "job-source", "Kinesisclicks"},
		{retryingJob, "job-sink", "S3s3://archive/clicks/"},
		{retryingJob, "job-lag", "4.0 s behind"},
	} {
		if got := p.text(rowOf(tt.job) + ` [data-testid=` + tt.testid + `]`); !strings.HasPrefix(got, tt.want) {
			t.Errorf("%s %s: %q, want it to start with %q", tt.job, tt.testid, got, tt.want)
		}
	}
	if got := p.text(rowOf(retryingJob) + ` [data-testid=retry-note]`); !strings.HasPrefix(got, "attempt 3 · next attempt in ") {
		t.Errorf("retry note %q", got)
	}
	if got := p.text(rowOf(runningJob) + ` [data-testid=job-last-batch]`); !strings.Contains(got, "#41") || !strings.Contains(got, "#42 running: 2/4 tasks") {
		t.Errorf("last batch %q", got)
	}
	// An operator may stop a running job and resume neither; only an admin deletes.
	if got := eval[[]string](p, `[...document.querySelectorAll('[data-testid=job-row] button')].map(b => b.dataset.job + ' ' + b.dataset.action)`); strings.Join(got, ", ") != "clicks-archive stop, orders-enrich stop" {
		t.Errorf("operator's actions: %q", got)
	}
	if got := p.text(`#principal`); got != "alice · operator" {
		t.Errorf("principal %q", got)
	}
	p.noHorizontalScroll("the jobs page")
	p.screenshot("jobs-desktop")

	p.phone()
	p.noHorizontalScroll("the jobs page on a phone")
	p.screenshot("jobs-phone")
}

func TestJobPage(t *testing.T) {
	p := openUI(t, "admin")
	p.open("#/jobs/" + runningJob)
	p.wait(`document.querySelectorAll('[data-testid=partition-row]').length === 4`, "the partitions")

	if got := p.text(`[data-testid=job-name]`); got != runningJob {
		t.Errorf("title %q", got)
	}
	// Charts: one mark per batch, 22 to 41.
	for _, id := range []string{"chart-input-rate", "chart-process-rate", "chart-input-rows", "chart-duration"} {
		pts := eval[[]int](p, fmt.Sprintf(`[...document.querySelectorAll('#%s [data-testid=point]')].map(e => +e.dataset.batch)`, id))
		if len(pts) != 20 || pts[0] != 22 || pts[19] != 41 {
			t.Errorf("%s: points for batches %v, want 22 to 41", id, pts)
		}
	}
	if n := p.count(`#chart-input-rate circle.pt`); n != 20 {
		t.Errorf("input rate: %d circles", n)
	}
	if n := p.count(`#chart-input-rate path.line`); n != 1 {
		t.Errorf("input rate: %d lines", n)
	}
	if got := eval[[]string](p, `[...new Set([...document.querySelectorAll('#chart-duration rect[data-phase]')].map(r => r.dataset.phase))]`); strings.Join(got, ",") != "plan,record,dispatch,execute,commit" {
		t.Errorf("duration chart phases %v", got)
	}
	if got := eval[[]float64](p, `[...document.querySelectorAll('#chart-input-rows [data-testid=point]')].slice(-1).map(e => +e.dataset.value)`); len(got) != 1 || got[0] != float64(4000+(41*737)%2500) {
		t.Errorf("input rows of batch 41: %v", got)
	}

	// Lag per partition, in records and in time.
	type part struct {
		Partition, Records, Ms, RecText, MsText string
	}
	parts := eval[[]part](p, `[...document.querySelectorAll('[data-testid=partition-row]')].map(r => ({Partition: r.dataset.partition, Records: r.dataset.records, Ms: r.dataset.ms,
		RecText: r.querySelector('[data-testid=lag-records]').textContent, MsText: r.querySelector('[data-testid=lag-ms]').textContent}))`)
	want := []part{
		{"orders/0", "120", "1500", "120", "1.5 s"},
		{"orders/1", "4500", "62000", "4,500", "1 min 2 s"},
		{"orders/2", "0", "0", "0", "0 ms"},
		{"orders/3", "987", "9800", "987", "9.8 s"},
	}
	if fmt.Sprint(parts) != fmt.Sprint(want) {
		t.Errorf("partitions\n got %v\nwant %v", parts, want)
	}
	if got := p.text(`[data-testid=lag-total-value]`); got != "5,607 records · 1 min 2 s behind" {
		t.Errorf("total lag %q", got)
	}
	if got := p.text(`[data-testid=metric-maxMsBehindLatest]`); got != "1 min 2 s" {
		t.Errorf("maxMsBehindLatest %q", got)
	}

	// Tasks of the last 5 batches, newest first, with the retried one.
	if n := p.count(`[data-testid=task-row]`); n != 20 {
		t.Errorf("%d task rows, want 5 batches x 4 partitions", n)
	}
	if got := p.text(`[data-testid=task-row][data-batch="41"][data-partition="orders/1"]`); !strings.Contains(got, "exec-b") {
		t.Errorf("task 41 orders/1: %q", got)
	}
	if got := p.text(`[data-testid=task-row][data-attempts="2"]`); !strings.HasPrefix(got, "#40orders/2") || !strings.Contains(got, "2 (retried)") {
		t.Errorf("retried task: %q", got)
	}

	// The batch in flight.
	if got := eval[[]float64](p, `(() => { const b = document.querySelector('[data-testid=current-progress]'); return [b.value, b.max] })()`); fmt.Sprint(got) != "[2 4]" {
		t.Errorf("progress bar value and max %v", got)
	}
	if got := p.text(`[data-testid=current]`); !strings.Contains(got, "Batch #42") || !strings.Contains(got, "execute") || !strings.Contains(got, "1 task retries") {
		t.Errorf("batch in flight %q", got)
	}

	// Spec, checkpoints, errors, actions.
	spec := p.text(`[data-testid=job-spec]`)
	for _, want := range []string{`"subscribe": [`, `"sasl.password": "*****"`, `"processingTime": "2s"`, `"table": "public.orders_enriched"`} {
		if !strings.Contains(spec, want) {
			t.Errorf("spec lacks %s:\n%s", want, spec)
		}
	}
	if strings.Contains(spec, `"assign"`) {
		t.Errorf("the spec shows fields left empty:\n%s", spec)
	}
	p.click(`[data-testid=spec-defaults]`)
	p.wait(`document.querySelector('[data-testid=job-spec]').textContent.includes('"assign": ""')`, "the spec with its defaults")
	if got := p.text(`#job-overview [data-testid=job-checkpoint]`); !strings.HasPrefix(got, "The driver's store (etcd)") {
		t.Errorf("checkpoint %q", got)
	}
	if got := p.text(`[data-testid=error-recent]`); !strings.Contains(got, "connection reset by peer") {
		t.Errorf("recent errors %q", got)
	}
	if got := eval[[]string](p, `[...document.querySelectorAll('#job-actions button')].map(b => b.dataset.action)`); strings.Join(got, ",") != "stop,delete" {
		t.Errorf("admin's actions on a running job: %v", got)
	}
	p.noHorizontalScroll("the job page")
	p.screenshot("job-running-desktop")
	p.phone()
	p.noHorizontalScroll("the job page on a phone")
	p.screenshot("job-running-phone")

	// The retrying job: its cause, its own checkpoint store, shard lag in ms.
	p.desktop()
	p.open("#/jobs/" + retryingJob)
	p.wait(`document.querySelectorAll('[data-testid=partition-row]').length === 2`, "the shards")
	if got := p.text(`#job-note [data-testid=retry-cause]`); got != "cause: "+retryCause {
		t.Errorf("cause %q", got)
	}
	if got := p.text(`#job-overview [data-testid=job-checkpoint]`); !strings.HasPrefix(got, "DynamoDB table sluice_checkpoints (eu-west-1) · keeps the last 50 batches") {
		t.Errorf("checkpoint %q", got)
	}
	if got := p.text(`[data-testid=error-restart]`); !strings.Contains(got, "Restart attempt 3") {
		t.Errorf("restart %q", got)
	}
	if got := p.text(`[data-testid=error-recent]`); !strings.Contains(got, "seen 3 times in a row") {
		t.Errorf("recent error %q", got)
	}
	if n := p.count(`[data-testid=lag-records]`); n != 0 {
		t.Errorf("Kinesis shards show %d record lags", n)
	}
	if got := p.text(`[data-testid=partition-row] [data-testid=lag-ms]`); got != "4.0 s" {
		t.Errorf("shard lag %q", got)
	}
	if n := p.count(`[data-testid=no-current]`); n != 1 {
		t.Error("a retrying job shows a batch in flight")
	}
	p.screenshot("job-retrying-desktop")
}

func TestExecutorsPage(t *testing.T) {
	p := openUI(t, "viewer")
	p.open("#/executors")
	p.wait(`document.querySelectorAll('[data-testid=executor-row]').length === 2`, "both executors")
	type row struct{ ID, Slots, Running, Completed, Failed, Heartbeat string }
	got := eval[[]row](p, `[...document.querySelectorAll('[data-testid=executor-row]')].map(r => ({ID: r.dataset.executor,
		Slots: r.querySelector('[data-testid=executor-slots]').textContent, Running: r.querySelector('[data-testid=executor-running]').textContent,
		Completed: r.querySelector('[data-testid=executor-completed]').textContent, Failed: r.querySelector('[data-testid=executor-failed]').textContent,
		Heartbeat: r.querySelector('[data-testid=executor-heartbeat] time') ? 'time' : ''}))`)
	want := []row{{"exec-a", "4", "2", "1,184", "0", "time"}, {"exec-b", "4", "1", "1,093", "3", "time"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("executors\n got %v\nwant %v", got, want)
	}
	if got := p.text(`[data-testid=executors-summary]`); got != "2 executors · 3 of 8 slots busy" {
		t.Errorf("summary %q", got)
	}
	if got := eval[string](p, `document.querySelector('#nav-executors').getAttribute('aria-current')`); got != "page" {
		t.Errorf("nav aria-current %q", got)
	}
	p.screenshot("executors-desktop")
	p.phone()
	p.noHorizontalScroll("the executors page on a phone")
	p.screenshot("executors-phone")
}

// A new batch and a state change show up without reloading the page.
func TestPagesUpdateThemselves(t *testing.T) {
	p := openUI(t, "operator")
	p.open("#/jobs/" + runningJob)
	p.wait(`document.querySelector('#chart-input-rate svg')?.dataset.lastBatch === '41'`, "the chart up to batch 41")
	eval[bool](p, `window.notReloaded = true`)

	b := p.api.commitBatch()
	p.wait(fmt.Sprintf(`document.querySelector('#chart-input-rate svg')?.dataset.lastBatch === '%d'`, b), "the new batch in the chart")
	if n := p.count(`#chart-input-rate circle.pt`); n != 21 {
		t.Errorf("%d points after one more batch, want 21", n)
	}
	p.wait(`document.querySelector('[data-testid=current]')?.dataset.batch === '43'`, "the next batch in flight")
	if got := eval[[]string](p, `[...document.querySelectorAll('[data-testid=current] .phases li')].map(l => l.className + ':' + l.textContent)`); strings.Join(got, " ") != "done:plan now:record :execute :commit" {
		t.Errorf("phases of a batch recording its plan: %v", got)
	}
	if got := p.text(`[data-testid=task-row]`); !strings.HasPrefix(got, fmt.Sprintf("#%d", b)) {
		t.Errorf("newest task row %q", got)
	}

	p.api.set(func(f *fakeAPI) { f.jobs[runningJob].State = sluicev1.JobState_JOB_STATE_FINISHED })
	p.wait(`document.querySelector('#job-badge [data-testid=job-state]')?.textContent === 'FINISHED'`, "the new state")
	if !eval[bool](p, `window.notReloaded === true`) {
		t.Error("the page reloaded")
	}
	// Finished: resume instead of stop.
	p.wait(`[...document.querySelectorAll('#job-actions button')].map(b => b.dataset.action).join() === 'resume'`, "resume offered")
}

// Polling stops while the tab is hidden and starts again when it shows.
func TestPollingPausesWhileHidden(t *testing.T) {
	p := openUI(t, "viewer")
	p.open("")
	p.wait(jobsListed, "the jobs")
	eval[bool](p, `(Object.defineProperty(document, 'hidden', {configurable: true, get: () => true}), document.dispatchEvent(new Event('visibilitychange')), true)`)
	p.wait(`document.body.dataset.poll === 'paused'`, "polling paused")
	if got := p.text(`#live-status`); got != "Paused while the tab is hidden" {
		t.Errorf("live status %q", got)
	}
	before := len(p.api.seen("GET", "/api/v1/jobs"))
	eval[bool](p, `(Object.defineProperty(document, 'hidden', {configurable: true, get: () => false}), document.dispatchEvent(new Event('visibilitychange')), true)`)
	p.wait(`document.querySelector('#live-status').textContent.startsWith('Live')`, "polling again")
	if after := len(p.api.seen("GET", "/api/v1/jobs")); after <= before {
		t.Errorf("no poll after the tab showed again (%d calls before, %d after)", before, after)
	}
}

func TestStopSendsTheActionHeader(t *testing.T) {
	p := openUI(t, "operator")
	p.open("")
	p.wait(jobsListed, "the jobs")
	p.click(rowOf(runningJob) + ` [data-testid=action-stop]`)
	p.wait(fmt.Sprintf(`document.querySelector(%q)?.dataset.state === 'STOPPED'`, rowOf(runningJob)), "the stopped state")

	calls := p.api.seen("POST", "/api/v1/jobs/"+runningJob+"/stop")
	if len(calls) != 1 || calls[0].Action != "1" {
		t.Fatalf("stop calls %+v, want one with X-Sluice-Action: 1", calls)
	}
	p.wait(fmt.Sprintf(`!!document.querySelector(%q)`, rowOf(runningJob)+` [data-testid=action-resume]`), "resume offered")

	// A refusal stays on screen until dismissed, even as polls succeed.
	p.api.set(func(f *fakeAPI) { f.role = "viewer" })
	p.click(rowOf(runningJob) + ` [data-testid=action-resume]`)
	p.wait(`!document.querySelector('#error-banner').hidden`, "the refusal")
	if got := p.text(`#error-banner`); !strings.Contains(got, "Not allowed to resume orders-enrich. alice has role viewer; this needs operator (HTTP 403)") {
		t.Errorf("banner %q", got)
	}
	p.wait(`document.querySelectorAll('[data-testid=job-row] button').length === 0`, "actions hidden for a viewer")
	if eval[bool](p, `document.querySelector('#error-banner').hidden`) {
		t.Error("a successful poll hid the refusal")
	}
	p.click(`#error-dismiss`)
	p.wait(`document.querySelector('#error-banner').hidden`, "the banner dismissed")
}

func TestDeleteAsksFirst(t *testing.T) {
	p := openUI(t, "admin")
	p.open("")
	p.wait(jobsListed, "the jobs")
	p.click(rowOf(retryingJob) + ` [data-testid=action-delete]`)
	p.wait(`document.querySelector('#confirm-dialog').open`, "the confirmation")
	if got := p.text(`#confirm-title`); got != "Delete job clicks-archive?" {
		t.Errorf("confirm title %q", got)
	}
	p.screenshot("delete-confirm")
	p.click(`#confirm-cancel`)
	p.wait(`!document.querySelector('#confirm-dialog').open`, "the confirmation closed")
	if calls := p.api.seen("DELETE", ""); len(calls) != 0 {
		t.Fatalf("cancel sent %+v", calls)
	}

	p.click(rowOf(retryingJob) + ` [data-testid=action-delete]`)
	p.wait(`document.querySelector('#confirm-dialog').open`, "the confirmation")
	p.click(`#confirm-ok`)
	p.wait(`document.querySelectorAll('[data-testid=job-row]').length === 1`, "the job gone")
	calls := p.api.seen("DELETE", "/api/v1/jobs/"+retryingJob)
	if len(calls) != 1 || calls[0].Action != "1" {
		t.Fatalf("delete calls %+v, want one with X-Sluice-Action: 1", calls)
	}
}

func TestViewerSeesNoActions(t *testing.T) {
	p := openUI(t, "viewer")
	p.open("")
	p.wait(jobsListed, "the jobs")
	if n := p.count(`[data-testid=job-row] button, th:last-child:not(:first-child)`); n != 1 {
		// the one match is the Lag column header; no Actions column
		t.Errorf("viewer: %d buttons or extra columns", n)
	}
	if n := p.count(`button[data-action]`); n != 0 {
		t.Errorf("viewer sees %d action buttons", n)
	}
	p.open("#/jobs/" + runningJob)
	p.wait(`document.querySelectorAll('[data-testid=partition-row]').length === 4`, "the job")
	if n := p.count(`button[data-action]`); n != 0 {
		t.Errorf("viewer sees %d action buttons on the job page", n)
	}
	p.screenshot("job-viewer-desktop")
}

func TestTokenPrompt(t *testing.T) {
	p := openUI(t, "operator", func(f *fakeAPI) { f.token = "s3cret" })
	p.open("")
	p.wait(`document.querySelector('#token-dialog').open`, "the token prompt")
	p.wait(`document.body.dataset.poll === 'signin'`, "polling held for the sign-in")
	p.screenshot("token-prompt")

	p.do(chromedp.SendKeys(chromedp.ID("token-input"), "wrong"), chromedp.Click(chromedp.ID("token-submit")))
	p.wait(`document.querySelector('#token-dialog').open && document.querySelector('#token-why').textContent.includes('refused')`, "the wrong token refused")
	eval[bool](p, `(document.getElementById('token-input').value = '', true)`)
	p.do(chromedp.SendKeys(chromedp.ID("token-input"), "s3cret"), chromedp.Click(chromedp.ID("token-submit")))
	p.wait(jobsListed, "the jobs after signing in")
	p.wait(`!document.querySelector('#token-dialog').open && document.querySelector('#error-banner').hidden`, "the prompt and banner gone")

	calls := p.api.seen("GET", "/api/v1/jobs")
	if last := calls[len(calls)-1]; last.Authorization != "Bearer s3cret" {
		t.Errorf("last call's Authorization %q", last.Authorization)
	}
	if got := eval[string](p, `sessionStorage.getItem('sluice.token')`); got != "s3cret" {
		t.Errorf("sessionStorage token %q", got)
	}
	// Actions carry the token too.
	p.click(rowOf(runningJob) + ` [data-testid=action-stop]`)
	p.wait(fmt.Sprintf(`document.querySelector(%q)?.dataset.state === 'STOPPED'`, rowOf(runningJob)), "the stopped state")
	if calls := p.api.seen("POST", ""); len(calls) != 1 || calls[0].Authorization != "Bearer s3cret" {
		t.Errorf("stop calls %+v", calls)
	}

	// Signing out forgets the token and offers signing in again, without
	// forcing the prompt open.
	p.click(`#signout`)
	p.wait(`!document.querySelector('#error-banner').hidden && !document.querySelector('#error-signin').hidden`, "the sign-in banner")
	if eval[bool](p, `document.querySelector('#token-dialog').open`) {
		t.Error("signing out opened the prompt")
	}
	if got := eval[string](p, `sessionStorage.getItem('sluice.token') || ''`); got != "" {
		t.Errorf("token %q kept after signing out", got)
	}
	p.wait(`[...document.querySelectorAll('button[data-action]')].every(b => b.hidden)`, "actions hidden once signed out")
}

// A driver without authentication (loopback or --insecure) allows every
// action and says so.
func TestWithoutAuthEverythingIsAllowed(t *testing.T) {
	p := openUI(t, "", func(f *fakeAPI) { f.authOff = true })
	p.open("")
	p.wait(jobsListed, "the jobs")
	if got := p.text(`#principal`); got != "No sign-in needed" {
		t.Errorf("principal %q", got)
	}
	if got := eval[[]string](p, fmt.Sprintf(`[...document.querySelectorAll(%q)].map(b => b.dataset.action)`, rowOf(runningJob)+" button")); strings.Join(got, ",") != "stop,delete" {
		t.Errorf("actions without auth: %v", got)
	}
}

func TestErrorBanner(t *testing.T) {
	p := openUI(t, "viewer")
	p.open("#/executors")
	p.wait(`document.querySelectorAll('[data-testid=executor-row]').length === 2`, "the executors")
	p.api.set(func(f *fakeAPI) {
		f.fail = &apiError{status: 412, Code: "FAILED_PRECONDITION", Message: "not the leader; the leader is 10.0.0.6:7070", LeaderHTTP: "http://10.0.0.6:8080"}
	})
	p.wait(`!document.querySelector('#error-banner').hidden`, "the error banner")
	if got := p.text(`#error-message`); got != "FAILED_PRECONDITION: not the leader; the leader is 10.0.0.6:7070 (HTTP 412)" {
		t.Errorf("banner message %q", got)
	}
	if got := eval[string](p, `document.querySelector('#error-leader').href`); got != "http://10.0.0.6:8080/ui/#/executors" {
		t.Errorf("leader link %q", got)
	}
	if n := p.count(`[data-testid=executor-row]`); n != 2 {
		t.Errorf("the last answer's %d rows should stay on screen", n)
	}
	p.screenshot("error-banner")
	p.api.set(func(f *fakeAPI) { f.fail = nil })
	p.wait(`document.querySelector('#error-banner').hidden`, "the banner gone after recovery")
}

// Every text meets WCAG AA contrast (4.5:1, 3:1 when large) and every chart
// mark 3:1 against what is behind it, in the light and the dark theme.
func TestColourContrast(t *testing.T) {
	p := openUI(t, "admin")
	for _, scheme := range []string{"light", "dark"} {
		p.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
			return err
		}))
		for _, route := range []string{"", "#/jobs/" + runningJob, "#/jobs/" + retryingJob, "#/executors"} {
			p.open(route)
			p.wait(fmt.Sprintf(`matchMedia('(prefers-color-scheme: %s)').matches`, scheme), scheme+" scheme")
			p.wait(`document.body.dataset.poll === 'scheduled' && !document.querySelector('main .empty:only-child')?.textContent.startsWith('Loading')`, "the page drawn")
			p.wait(`document.querySelector('#live-status').classList.contains('on')`, "the page live")
			bad := eval[[]string](p, contrastJS)
			for _, b := range bad {
				t.Errorf("%s %s: %s", scheme, route, b)
			}
		}
		if scheme == "dark" {
			p.open("#/jobs/" + runningJob)
			p.wait(`document.querySelectorAll('[data-testid=partition-row]').length === 4`, "the job")
			p.screenshot("job-running-dark")
		}
	}
}

// contrastJS lists the elements whose text, or chart marks, are below WCAG
// AA contrast against their composited background.
const contrastJS = `(() => {
  const parse = (c) => {
    const m = /rgba?\(([^)]+)\)/.exec(c || '');
    if (!m) return null;
    const v = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return { r: v[0], g: v[1], b: v[2], a: v.length > 3 ? v[3] : 1 };
  };
  const over = (top, under, alpha = 1) => {
    const a = top.a * alpha;
    return { r: top.r * a + under.r * (1 - a), g: top.g * a + under.g * (1 - a), b: top.b * a + under.b * (1 - a), a: 1 };
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const ratio = (x, y) => { const [a, b] = [lum(x), lum(y)].sort((p, q) => q - p); return (a + 0.05) / (b + 0.05); };
  const chain = (el) => { const out = []; for (let e = el; e; e = e.parentElement) out.unshift(e); return out; };
  const background = (el) => {
    let bg = { r: 255, g: 255, b: 255, a: 1 };
    for (const e of chain(el)) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) bg = over(c, bg);
    }
    return bg;
  };
  const opacity = (el) => chain(el).reduce((o, e) => o * +getComputedStyle(e).opacity, 1);
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : '') + ' "' + el.textContent.trim().slice(0, 40) + '"';
  const bad = [];
  const seen = new Set();
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walk.nextNode()) {
    const el = walk.currentNode.parentElement;
    if (!walk.currentNode.textContent.trim() || seen.has(el)) continue;
    seen.add(el);
    if (el.closest('title, .visually-hidden, noscript, dialog:not([open])')) continue;
    const cs = getComputedStyle(el);
    if (!el.getClientRects().length || cs.visibility === 'hidden') continue;
    const fg = parse(el instanceof SVGElement ? cs.fill : cs.color);
    const bg = background(el);
    const r = ratio(over(fg, bg, opacity(el)), bg);
    const size = parseFloat(cs.fontSize);
    const large = size >= 24 || (size >= 18.66 && +cs.fontWeight >= 700);
    if (r < (large ? 3 : 4.5)) bad.push(name(el) + ': ' + r.toFixed(2) + ':1');
  }
  for (const sel of ['circle.pt.rate', 'circle.pt.proc', 'rect.bar.rows', 'rect.bar.lag', '.s-plan', '.s-record', '.s-dispatch', '.s-execute', '.s-commit', 'path.line.rate', 'path.line.proc']) {
    const el = document.querySelector('main ' + sel);
    if (!el) continue;
    const cs = getComputedStyle(el);
    const fg = parse(el.tagName === 'path' ? cs.stroke : cs.fill);
    const bg = background(el.closest('figure, td, li') || el);
    const r = ratio(over(fg, bg), bg);
    if (r < 3) bad.push('chart mark ' + sel + ': ' + r.toFixed(2) + ':1');
  }
  return bad;
})()`

// TestJobPageState: a stateful job's overview shows its state store and
// event time after the last batch; a stateless job's shows neither.
func TestJobPageState(t *testing.T) {
	p := openUI(t, "viewer", func(f *fakeAPI) {
		lp := f.jobs[runningJob].LastProgress
		lp.StateOperators = []*sluicev1.StateOperatorProgress{{OperatorName: "stateStoreSave", NumRowsTotal: 1234, NumRowsUpdated: 56,
			MemoryUsedBytes: 12_897_485, StateOnDiskBytes: 47_815_065, NumRowsDroppedByWatermark: 17, CommitTimeMs: 12,
			RestoreTimeMs: 340, NumRestoredPartitions: 2, NumShufflePartitions: 16}}
		lp.EventTime = map[string]string{"max": "2026-12-05T08:00:00Z", "watermark": "2026-12-05T07:59:50Z"}
	})
	p.open("#/jobs/" + runningJob)
	p.wait(`!!document.querySelector('[data-testid=job-state-store]')`, "the state store")
	if got, want := p.text(`[data-testid=job-state-store]`),
		"1,234 groups (56 updated) in 16 partitions · 12.3 MiB in memory · 45.6 MiB on disk · commit 12 ms · restored 2 partitions in 340 ms · 17 late rows dropped"; got != want {
		t.Errorf("state store\n got %q\nwant %q", got, want)
	}
	if got := eval[[]string](p, `[...document.querySelectorAll('[data-testid=job-event-time] time')].map(e => e.getAttribute('datetime'))`); strings.Join(got, ",") != "2026-12-05T08:00:00.000Z,2026-12-05T07:59:50.000Z" {
		t.Errorf("event times %v", got)
	}
	if got := p.text(`[data-testid=job-event-time]`); !strings.HasPrefix(got, "max ") || !strings.Contains(got, " · watermark ") {
		t.Errorf("event time %q", got)
	}
	p.screenshot("job-stateful-desktop")

	p.open("#/jobs/" + retryingJob)
	p.wait(`document.querySelectorAll('[data-testid=partition-row]').length === 2`, "the shards")
	if n := p.count(`[data-testid=job-state-store], [data-testid=job-event-time]`); n != 0 {
		t.Errorf("a stateless job shows %d state facts", n)
	}
}
