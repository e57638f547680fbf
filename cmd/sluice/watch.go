package main

// `sluice watch JOB` follows a job through the WatchJob stream until the job
// ends. On a terminal it redraws one screen on every event and once a second
// (render); piped, it writes one line per state change and per committed
// batch (plainView; a stateful job's batch adds indented lines for its
// state), never one per in-flight update, so that logs stay readable while
// the driver streams the batch in flight several times a second.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// ANSI sequences of the live view; nothing beyond what every VT100
// descendant understands.
const (
	ansiHome       = "\x1b[H"
	ansiClear      = "\x1b[2J"
	ansiClearEOL   = "\x1b[K"
	ansiClearBelow = "\x1b[J"
	ansiHideCursor = "\x1b[?25l"
	ansiShowCursor = "\x1b[?25h"
)

func watch(ctx context.Context, c *client, name string, out io.Writer) error {
	var v view = &plainView{out: out}
	var tick <-chan time.Time
	if fd, ok := terminalOf(out); ok {
		v = &liveView{out: out, size: func() (int, int, error) { return term.GetSize(fd) }}
		t := time.NewTicker(time.Second)
		defer t.Stop()
		tick = t.C
	}
	// The cursor is shown again whatever ends the watch: the job's end,
	// Ctrl-C (ctx), or an error, which main prints below the screen.
	defer v.close()
	return c.call(ctx, func(_ context.Context, d sluicev1.DriverServiceClient) error {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := d.WatchJob(sctx, &sluicev1.WatchJobRequest{Name: name})
		if err != nil {
			cancel()
			return err
		}
		return follow(sctx, cancel, stream.Recv, v, tick, time.Now)
	})
}

