package postgres

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/sluicehq/sluice/pkg/connectors"
)

// Error is a failed sink operation. Its message never holds the password.
type Error struct {
	// Op is what the sink was doing ("commit", "copy into \"t\"").
	Op string
	// Code is the SQLSTATE when the server refused, else "".
	Code string
	// Hint says what to check.
	Hint string
	msg  string
	err  error
}

func (e *Error) Error() string {
	s := "postgres sink: " + e.Op + ": " + e.msg
	if e.Hint != "" {
		s += ": " + e.Hint
	}
	return s
}

func (e *Error) Unwrap() error { return e.err }

// wrap classifies err in one place: it adds what to check, scrubs the
// password from the message, and marks as permanent what retrying the same
// rows cannot fix (refused credentials, missing database, SQL the table
// rejects, data the column types reject). Connection failures, lock and
// serialization conflicts and server restarts stay retryable.
func (s *Sink) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, msg: s.scrub(err.Error()), err: err}
	permanent := false
	var pgErr *pgconn.PgError
	var netErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		if errors.As(err, &netErr) || errors.As(err, &dnsErr) {
			e.Hint = "is the host and port in sink.postgres.url right and the server reachable?"
		}
	case errors.As(err, &pgErr):
		e.Code = pgErr.Code
		permanent = true
		switch class := pgErr.Code[:2]; {
		case class == "28":
			e.Hint = "check the user and password in sink.postgres.url (or PGPASSWORD, ~/.pgpass) and the server's pg_hba.conf"
		case pgErr.Code == "3D000":
			e.Hint = "the database named in sink.postgres.url does not exist"
		case pgErr.Code == "42P01":
			s.forgetTables()
			if s.set.cfg.CreateTable {
				permanent = false // dropped while running: the next attempt creates it again
			} else {
				e.Hint = "create the table (and the positions table " + s.set.positions.Sanitize() + "), or set createTable: true"
			}
		case pgErr.Code == "42703" && strings.HasPrefix(op, "positions:"):
			e.Hint = "the positions table " + s.set.positions.Sanitize() + " has an older layout: run ALTER TABLE " +
				s.set.positions.Sanitize() + " ADD COLUMN IF NOT EXISTS incarnation text NOT NULL DEFAULT '', " +
				"ADD COLUMN IF NOT EXISTS end_position bytea (createTable: true does this itself)"
		case pgErr.Code == "42703":
			e.Hint = "the table has no such column: map record fields to columns with columns: [{name, field}]"
		case pgErr.Code == "42P10":
			e.Hint = "mode upsert needs a primary key or unique index on exactly keyColumns (" +
				strings.Join(s.set.cfg.KeyColumns, ", ") + ")"
		case pgErr.Code == "42501":
			e.Hint = "the user lacks a privilege: grant INSERT and SELECT (UPDATE for upsert) on the table and the positions table, and CREATE on the schema for createTable"
		case pgErr.Code == "23505" && !s.set.upsert:
			e.Hint = "a row with this key already exists; to replace rows by key use mode: upsert with keyColumns"
		case class == "22":
			e.Hint = "a value does not fit its column's type: convert it with a select transform or change the column type"
		case pgErr.Code == "55P03":
			// lock_timeout: another attempt (a zombie?) holds the lock.
			permanent = false
			e.Hint = "another transaction held the lock longer than lockTimeout (an earlier attempt of the task still running?); the task is retried"
		case class == "42", class == "23", class == "0A", class == "2B", class == "3F":
		default:
			// Server shutting down, out of resources, serialization
			// failure, deadlock, lost connection: worth another attempt.
			permanent = false
		}
	case errors.As(err, &netErr), errors.As(err, &dnsErr):
		e.Hint = "is the host and port in sink.postgres.url right and the server reachable?"
	}
	if permanent {
		return connectors.Permanent(e)
	}
	return e
}

// scrub removes the password from a message.
func (s *Sink) scrub(msg string) string {
	msg = scrub(msg, s.connStr)
	if s.password != "" {
		msg = strings.ReplaceAll(msg, s.password, "*****")
	}
	return msg
}
