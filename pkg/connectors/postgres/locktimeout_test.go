package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sluicehq/sluice/pkg/connectors"
	"github.com/sluicehq/sluice/pkg/connectors/postgres"
	"github.com/sluicehq/sluice/pkg/stream"
)

// The writer locked its positions row (SELECT ... FOR UPDATE) without a
// lock_timeout, so a zombie transaction holding that lock blocked the
// replacement attempt forever; it must instead fail within the lock timeout
// with a retryable error (SQLSTATE 55P03).
func TestLockTimeout(t *testing.T) {
	e := newEnv(t)
	e.exec(t, `CREATE TABLE locked (id bigint)`)
	rows := []stream.Row{{"id": int64(1)}}
	for _, tt := range []struct {
		name        string
		lockTimeout time.Duration
		max         time.Duration // the attempt must fail before this
	}{
		{"configured", 300 * time.Millisecond, 5 * time.Second},
		{"default", 0, postgres.DefaultLockTimeout + 5*time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := e.sink(t, postgres.Config{Table: "locked", CreateTable: true, LockTimeout: tt.lockTimeout},
				postgres.WithFlushRows(1))
			job := jobOf(t)
			mustWrite(t, s, key(job, 1, "p"), rows) // the positions row exists

			// A zombie attempt holds the row lock in an open transaction.
			zombie, err := pgx.Connect(context.Background(), e.pg.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer zombie.Close(context.Background())
			tx, err := zombie.Begin(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(context.Background()) }()
			if _, err := tx.Exec(context.Background(),
				`SELECT 1 FROM sluice_positions WHERE job = $1 AND part = 'p' FOR UPDATE`, job); err != nil {
				t.Fatal(err)
			}

			// Far beyond the timeout, so a hang shows as the deadline.
			c, cancel := context.WithTimeout(context.Background(), tt.max+20*time.Second)
			defer cancel()
			started := time.Now()
			w, err := s.OpenWriter(c, key(job, 2, "p"))
			if err == nil {
				if err = w.Write(c, rows); err == nil {
					err = w.Commit(c)
				} else {
					_ = w.Abort()
				}
			}
			took := time.Since(started)
			if err == nil {
				t.Fatal("the attempt wrote while another transaction held its positions row")
			}
			if took > tt.max {
				t.Fatalf("the attempt failed after %s (%v), want within %s", took, err, tt.max)
			}
			var pe *postgres.Error
			if !errors.As(err, &pe) || pe.Code != "55P03" || connectors.IsPermanent(err) {
				t.Fatalf("err = %v (code %q, permanent %v), want a retryable lock_not_available (55P03)",
					err, codeOf(pe), connectors.IsPermanent(err))
			}
			if tt.lockTimeout > 0 && took < tt.lockTimeout {
				t.Fatalf("failed after %s, before the lock timeout %s", took, tt.lockTimeout)
			}

			// Once the zombie is gone, the retry goes through.
			if err := tx.Rollback(context.Background()); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, s, key(job, 2, "p"), rows)
		})
	}
}

func codeOf(pe *postgres.Error) string {
	if pe == nil {
		return ""
	}
	return pe.Code
}