// terminalOf is out's file descriptor when out is a terminal that can take
// the live view.
func terminalOf(out io.Writer) (int, bool) {
	f, ok := out.(*os.File)
	if !ok || os.Getenv("TERM") == "dumb" {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

// view shows a watched job: event for each message of the stream, tick once
// a second (so that elapsed times move between events), close once at the
// end.
type view interface {
	event(ev *sluicev1.JobEvent, now time.Time)
	tick(now time.Time)
	close()
}

// follow feeds the events recv returns to v until the job reaches a terminal
// state, the stream ends, or ctx is done (Ctrl-C), which all return nil;
// another error of recv is returned as it is, so that the client can follow
// a follower's redirect to the leader. cancel must make recv return (it
// cancels the stream's context): follow calls it and waits for its receiving
// goroutine before returning.
func follow(ctx context.Context, cancel context.CancelFunc, recv func() (*sluicev1.JobEvent, error), v view, tick <-chan time.Time, now func() time.Time) error {
	type received struct {
		ev  *sluicev1.JobEvent
		err error
	}
	events := make(chan received)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			ev, err := recv()
			select {
			case events <- received{ev, err}:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		close(stop)
		<-stopped
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-tick:
			v.tick(t)
		case r := <-events:
			if errors.Is(r.err, io.EOF) || status.Code(r.err) == codes.Canceled {
				return nil
			}
			if r.err != nil {
				return r.err
			}
			v.event(r.ev, now())
			if terminal(r.ev.GetJob().GetState()) {
				return nil
			}
		}
	}
}

func terminal(s sluicev1.JobState) bool {
	switch s {
	case sluicev1.JobState_JOB_STATE_STOPPED, sluicev1.JobState_JOB_STATE_FINISHED, sluicev1.JobState_JOB_STATE_FAILED:
		return true
	}
	return false
}

// plainView writes a line when the job's state, error or restart attempt
// changes, and one per committed batch. Updates of the batch in flight
// write nothing.
type plainView struct {
	out     io.Writer
	started bool
	state   sluicev1.JobState
	err     string
	attempt int32
	batch   int64
}

func (p *plainView) event(ev *sluicev1.JobEvent, now time.Time) {
	j := ev.GetJob()
	if !p.started || j.GetState() != p.state || j.GetLastError() != p.err || j.GetRestart().GetAttempt() != p.attempt {
		fmt.Fprintf(p.out, "%s  job %s %s", now.Format(time.TimeOnly), j.GetName(), stateAt(j, now))
		if j.GetLastError() != "" {
			fmt.Fprintf(p.out, ": %s", oneLine(j.GetLastError()))
		}
		fmt.Fprintln(p.out)
		p.state, p.err, p.attempt = j.GetState(), j.GetLastError(), j.GetRestart().GetAttempt()
	}
	// A line for the batch of the event, or else for the job's last batch
	// when it is new: the driver drops events for a watcher that falls
	// behind, and the next event still carries the last batch. The first
	// event only sets where the watch starts.
	last := j.GetLastProgress()
	switch b := ev.GetBatch(); {
	case !p.started:
		p.batch = -1
		if last != nil {
			p.batch = last.GetBatchId()
		}
		if b != nil && b.GetBatchId() > p.batch {
			p.batch = b.GetBatchId()
		}
	case b != nil && b.GetBatchId() > p.batch:
		p.progress(b)
	case b == nil && last != nil && last.GetBatchId() > p.batch:
		p.progress(last)
	}
	p.started = true
}

// progress writes the batch's line, and for a stateful job its state and
// event time on lines indented under it, so that a log still has one
// unindented line per batch.
func (p *plainView) progress(b *sluicev1.BatchProgress) {
	fmt.Fprintln(p.out, progressLine(b))
	for _, l := range progressDetails(b) {
		fmt.Fprintln(p.out, plainIndent+l)
	}
	p.batch = b.GetBatchId()
}

// plainIndent lines details up under the text after a line's time.
var plainIndent = strings.Repeat(" ", len(time.TimeOnly)+2)

func (p *plainView) tick(time.Time) {}
func (p *plainView) close()         {}

// liveView redraws the whole screen from the top on each event and tick.
// It takes over the terminal (clears it, hides the cursor) only on its first
// draw, so that an error before any event (a follower's redirect, an unknown
// job) leaves the terminal alone.
type liveView struct {
	out   io.Writer
	size  func() (width, height int, err error)
	job   *sluicev1.Job
	drawn bool
}

func (v *liveView) event(ev *sluicev1.JobEvent, now time.Time) {
	j := ev.GetJob()
	if j == nil {
		return
	}
	// A batch event whose job view lags behind it (it should not) still
	// shows the batch.
	if b := ev.GetBatch(); b != nil && (j.GetLastProgress() == nil || j.GetLastProgress().GetBatchId() < b.GetBatchId()) {
		j = proto.Clone(j).(*sluicev1.Job)
		j.LastProgress = b
	}
	v.job = j
	v.draw(now)
}

func (v *liveView) tick(now time.Time) {
	if v.job != nil {
		v.draw(now)
	}
}

func (v *liveView) close() {
	if v.drawn {
		io.WriteString(v.out, ansiShowCursor)
	}
}

func (v *liveView) draw(now time.Time) {
	width, height, err := v.size()
	if err != nil || width <= 0 {
		width, height = 80, 0
	}
	var screen bytes.Buffer
	// One column short of the edge: a line that fills the last column
	// leaves some terminals waiting to wrap, and the erase that follows
	// would take its last character.
	render(&screen, width-1, v.job, now)
	lines := strings.Split(strings.TrimSuffix(screen.String(), "\n"), "\n")
	// The last row stays empty: a newline there would scroll the screen.
	if height > 1 && len(lines) > height-1 {
		lines = lines[:height-1]
	}
	var b strings.Builder
	if !v.drawn {
		b.WriteString(ansiHideCursor + ansiClear)
		v.drawn = true
	}
	b.WriteString(ansiHome)
	for _, l := range lines {
		b.WriteString(l + ansiClearEOL + "\n")
	}
	b.WriteString(ansiClearBelow)
	io.WriteString(v.out, b.String())
}

// render writes the live view of job j at time now, no line wider than
// width columns (at least 24 are used). Times are shown in now's location.
//
//	job NAME  STATE [attempt, next try]                      clock
//	  cause / error
//
//	batch in flight: phase, elapsed, bar of tasks, running, retries, rows
//
//	last batch: rows and rates, duration by phase, lag
//
//	partitions most behind (top 5)
func render(w io.Writer, width int, j *sluicev1.Job, now time.Time) {
	s := &screen{width: max(width, 24)}
	s.flow("", "  ", append([]string{"job " + j.GetName()}, liveState(j, now)...))
	// The clock on the right of the first line, when there is room.
	clock := now.Format(time.TimeOnly)
	if pad := s.width - runes(s.lines[0]) - runes(clock); pad >= 2 {
		s.lines[0] += strings.Repeat(" ", pad) + clock
	}
	cause := j.GetRestart().GetCause()
	if j.GetState() == sluicev1.JobState_JOB_STATE_RETRYING && cause != "" {
		s.text("  cause  ", cause, 2)
	}
	if e := j.GetLastError(); e != "" && e != cause {
		s.text("  error  ", e, 3)
	}

	switch cur := j.GetCurrent(); {
	case cur != nil:
		s.add("")
		renderCurrent(s, cur, now)
	case !terminal(j.GetState()):
		s.add("")
		s.add("no batch in flight")
	}

	p := j.GetLastProgress()
	if p == nil || p.GetTimestamp() == nil {
		s.add("")
		s.add("no batch committed yet")
	} else {
		renderLast(s, p, now)
	}
	s.write(w)
}

func renderCurrent(s *screen, cur *sluicev1.BatchRun, now time.Time) {
	head := []string{fmt.Sprintf("batch %d in flight", cur.GetBatchId()), phaseText(cur.GetPhase())}
	if cur.GetStartTime() != nil {
		head = append(head, roundSeconds(now.Sub(cur.GetStartTime().AsTime())))
	}
	s.flow("", "  ", head)
	if total := cur.GetTasksTotal(); total > 0 {
		done := min(cur.GetTasksDone(), total)
		count := fmt.Sprintf("%d/%d tasks", done, total)
		// "  [" + bar + "]  " + count, the bar at most 50 wide and left out
		// when fewer than 10 columns remain for it.
		if bar := min(s.width-2-2-2-len(count), 50); bar >= 10 {
			s.add("  [" + progressBar(bar, int(done), int(total)) + "]  " + count)
		} else {
			s.add("  " + count)
		}
	}
	var items []string
	if cur.GetTasksTotal() > 0 || cur.GetTasksRunning() > 0 {
		items = append(items, fmt.Sprintf("%d running", cur.GetTasksRunning()))
	}
	if r := cur.GetTaskRetries(); r > 0 {
		items = append(items, plural(int64(r), "retry", "retries"))
	}
	if cur.GetPhase() == "execute" || cur.GetPhase() == "commit" {
		items = append(items, count(cur.GetInputRows())+" rows so far")
	}
	if len(items) > 0 {
		s.flow("  ", "  ", items)
	}
}

func renderLast(s *screen, p *sluicev1.BatchProgress, now time.Time) {
	s.add("")
	started := p.GetTimestamp().AsTime()
	head := []string{fmt.Sprintf("last batch %d", p.GetBatchId()),
		fmt.Sprintf("started %s, %s ago", started.In(now.Location()).Format(time.TimeOnly), roundSeconds(now.Sub(started)))}
	if ms, ok := p.GetDurationMs()["total"]; ok {
		head = append(head, "took "+millis(ms))
	}
	s.flow("", "  ", head)

	rows := []string{count(p.GetNumInputRows()) + " in"}
	if r := p.GetInputRowsPerSecond(); r > 0 {
		rows = append(rows, rate(r)+"/s in")
	}
	if r := p.GetProcessedRowsPerSecond(); r > 0 {
		rows = append(rows, rate(r)+"/s processed")
	}
	if r := p.GetTaskRetries(); r > 0 {
		rows = append(rows, plural(int64(r), "task retry", "task retries"))
	}
	if n := p.GetSkippedRows(); n > 0 {
		rows = append(rows, count(n)+" skipped")
	}
	if n := p.GetDeadLetteredRows(); n > 0 {
		rows = append(rows, count(n)+" dead-lettered")
	}
	s.flow("  rows  ", "        ", rows)

	var phases []string
	for _, phase := range []string{"plan", "record", "dispatch", "execute", "commit"} {
		if ms, ok := p.GetDurationMs()[phase]; ok {
			phases = append(phases, phase+" "+millis(ms))
		}
	}
	if len(phases) > 0 {
		s.flow("  time  ", "        ", phases)
	}

	// The lag the source reports: in offsets (Kafka) and in milliseconds
	// (Kinesis, and Kafka where brokers give the newest timestamps).
	m := p.GetMetrics()
	var lag []string
	if v, ok := m["maxMsBehindLatest"]; ok {
		lag = append(lag, "max "+millis(int64(v)))
		if avg, ok := m["avgMsBehindLatest"]; ok {
			lag = append(lag, "avg "+millis(int64(avg+0.5)))
		}
	}
	if v, ok := m["maxOffsetsBehindLatest"]; ok {
		lag = append(lag, "max "+count(int64(v))+" records")
		if avg, ok := m["avgOffsetsBehindLatest"]; ok {
			lag = append(lag, "avg "+count(int64(avg+0.5))+" records")
		}
	}
	if len(lag) > 0 {
		s.flow("  lag   ", "        ", lag)
	}
	if items := stateItems(p); len(items) > 0 {
		s.flow("  state ", "        ", items)
	}
	if items := eventTimeItems(p, func(v string) string { return eventClock(v, now) }); len(items) > 0 {
		s.flow("  event ", "        ", items)
	}
	renderBehind(s, p.GetPartitions())
}

// Per-partition figures of lag (PartitionProgress.metrics): in
// milliseconds as the Kinesis reader (millisBehindLatest) and the Kafka
// source (msBehindLatest) name them, and in offsets (Kafka).
var (
	partitionMsKeys     = []string{"millisBehindLatest", "msBehindLatest"}
	partitionOffsetsKey = "offsetsBehindLatest"
)

// topBehind is how many of the partitions most behind the live view lists.
const topBehind = 5

// renderBehind lists the partitions of the last batch most behind the
// latest record, by milliseconds, then offsets; nothing when none is
// behind. Columns: name, milliseconds and offsets where any partition has
// them, rows read. When the width is short the rows column goes first,
// then the offsets when there are milliseconds, before a name gets fewer
// than 8 columns.
func renderBehind(s *screen, parts []*sluicev1.PartitionProgress) {
	type row struct {
		name   string
		ms, of float64
		cells  [3]string // milliseconds, offsets, rows
	}
	var rows []row
	var has [3]bool
	for _, pp := range parts {
		r := row{name: pp.GetPartition(), ms: -1, of: -1}
		for _, k := range partitionMsKeys {
			if v, ok := pp.GetMetrics()[k]; ok {
				r.ms, r.cells[0], has[0] = v, millis(int64(v)), true
				break
			}
		}
		if v, ok := pp.GetMetrics()[partitionOffsetsKey]; ok {
			r.of, r.cells[1], has[1] = v, count(int64(v))+" records", true
		}
		if r.ms > 0 || r.of > 0 {
			r.cells[2], has[2] = count(pp.GetRecords())+" rows", true
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return
	}
	sort.SliceStable(rows, func(a, b int) bool {
		ra, rb := rows[a], rows[b]
		if ra.ms != rb.ms {
			return ra.ms > rb.ms
		}
		if ra.of != rb.of {
			return ra.of > rb.of
		}
		return ra.name < rb.name
	})
	rows = rows[:min(len(rows), topBehind)]
	nameW := 0
	var colW [3]int
	for _, r := range rows {
		nameW = max(nameW, runes(r.name))
		for c, cell := range r.cells {
			colW[c] = max(colW[c], len(cell))
		}
	}
	room := func() int {
		n := s.width - 2
		for c := range has {
			if has[c] {
				n -= 2 + colW[c]
			}
		}
		return n
	}
	for _, c := range []int{2, 1} {
		if room() < min(nameW, 8) && (c == 2 || has[0]) {
			has[c] = false
		}
	}
	nameW = max(min(nameW, room()), 1)
	s.add("")
	s.add("partitions most behind")
	for _, r := range rows {
		line := "  " + padRight(truncateLeft(r.name, nameW), nameW)
		for c, cell := range r.cells {
			if has[c] {
				line += fmt.Sprintf("  %*s", colW[c], cell)
			}
		}
		s.add(line)
	}
}

// screen collects the lines of the live view, each cut to width.
type screen struct {
	width int
	lines []string
}

func (s *screen) add(line string) { s.lines = append(s.lines, truncate(line, s.width)) }

// flow lays items out after first, separated by two spaces, starting a new
// line indented by more when the next item would pass the width.
func (s *screen) flow(first, more string, items []string) {
	line, n := first, 0
	for _, it := range items {
		if n > 0 && runes(line)+2+runes(it) > s.width {
			s.add(line)
			line, n = more, 0
		}
		if n > 0 {
			line += "  "
		}
		line += it
		n++
	}
	s.add(line)
}

// text wraps a message at spaces after label, on at most maxLines lines;
// the last one ends in "..." when the message is longer.
func (s *screen) text(label, msg string, maxLines int) {
	indent := strings.Repeat(" ", runes(label))
	room := max(s.width-runes(label), 8)
	words := strings.Fields(msg)
	line := ""
	for i := 0; i < maxLines && len(words) > 0; i++ {
		line = ""
		for len(words) > 0 {
			next := words[0]
			if line != "" {
				next = " " + next
			}
			if runes(line)+runes(next) > room && line != "" {
				break
			}
			line += next
			words = words[1:]
		}
		if i == maxLines-1 && len(words) > 0 {
			line = truncate(line+" "+strings.Join(words, " "), room)
		}
		if i == 0 {
			s.add(label + line)
		} else {
			s.add(indent + line)
		}
	}
}

func (s *screen) write(w io.Writer) {
	for _, l := range s.lines {
		fmt.Fprintln(w, l)
	}
}

// liveState is the state for the screen's first line: with the attempt and
// the time to the next try while RETRYING, with the attempt while the job
// runs again after a restart and has not yet committed.
func liveState(j *sluicev1.Job, now time.Time) []string {
	st := []string{state(j.GetState())}
	r := j.GetRestart()
	switch {
	case r == nil:
	case j.GetState() == sluicev1.JobState_JOB_STATE_RETRYING:
		st = append(st, fmt.Sprintf("attempt %d, next in %s", r.GetAttempt(), untilAt(r.GetNextAttemptTime().AsTime(), now)))
	case j.GetState() == sluicev1.JobState_JOB_STATE_RUNNING:
		st = append(st, fmt.Sprintf("after restart %d", r.GetAttempt()))
	}
	return st
}

// stateAt is the state, plus the restart attempt and the time to the next
// try while the job is RETRYING ("RETRYING (3, next in 4s)").
func stateAt(j *sluicev1.Job, now time.Time) string {
	st := state(j.GetState())
	if r := j.GetRestart(); r != nil && j.GetState() == sluicev1.JobState_JOB_STATE_RETRYING {
		st += fmt.Sprintf(" (%d, next in %s)", r.GetAttempt(), untilAt(r.GetNextAttemptTime().AsTime(), now))
	}
	return st
}

// untilAt is the time from now to t, rounded for people; "now" once passed.
func untilAt(t, now time.Time) string {
	d := t.Sub(now)
	if d <= 0 {
		return "now"
	}
	return d.Round(time.Second).String()
}

func phaseText(phase string) string {
	switch phase {
	case "plan":
		return "planning"
	case "record":
		return "recording offsets"
	case "execute":
		return "executing"
	case "commit":
		return "committing"
	case "":
		return "starting"
	}
	return phase
}

// progressBar is width columns, done/total of them filled.
func progressBar(width, done, total int) string {
	fill := width * done / total
	switch {
	case fill >= width:
		return strings.Repeat("=", width)
	case fill == 0:
		return strings.Repeat(" ", width)
	}
	return strings.Repeat("=", fill-1) + ">" + strings.Repeat(" ", width-fill)
}

// eventClock is an RFC 3339 event time in now's location, as the screen's
// other times: the time of day when it is on now's date, else date and
// time, since event times can be days old when a job catches up. A value
// that does not parse is shown as it is.
func eventClock(v string, now time.Time) string {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return v
	}
	t = t.In(now.Location())
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format(time.TimeOnly)
	}
	return t.Format(time.DateTime)
}

