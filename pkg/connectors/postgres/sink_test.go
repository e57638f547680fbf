package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/sluicehq/sluice/internal/testenv"
	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/postgres"
	"github.com/sluicehq/sluice/pkg/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one throwaway cluster shared by a test's subtests, each using its
// own tables.
type env struct {
	pg   testenv.Postgres
	conn *pgx.Conn
}

func newEnv(t *testing.T) *env {
	t.Helper()
	pg := testenv.StartPostgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &env{pg: pg, conn: conn}
}

func (e *env) sink(t *testing.T, cfg postgres.Config, opts ...postgres.Option) *postgres.Sink {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = e.pg.URL
	}
	s, err := postgres.New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (e *env) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	if _, err := e.conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// query returns every row of sql as strings (NULL as "<nil>"), in order.
func (e *env) query(t *testing.T, sql string, args ...any) [][]string {
	t.Helper()
	rows, err := e.conn.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		r := make([]string, len(vals))
		for i, v := range vals {
			switch x := v.(type) {
			case time.Time:
				r[i] = x.UTC().Format(time.RFC3339Nano)
			default:
				r[i] = fmt.Sprint(x)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *env) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	if err := e.conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// write runs one attempt: open, write each chunk, commit.
func write(t *testing.T, s *postgres.Sink, key connectors.WriteKey, chunks ...[]stream.Row) error {
	t.Helper()
	c := ctx(t)
	w, err := s.OpenWriter(c, key)
	if err != nil {
		t.Fatalf("OpenWriter: %v", err)
	}
	for _, rows := range chunks {
		if err := w.Write(c, rows); err != nil {
			_ = w.Abort()
			return err
		}
	}
	return w.Commit(c)
}

func mustWrite(t *testing.T, s *postgres.Sink, key connectors.WriteKey, chunks ...[]stream.Row) {
	t.Helper()
	if err := write(t, s, key, chunks...); err != nil {
		t.Fatalf("write %+v: %v", key, err)
	}
}

func key(job string, batch int64, part string) connectors.WriteKey {
	return connectors.WriteKey{Job: stream.JobID(job), Batch: stream.BatchID(batch), Part: part}
}

// commitEnd runs one attempt that commits through CommitEnd.
func commitEnd(t *testing.T, s *postgres.Sink, key connectors.WriteKey, end string, rows []stream.Row) (stream.Position, error) {
	t.Helper()
	c := ctx(t)
	w, err := s.OpenWriter(c, key)
	if err != nil {
		t.Fatalf("OpenWriter: %v", err)
	}
	if err := w.Write(c, rows); err != nil {
		_ = w.Abort()
		return nil, err
	}
	ec, ok := w.(connectors.EndCommitter)
	if !ok {
		t.Fatalf("%T does not implement connectors.EndCommitter", w)
	}
	return ec.CommitEnd(c, stream.Position(end))
}

func ikey(job, incarnation string, batch int64, part string) connectors.WriteKey {
	k := key(job, batch, part)
	k.Incarnation = incarnation
	return k
}

// jobOf names a job after the (sub)test, so that subtests sharing the
// positions table do not see each other's batches.
func jobOf(t *testing.T) string { return t.Name() }

// logs collects a sink's log output.
type logs struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logs) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func TestSink(t *testing.T) {
	e := newEnv(t)

	t.Run("append with COPY and an existing table", func(t *testing.T) {
		e.exec(t, `CREATE TABLE flows (branch text, amount bigint, ratio double precision, at timestamptz, raw bytea, ok boolean)`)
		s := e.sink(t, postgres.Config{Table: "flows", CreateTable: true})
		at := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
		mustWrite(t, s, key(jobOf(t), 0, "transaction/0"),
			[]stream.Row{{"branch": "SPB", "amount": int64(5), "ratio": 0.5, "at": at, "raw": []byte{1, 2}, "ok": true}},
			[]stream.Row{{"branch": "Kazan", "amount": int64(-7)}})
		got := e.query(t, `SELECT branch, amount, ratio, at, raw, ok FROM flows ORDER BY branch`)
		want := [][]string{
			{"Kazan", "-7", "<nil>", "<nil>", "<nil>", "<nil>"},
			{"SPB", "5", "0.5", "2026-01-02T03:04:05.000006Z", "[1 2]", "true"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("rows (-want +got):\n%s", diff)
		}
		pos := e.query(t, `SELECT job, sink, part, batch, row_count, target_table FROM sluice_positions WHERE job = $1`, jobOf(t))
		if diff := cmp.Diff([][]string{{jobOf(t), "sink", "transaction/0", "0", "2", `"flows"`}}, pos); diff != "" {
			t.Fatalf("positions (-want +got):\n%s", diff)
		}
		c, ok, err := s.Committed(ctx(t), stream.JobID(jobOf(t)), "transaction/0")
		if err != nil || !ok || c.Batch != 0 || c.End != nil {
			t.Fatalf("Committed = %+v, %v, %v; want batch 0 without end, true, nil", c, ok, err)
		}
	})

	t.Run("append with INSERT, several statements", func(t *testing.T) {
		s := e.sink(t, postgres.Config{Table: "ins", CreateTable: true, WriteMethod: "insert"})
		var rows []stream.Row
		for i := range 2500 {
			rows = append(rows, stream.Row{"id": int64(i), "name": fmt.Sprint("n", i)})
		}
		mustWrite(t, s, key(jobOf(t), 3, "p"), rows)
		got := e.query(t, `SELECT count(*), count(DISTINCT id), min(id), max(id) FROM ins`)
		if diff := cmp.Diff([][]string{{"2500", "2500", "0", "2499"}}, got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
	})

	t.Run("createTable infers types and honours columns", func(t *testing.T) {
		s := e.sink(t, postgres.Config{Table: "typed", CreateTable: true, Columns: []postgres.Column{
			{Name: "branch_name", Field: "branch"}, {Name: "batch_value", Field: "sum", Type: "numeric(18,2)"},
			{Name: "n"}, {Name: "avg"}, {Name: "at"}, {Name: "doc"}, {Name: "missing"},
		}})
		mustWrite(t, s, key(jobOf(t), 0, "aggregate"), []stream.Row{
			{"branch": "SPB", "sum": int64(12), "n": nil, "avg": 1.5, "at": time.Unix(0, 0).UTC(), "doc": map[string]any{"a": []any{int64(1), "x"}}},
			{"branch": "Kazan", "sum": 3.25, "n": int64(2)},
		})
		types := e.query(t, `SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'typed' ORDER BY ordinal_position`)
		want := [][]string{
			{"branch_name", "text"}, {"batch_value", "numeric"}, {"n", "bigint"}, {"avg", "double precision"},
			{"at", "timestamp with time zone"}, {"doc", "jsonb"}, {"missing", "text"},
		}
		if diff := cmp.Diff(want, types); diff != "" {
			t.Fatalf("column types (-want +got):\n%s", diff)
		}
		got := e.query(t, `SELECT branch_name, batch_value::text, n, doc::text FROM typed ORDER BY branch_name`)
		wantRows := [][]string{{"Kazan", "3.25", "2", "<nil>"}, {"SPB", "12.00", "<nil>", `{"a": [1, "x"]}`}}
		if diff := cmp.Diff(wantRows, got); diff != "" {
			t.Fatalf("rows (-want +got):\n%s", diff)
		}
	})

	for _, method := range []string{"copy", "insert"} {
		t.Run("upsert with "+method, func(t *testing.T) {
			table := "up_" + method
			s := e.sink(t, postgres.Config{Table: table, CreateTable: true, Mode: "upsert", KeyColumns: []string{"id"}, WriteMethod: method},
				postgres.WithFlushRows(2))
			// Key 1 three times across chunks: the last one wins.
			mustWrite(t, s, key(jobOf(t), 0, "p"),
				[]stream.Row{{"id": int64(1), "v": "a"}, {"id": int64(2), "v": "b"}, {"id": int64(1), "v": "c"}},
				[]stream.Row{{"id": int64(1), "v": "d"}})
			mustWrite(t, s, key(jobOf(t), 1, "p"), []stream.Row{{"id": int64(2), "v": "e"}, {"id": int64(3), "v": "f"}})
			got := e.query(t, `SELECT id, v FROM `+table+` ORDER BY id`)
			if diff := cmp.Diff([][]string{{"1", "d"}, {"2", "e"}, {"3", "f"}}, got); diff != "" {
				t.Fatalf("rows (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("upsert into a table with an identity column", func(t *testing.T) {
		e.exec(t, `CREATE TABLE ident (seq bigint GENERATED ALWAYS AS IDENTITY, id text PRIMARY KEY, v bigint NOT NULL)`)
		s := e.sink(t, postgres.Config{Table: "ident", Mode: "upsert", KeyColumns: []string{"id"}, CreateTable: true})
		mustWrite(t, s, key(jobOf(t), 0, "p"), []stream.Row{{"id": "a", "v": int64(1)}})
		mustWrite(t, s, key(jobOf(t), 1, "p"), []stream.Row{{"id": "a", "v": int64(2)}, {"id": "b", "v": int64(3)}})
		got := e.query(t, `SELECT id, v FROM ident ORDER BY id`)
		if diff := cmp.Diff([][]string{{"a", "2"}, {"b", "3"}}, got); diff != "" {
			t.Fatalf("rows (-want +got):\n%s", diff)
		}
	})

	t.Run("a replayed commit writes nothing", func(t *testing.T) {
		var l logs
		s := e.sink(t, postgres.Config{Table: "replay", CreateTable: true}, postgres.WithLogger(l.logger()), postgres.WithFlushRows(2))
		rows := []stream.Row{{"id": int64(1)}, {"id": int64(2)}, {"id": int64(3)}}
		mustWrite(t, s, key(jobOf(t), 7, "p"), rows)
		mustWrite(t, s, key(jobOf(t), 7, "p"), rows) // a retry of the same task
		if n := e.count(t, "replay"); n != 3 {
			t.Fatalf("after a replay the table holds %d rows, want 3", n)
		}
		if !strings.Contains(l.String(), "batch already committed") {
			t.Fatalf("no log line about the skipped replay: %s", l.String())
		}
		// A zombie of an earlier batch writes nothing either, and says so.
		mustWrite(t, s, key(jobOf(t), 6, "p"), rows)
		if n := e.count(t, "replay"); n != 3 {
			t.Fatalf("after a zombie of batch 6 the table holds %d rows, want 3", n)
		}
		if !strings.Contains(l.String(), "holds a later batch") {
			t.Fatalf("no warning about the later batch: %s", l.String())
		}
		// Another part, and the next batch, are written.
		mustWrite(t, s, key(jobOf(t), 7, "q"), rows[:1])
		mustWrite(t, s, key(jobOf(t), 8, "p"), rows[:1])
		if n := e.count(t, "replay"); n != 5 {
			t.Fatalf("table holds %d rows, want 5", n)
		}
	})

	t.Run("abort writes nothing and keeps the position", func(t *testing.T) {
		s := e.sink(t, postgres.Config{Table: "aborted", CreateTable: true}, postgres.WithFlushRows(1))
		c := ctx(t)
		w, err := s.OpenWriter(c, key(jobOf(t), 0, "p"))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(c, []stream.Row{{"id": int64(1)}, {"id": int64(2)}}); err != nil {
			t.Fatal(err)
		}
		if err := w.Abort(); err != nil {
			t.Fatal(err)
		}
		if n := e.count(t, "aborted"); n != 0 {
			t.Fatalf("aborted writer left %d rows", n)
		}
		if _, ok, err := s.Committed(c, stream.JobID(jobOf(t)), "p"); err != nil || ok {
			t.Fatalf("Committed after abort = %v, %v; want none", ok, err)
		}
		mustWrite(t, s, key(jobOf(t), 0, "p"), []stream.Row{{"id": int64(1)}})
		if n := e.count(t, "aborted"); n != 1 {
			t.Fatalf("retry after abort wrote %d rows, want 1", n)
		}
	})

	t.Run("an empty task still records its batch", func(t *testing.T) {
		s := e.sink(t, postgres.Config{Table: "empty", CreateTable: true})
		mustWrite(t, s, key(jobOf(t), 4, "p"))
		c, ok, err := s.Committed(ctx(t), stream.JobID(jobOf(t)), "p")
		if err != nil || !ok || c.Batch != 4 {
			t.Fatalf("Committed = %+v, %v, %v; want batch 4, true, nil", c, ok, err)
		}
	})

	t.Run("main and dead-letter sinks keep separate positions", func(t *testing.T) {
		main := e.sink(t, postgres.Config{Table: "main_out", CreateTable: true})
		dead := e.sink(t, postgres.Config{Table: "dead_out", CreateTable: true, SinkName: "deadLetter"})
		mustWrite(t, main, key(jobOf(t), 0, "p"), []stream.Row{{"id": int64(1)}})
		mustWrite(t, dead, key(jobOf(t), 0, "p"), []stream.Row{{"id": int64(2), "error": "decode: bad"}})
		if a, b := e.count(t, "main_out"), e.count(t, "dead_out"); a != 1 || b != 1 {
			t.Fatalf("main holds %d rows, dead letters %d; want 1 and 1", a, b)
		}
	})

	t.Run("custom positions table in another schema", func(t *testing.T) {
		e.exec(t, `CREATE SCHEMA ops`)
		s := e.sink(t, postgres.Config{Table: "ops.out", PositionsTable: "ops.committed", CreateTable: true})
		mustWrite(t, s, key(jobOf(t), 0, "p"), []stream.Row{{"id": int64(1)}})
		if n := e.count(t, "ops.committed"); n != 1 {
			t.Fatalf("ops.committed holds %d rows, want 1", n)
		}
	})
}

// TestConcurrentAttempts runs attempts of one task at the same time: the
// second blocks on the positions row until the first ends, then writes
// nothing if the first committed, or everything if it aborted.
func TestConcurrentAttempts(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `CREATE TABLE conc (id bigint)`)
	s := e.sink(t, postgres.Config{Table: "conc", CreateTable: true}, postgres.WithFlushRows(1))
	rows := []stream.Row{{"id": int64(1)}, {"id": int64(2)}}

	for _, firstCommits := range []bool{true, false} {
		t.Run(fmt.Sprintf("first commits %v", firstCommits), func(t *testing.T) {
			e.exec(t, `TRUNCATE conc`)
			c := ctx(t)
			first, err := s.OpenWriter(c, key(jobOf(t), 1, "p"))
			if err != nil {
				t.Fatal(err)
			}
			// With a flush size of 1 the first Write begins the transaction
			// and locks the positions row.
			if err := first.Write(c, rows); err != nil {
				t.Fatal(err)
			}
			second := make(chan error, 1)
			go func() {
				w, err := s.OpenWriter(c, key(jobOf(t), 1, "p"))
				if err == nil {
					if err = w.Write(c, rows); err == nil {
						err = w.Commit(c)
					}
				}
				second <- err
			}()
			// Wait until the second attempt waits for the row lock.
			deadline := time.Now().Add(30 * time.Second)
			for {
				var waiting int
				if err := e.conn.QueryRow(c, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				if waiting > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the second attempt never waited for the positions row")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if firstCommits {
				err = first.Commit(c)
			} else {
				err = first.Abort()
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := <-second; err != nil {
				t.Fatalf("second attempt: %v", err)
			}
			if n := e.count(t, "conc"); n != 2 {
				t.Fatalf("table holds %d rows, want exactly one attempt's 2", n)
			}
		})
	}

	t.Run("many at once", func(t *testing.T) {
		e.exec(t, `TRUNCATE conc`)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- write(t, s, key(jobOf(t), 2, "p"), rows)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if n := e.count(t, "conc"); n != 2 {
			t.Fatalf("8 concurrent attempts left %d rows, want 2", n)
		}
	})
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	const secret = "s3cr3t-pw"

	tests := []struct {
		name      string
		cfg       postgres.Config
		rows      []stream.Row
		want      string
		permanent bool
	}{
		{
			name: "wrong password",
			cfg:  postgres.Config{URL: e.pg.URLFor(e.pg.User, secret, e.pg.Database), Table: "t", CreateTable: true},
			want: "check the user and password in sink.postgres.url", permanent: true,
		},
		{
			name: "unreachable server",
			cfg: postgres.Config{URL: fmt.Sprintf("postgres://u:%s@127.0.0.1:%d/db?sslmode=disable&connect_timeout=5", secret, testenv.FreePort(t)),
				Table: "t", CreateTable: true},
			want: "is the host and port in sink.postgres.url right and the server reachable?",
		},
		{
			name: "missing database",
			cfg:  postgres.Config{URL: e.pg.URLFor(e.pg.User, e.pg.Password, "nope"), Table: "t", CreateTable: true},
			want: "the database named in sink.postgres.url does not exist", permanent: true,
		},
		{
			name: "missing table without createTable",
			cfg:  postgres.Config{Table: "absent"},
			want: "or set createTable: true", permanent: true,
		},
		{
			name: "unknown column",
			cfg:  postgres.Config{Table: "narrow", CreateTable: true, Columns: []postgres.Column{{Name: "a"}}},
			rows: []stream.Row{{"a": "x"}}, // the table has only column b
			want: "map record fields to columns", permanent: true,
		},
		{
			name: "upsert without a unique index",
			cfg:  postgres.Config{Table: "nokey", Mode: "upsert", KeyColumns: []string{"id"}, WriteMethod: "insert"},
			rows: []stream.Row{{"id": int64(1)}},
			want: "needs a primary key or unique index on exactly keyColumns (id)", permanent: true,
		},
		{
			name: "duplicate key in append mode",
			cfg:  postgres.Config{Table: "pk"},
			rows: []stream.Row{{"id": int64(1)}, {"id": int64(1)}},
			want: "use mode: upsert with keyColumns", permanent: true,
		},
		{
			name: "value of the wrong type",
			cfg:  postgres.Config{Table: "typed_int", WriteMethod: "insert"},
			rows: []stream.Row{{"n": "twelve"}},
			want: "does not fit its column's type", permanent: true,
		},
	}
	e.exec(t, `CREATE TABLE narrow (b text)`)
	e.exec(t, `CREATE TABLE nokey (id bigint)`)
	e.exec(t, `CREATE TABLE pk (id bigint PRIMARY KEY)`)
	e.exec(t, `CREATE TABLE typed_int (n bigint)`)
	e.exec(t, `CREATE TABLE sluice_positions (job text, sink text, part text, batch bigint NOT NULL,
		incarnation text NOT NULL DEFAULT '', end_position bytea, row_count bigint NOT NULL DEFAULT 0,
		target_table text NOT NULL DEFAULT '', committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, sink, part))`)

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := e.sink(t, tt.cfg)
			rows := tt.rows
			if rows == nil {
				rows = []stream.Row{{"id": int64(1)}}
			}
			err := write(t, s, key(jobOf(t), 0, "p"), rows)
			if err == nil {
				t.Fatal("write succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not say %q", err, tt.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), e.pg.Password) {
				t.Fatalf("error shows a password: %v", err)
			}
			t.Logf("error: %v", err)
			if got := connectors.IsPermanent(err); got != tt.permanent {
				t.Fatalf("IsPermanent = %v, want %v (%v)", got, tt.permanent, err)
			}
			var pe *postgres.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not a *postgres.Error", err)
			}
		})
	}
}

// TestCommitEndAndIncarnations checks what the positions row remembers
// besides the batch: the task end CommitEnd stored, which a replay of the
// same batch reports instead of its own, and the job's incarnation, so that
// a job deleted and submitted again under the same name is not taken for a
// replay of the old one.
func TestCommitEndAndIncarnations(t *testing.T) {
	e := newEnv(t)
	rows := []stream.Row{{"id": int64(1)}, {"id": int64(2)}}
	more := append(slices.Clone(rows), stream.Row{"id": int64(3)})

	type attempt struct {
		key      connectors.WriteKey
		end      string
		rows     []stream.Row
		wantEnd  string // what CommitEnd returns
		wantRows int    // rows in the table afterwards
	}
	tests := []struct {
		name     string
		attempts []attempt
		// wantRow is the positions row at the end: batch, incarnation,
		// end_position.
		wantRow []string
	}{
		{
			name: "a replay reports the end the first attempt stored",
			attempts: []attempt{
				{key: ikey("j", "inc1", 0, "s-0"), end: "e0", rows: rows, wantEnd: "e0", wantRows: 2},
				// It read further (an open-ended Kinesis range): its rows
				// are dropped and the stored end is the task's end.
				{key: ikey("j", "inc1", 0, "s-0"), end: "e0-further", rows: more, wantEnd: "e0", wantRows: 2},
				{key: ikey("j", "inc1", 1, "s-0"), end: "e1", rows: rows, wantEnd: "e1", wantRows: 4},
			},
			wantRow: []string{"1", "inc1", "e1"},
		},
		{
			name: "a zombie of an earlier batch keeps its own end",
			attempts: []attempt{
				{key: ikey("j", "inc1", 5, "s-0"), end: "e5", rows: rows, wantEnd: "e5", wantRows: 2},
				{key: ikey("j", "inc1", 4, "s-0"), end: "e4", rows: rows, wantEnd: "e4", wantRows: 2},
			},
			wantRow: []string{"5", "inc1", "e5"},
		},
		{
			name: "a re-created job's batches are written over the old incarnation's row",
			attempts: []attempt{
				{key: ikey("j", "old", 7, "s-0"), end: "old7", rows: rows, wantEnd: "old7", wantRows: 2},
				{key: ikey("j", "new", 0, "s-0"), end: "new0", rows: more, wantEnd: "new0", wantRows: 5},
				{key: ikey("j", "new", 0, "s-0"), end: "new0-again", rows: more, wantEnd: "new0", wantRows: 5},
				{key: ikey("j", "new", 7, "s-0"), end: "new7", rows: rows, wantEnd: "new7", wantRows: 7},
			},
			wantRow: []string{"7", "new", "new7"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := fmt.Sprintf("ends_%d", i)
			s := e.sink(t, postgres.Config{Table: table, CreateTable: true})
			for n, a := range tt.attempts {
				got, err := commitEnd(t, s, a.key, a.end, a.rows)
				if err != nil {
					t.Fatalf("attempt %d: %v", n+1, err)
				}
				if string(got) != a.wantEnd {
					t.Fatalf("attempt %d (%+v): CommitEnd = %q, want %q", n+1, a.key, got, a.wantEnd)
				}
				if c := e.count(t, table); c != a.wantRows {
					t.Fatalf("after attempt %d the table holds %d rows, want %d", n+1, c, a.wantRows)
				}
			}
			got := e.query(t, `SELECT batch, incarnation, convert_from(end_position, 'UTF8') FROM sluice_positions
				WHERE job = 'j' AND target_table = $1`, pgx.Identifier{table}.Sanitize())
			if diff := cmp.Diff([][]string{tt.wantRow}, got); diff != "" {
				t.Fatalf("positions row (-want +got):\n%s", diff)
			}
			e.exec(t, `DELETE FROM sluice_positions WHERE job = 'j'`)
		})
	}

	t.Run("Commit after CommitEnd of another batch stores no end", func(t *testing.T) {
		s := e.sink(t, postgres.Config{Table: "agg_out", CreateTable: true})
		if _, err := commitEnd(t, s, ikey(jobOf(t), "i", 0, "aggregate"), "e0", rows); err != nil {
			t.Fatal(err)
		}
		mustWrite(t, s, ikey(jobOf(t), "i", 1, "aggregate"), rows)
		c, ok, err := s.Committed(ctx(t), stream.JobID(jobOf(t)), "aggregate")
		if err != nil || !ok || c.Batch != 1 || c.Incarnation != "i" || c.End != nil {
			t.Fatalf("Committed = %+v, %v, %v; want batch 1 of incarnation i without end", c, ok, err)
		}
		// A replay of a batch committed without an end reports its own.
		got, err := commitEnd(t, s, ikey(jobOf(t), "i", 1, "aggregate"), "mine", rows)
		if err != nil || string(got) != "mine" {
			t.Fatalf("CommitEnd = %q, %v; want its own end", got, err)
		}
		if n := e.count(t, "agg_out"); n != 4 {
			t.Fatalf("table holds %d rows, want 4", n)
		}
	})
}

// TestPositionsTableOfTheFirstLayout starts from a positions table without
// the incarnation and end_position columns: with createTable the sink adds
// them (old rows get the empty incarnation and no end), without it the error says
// which ALTER TABLE to run.
func TestPositionsTableOfTheFirstLayout(t *testing.T) {
	e := newEnv(t)
	oldLayout := func(t *testing.T, name string) {
		e.exec(t, `CREATE TABLE `+name+` (job text NOT NULL, sink text NOT NULL, part text NOT NULL, batch bigint NOT NULL,
			row_count bigint NOT NULL DEFAULT 0, target_table text NOT NULL DEFAULT '',
			committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, sink, part))`)
		e.exec(t, `INSERT INTO `+name+` (job, sink, part, batch) VALUES ('j', 'sink', 'p', 3)`)
	}

	t.Run("createTable migrates", func(t *testing.T) {
		var l logs
		oldLayout(t, "pos_v1")
		s := e.sink(t, postgres.Config{Table: "mig_out", PositionsTable: "pos_v1", CreateTable: true}, postgres.WithLogger(l.logger()))
		// The old row is kept; a job that never had an incarnation (keys
		// with an empty one) still sees it as its own.
		got, err := commitEnd(t, s, key("j", 3, "p"), "e3", rows1)
		if err != nil || string(got) != "e3" {
			t.Fatalf("replay of the old row's batch: CommitEnd = %q, %v; want its own end", got, err)
		}
		if n := e.count(t, "mig_out"); n != 0 {
			t.Fatalf("a replay of the old row's batch wrote %d rows", n)
		}
		// A job with an incarnation writes over it.
		if _, err := commitEnd(t, s, ikey("j", "inc", 0, "p"), "e0", rows1); err != nil {
			t.Fatal(err)
		}
		if n := e.count(t, "mig_out"); n != 1 {
			t.Fatalf("table holds %d rows, want 1", n)
		}
		got2 := e.query(t, `SELECT batch, incarnation, convert_from(end_position, 'UTF8') FROM pos_v1 WHERE job = 'j'`)
		if diff := cmp.Diff([][]string{{"0", "inc", "e0"}}, got2); diff != "" {
			t.Fatalf("positions row (-want +got):\n%s", diff)
		}
		if !strings.Contains(l.String(), "added the columns incarnation and end_position") {
			t.Fatalf("no log line about the migration: %s", l.String())
		}
		// A second sink on the migrated table does not alter it again.
		var l2 logs
		s2 := e.sink(t, postgres.Config{Table: "mig_out", PositionsTable: "pos_v1", CreateTable: true}, postgres.WithLogger(l2.logger()))
		mustWrite(t, s2, ikey("j", "inc", 1, "p"), rows1)
		if strings.Contains(l2.String(), "added the columns") {
			t.Fatalf("migrated twice: %s", l2.String())
		}
	})

	t.Run("without createTable the error says what to run", func(t *testing.T) {
		oldLayout(t, "pos_v1_manual")
		e.exec(t, `CREATE TABLE manual_out (id bigint)`)
		s := e.sink(t, postgres.Config{Table: "manual_out", PositionsTable: "pos_v1_manual"})
		err := write(t, s, ikey("j", "inc", 4, "p"), rows1)
		if err == nil || !strings.Contains(err.Error(), "ADD COLUMN IF NOT EXISTS incarnation") {
			t.Fatalf("error %v; want one naming the ALTER TABLE", err)
		}
	})
}

var rows1 = []stream.Row{{"id": int64(1)}}