// roundSeconds is d to the second ("2m5s"), or "0s".
func roundSeconds(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}

// millis is a duration in milliseconds, in the unit that reads best:
// "850ms", "4.2s", "2m5s".
func millis(ms int64) string {
	switch d := time.Duration(ms) * time.Millisecond; {
	case ms < 1000:
		return fmt.Sprintf("%dms", ms)
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}

// count is n with thousands separated: "1,250,000".
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// rate is a rate per second: whole with separators, one decimal below 10.
func rate(r float64) string {
	if r < 10 {
		return strconv.FormatFloat(r, 'f', 1, 64)
	}
	return count(int64(r + 0.5))
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return count(n) + " " + many
}

func runes(s string) int { return utf8.RuneCountInString(s) }

// truncate cuts s to width runes, ending in "..." when cut.
func truncate(s string, width int) string {
	if runes(s) <= width {
		return s
	}
	if width <= 3 {
		return string([]rune(s)[:max(width, 0)])
	}
	return string([]rune(s)[:width-3]) + "..."
}

// truncateLeft cuts s to width runes, starting with "..." when cut: the
// end of a partition's name (the shard or partition number) tells it apart.
func truncateLeft(s string, width int) string {
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	if width <= 3 {
		return string(r[len(r)-max(width, 0):])
	}
	return "..." + string(r[len(r)-width+3:])
}

func padRight(s string, width int) string {
	return s + strings.Repeat(" ", max(width-runes(s), 0))
}
