package postgres

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Modes and write methods.
const (
	ModeAppend   = "append"
	ModeUpsert   = "upsert"
	MethodCopy   = "copy"
	MethodInsert = "insert"

	// DefaultPositionsTable holds each (job, sink, part)'s last committed
	// batch.
	DefaultPositionsTable = "sluice_positions"
	// DefaultSinkName is Config.SinkName's default: the job's main sink.
	DefaultSinkName = "sink"
)

// Config is the PostgreSQL sink's options, as the job spec's
// sink.postgres names them. Call Validate before use; New does.
type Config struct {
	// URL is a libpq connection string: a URL
	// (postgres://user:password@host:port/db?sslmode=require) or key=value
	// pairs. PGPASSWORD, PGHOST, ~/.pgpass and the other libpq variables
	// fill what it leaves out. pgxpool's pool_max_conns and friends are
	// accepted. Required. The password is a secret: errors never show it.
	URL string
	// Table is the target table, optionally schema-qualified
	// ("analytics.flows"). Names are used exactly as written (quoted), so
	// write them in the case they have in the database. Required.
	Table string
	// Mode is "append" (the default: INSERT every row) or "upsert" (INSERT
	// ... ON CONFLICT (KeyColumns) DO UPDATE; needs KeyColumns and a
	// unique index or primary key on them).
	Mode string
	// KeyColumns are the upsert key's columns (column names, not fields).
	KeyColumns []string
	// Columns maps record fields to columns. Empty: every field of the
	// row, each into the column of the same name.
	Columns []Column
	// CreateTable creates the table and the positions table when absent.
	// Column types come from Columns[].Type, else from the first rows
	// written (see the package documentation).
	CreateTable bool
	// WriteMethod is "copy" (the default: COPY FROM STDIN, binary) or
	// "insert" (multi-row INSERT statements).
	WriteMethod string
	// PositionsTable is the table of committed batches, optionally
	// schema-qualified. Default "sluice_positions".
	PositionsTable string
	// SinkName tells the job's sinks apart in the positions table: "sink"
	// (the default) for the main sink, "deadLetter" for the dead-letter
	// sink, so that both may commit the same (job, batch, part).
	SinkName string
	// LockTimeout bounds how long a writer waits for the lock on its
	// positions row (the transaction's lock_timeout), e.g. held by a zombie
	// attempt whose connection is not yet gone; the write then fails with a
	// retryable error (SQLSTATE 55P03). 0 means DefaultLockTimeout.
	LockTimeout time.Duration
}

// DefaultLockTimeout is the LockTimeout used when it is 0.
const DefaultLockTimeout = 10 * time.Second

// Column is one target column.
type Column struct {
	// Name is the column's name. Required.
	Name string
	// Field is the record field it comes from; default Name.
	Field string
	// Type is the SQL type CreateTable uses, e.g. "numeric(18,2)";
	// default inferred.
	Type string
}

// ConfigError is a bad option: Field is its path below sink.postgres (e.g.
// "columns[1].type"), Reason says what is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "sink.postgres." + e.Field + ": " + e.Reason }

func configErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// settings is a validated Config.
type settings struct {
	cfg       Config
	pool      *pgxpool.Config
	table     pgx.Identifier
	positions pgx.Identifier
	upsert    bool
	copy      bool
	sinkName  string
	columns   []Column // Field filled in
	// lockTimeout is the transaction's lock_timeout, e.g. "10000ms".
	lockTimeout string
}

// Validate reports the first problem with c as a *ConfigError. It parses
// the URL (reading libpq environment variables and files as libpq does) but
// does not connect.
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

// maxIdentifier is PostgreSQL's NAMEDATALEN-1: longer names are silently
// truncated by the server, which would make two names one.
const maxIdentifier = 63

// sqlTypeRE accepts type names such as text, bigint, numeric(18,2), double
// precision, timestamp with time zone, varchar(64) and text[]; it keeps a
// column type from carrying anything else into CREATE TABLE.
var sqlTypeRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?( [A-Za-z_][A-Za-z0-9_]*)*\s*(\(\s*\d+\s*(,\s*-?\d+\s*)?\))?( [A-Za-z_][A-Za-z0-9_]*)*(\[\])*$`)

func (c Config) settings() (*settings, error) {
	s := &settings{cfg: c}
	if strings.TrimSpace(c.URL) == "" {
		return nil, configErr("url", "required (postgres://user:password@host:5432/database)")
	}
	pc, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		// pgconn masks the password in its parse errors; scrub anyway in
		// case a malformed URL defeats its parser.
		return nil, configErr("url", "cannot parse (want postgres://user:password@host:port/database or key=value pairs): %s",
			scrub(err.Error(), c.URL))
	}
	s.pool = pc

	if s.table, err = parseTableName(c.Table); err != nil {
		return nil, configErr("table", "%v", err)
	}
	positions := c.PositionsTable
	if positions == "" {
		positions = DefaultPositionsTable
	}
	if s.positions, err = parseTableName(positions); err != nil {
		return nil, configErr("positionsTable", "%v", err)
	}
	if slices.Equal(s.positions, s.table) {
		return nil, configErr("positionsTable", "must differ from table %q", c.Table)
	}

	switch {
	case c.LockTimeout < 0:
		return nil, configErr("lockTimeout", "must not be negative (got %s)", c.LockTimeout)
	case c.LockTimeout == 0:
		s.lockTimeout = fmt.Sprintf("%dms", DefaultLockTimeout.Milliseconds())
	default:
		// lock_timeout 0 would mean no limit: round up to a millisecond.
		s.lockTimeout = fmt.Sprintf("%dms", max(1, (c.LockTimeout+time.Millisecond-1).Milliseconds()))
	}

	switch c.Mode {
	case "", ModeAppend:
		if len(c.KeyColumns) > 0 {
			return nil, configErr("keyColumns", "only used with mode upsert (mode is append)")
		}
	case ModeUpsert:
		s.upsert = true
		if len(c.KeyColumns) == 0 {
			return nil, configErr("keyColumns", "required with mode upsert: the columns of the table's primary key or unique index")
		}
	default:
		return nil, configErr("mode", "%q is not append or upsert", c.Mode)
	}
	switch c.WriteMethod {
	case "", MethodCopy:
		s.copy = true
	case MethodInsert:
	default:
		return nil, configErr("writeMethod", "%q is not copy or insert", c.WriteMethod)
	}

	names := map[string]bool{}
	for i, col := range c.Columns {
		f := fmt.Sprintf("columns[%d]", i)
		if err := checkIdentifier(col.Name); err != nil {
			return nil, configErr(f+".name", "%v", err)
		}
		if names[col.Name] {
			return nil, configErr(f+".name", "column %q is listed twice", col.Name)
		}
		names[col.Name] = true
		if col.Field == "" {
			col.Field = col.Name
		}
		if col.Type != "" && !sqlTypeRE.MatchString(strings.TrimSpace(col.Type)) {
			return nil, configErr(f+".type", "%q is not a SQL type name like numeric(18,2) or timestamptz", col.Type)
		}
		col.Type = strings.TrimSpace(col.Type)
		s.columns = append(s.columns, col)
	}
	seen := map[string]bool{}
	for i, k := range c.KeyColumns {
		f := fmt.Sprintf("keyColumns[%d]", i)
		if err := checkIdentifier(k); err != nil {
			return nil, configErr(f, "%v", err)
		}
		if seen[k] {
			return nil, configErr(f, "column %q is listed twice", k)
		}
		seen[k] = true
		if len(c.Columns) > 0 && !names[k] {
			return nil, configErr(f, "%q is not one of columns[].name", k)
		}
	}

	s.sinkName = c.SinkName
	if s.sinkName == "" {
		s.sinkName = DefaultSinkName
	}
	return s, nil
}

// parseTableName reads "table" or "schema.table".
func parseTableName(name string) (pgx.Identifier, error) {
	if name == "" {
		return nil, fmt.Errorf("required (a table name, optionally schema.table)")
	}
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%q has more than two parts; want table or schema.table", name)
	}
	for _, p := range parts {
		if err := checkIdentifier(p); err != nil {
			return nil, fmt.Errorf("%q: %w", name, err)
		}
	}
	return pgx.Identifier(parts), nil
}

func checkIdentifier(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty name")
	case len(id) > maxIdentifier:
		return fmt.Errorf("name %q is longer than %d bytes (PostgreSQL would truncate it)", id, maxIdentifier)
	case strings.ContainsRune(id, 0):
		return fmt.Errorf("name %q contains a NUL byte", id)
	}
	return nil
}

// RedactURL returns connection string s with its secrets (the password in
// the URL's user info, and the value of every password or sslpassword query
// parameter or key=value pair, keys compared case-insensitively after
// percent-decoding, as in pass%77ord) replaced by mask, for showing a job's
// configuration. Everything else stays as the user wrote it.
func RedactURL(s, mask string) string {
	if s == "" {
		return s
	}
	if u, err := url.Parse(s); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		out := s
		if u.User != nil {
			if _, has := u.User.Password(); has {
				// Rebuild by hand: url.URL.String would escape the mask.
				name := url.User(u.User.Username()).String()
				v := *u
				v.User = url.User(u.User.Username())
				plain := v.String()
				prefix := u.Scheme + "://" + name + "@"
				if strings.HasPrefix(plain, prefix) {
					out = u.Scheme + "://" + name + ":" + mask + "@" + strings.TrimPrefix(plain, prefix)
				} else {
					out = maskUserinfo(s, mask)
				}
			}
		}
		return redactQuery(out, mask)
	}
	if strings.Contains(s, "://") {
		return redactQuery(maskUserinfo(s, mask), mask)
	}
	return redactKeyValues(s, mask)
}

// secretKey reports whether a connection parameter named k (as written,
// possibly percent-encoded) holds a secret: password or sslpassword, in any
// case.
func secretKey(k string) bool {
	if d, err := url.QueryUnescape(k); err == nil {
		k = d
	} else if d, err := url.PathUnescape(k); err == nil {
		k = d
	}
	k = strings.TrimSpace(k)
	return strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword")
}

// keyValueRE finds each key = value pair of a key=value connection string:
// 1 is the key with the = and the spaces around it, 2 the key, 3 the value,
// which may be single-quoted with backslash escapes.
var keyValueRE = regexp.MustCompile(`(?:^|\s)(([^\s=']+)\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s]*)`)

// redactKeyValues masks the values of secret keys in a key=value string.
func redactKeyValues(s, mask string) string {
	var b strings.Builder
	last := 0
	for _, m := range keyValueRE.FindAllStringSubmatchIndex(s, -1) {
		if !secretKey(s[m[4]:m[5]]) {
			continue
		}
		b.WriteString(s[last:m[6]])
		b.WriteString(mask)
		last = m[7]
	}
	b.WriteString(s[last:])
	return b.String()
}

// keyValueSecrets lists the values of secret keys in a key=value string.
func keyValueSecrets(s string) []string {
	var out []string
	for _, m := range keyValueRE.FindAllStringSubmatch(s, -1) {
		if secretKey(m[2]) {
			out = append(out, m[3])
		}
	}
	return out
}

// userinfoRE finds the password of scheme://user:password@ when the URL
// does not parse.
var userinfoRE = regexp.MustCompile(`(://[^:/@?#]*:)([^@]*)(@)`)

func maskUserinfo(s, mask string) string {
	return userinfoRE.ReplaceAllString(s, "${1}"+mask+"${3}")
}

// redactQuery masks password=... and sslpassword=... (keys percent-decoded)
// in the query part of a URL.
func redactQuery(s, mask string) string {
	before, query, ok := strings.Cut(s, "?")
	if !ok {
		return s
	}
	frag := ""
	if q, f, hasFrag := strings.Cut(query, "#"); hasFrag {
		query, frag = q, "#"+f
	}
	params := strings.Split(query, "&")
	for i, p := range params {
		k, _, _ := strings.Cut(p, "=")
		if secretKey(k) {
			params[i] = k + "=" + mask
		}
	}
	return before + "?" + strings.Join(params, "&") + frag
}

// scrub removes every password that connection string connStr carries from
// msg, whatever form the message quotes it in.
func scrub(msg, connStr string) string {
	for _, pw := range passwords(connStr) {
		if len(pw) >= 1 {
			msg = strings.ReplaceAll(msg, pw, "*****")
			if esc := url.QueryEscape(pw); esc != pw {
				msg = strings.ReplaceAll(msg, esc, "*****")
			}
			if esc := url.PathEscape(pw); esc != pw {
				msg = strings.ReplaceAll(msg, esc, "*****")
			}
		}
	}
	return msg
}

// passwords lists the password spellings in a connection string: decoded
// and as written.
func passwords(connStr string) []string {
	var out []string
	if u, err := url.Parse(connStr); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw)
		}
	}
	if strings.Contains(connStr, "://") {
		// Query parameters, also of a URL that does not parse.
		if _, query, ok := strings.Cut(connStr, "?"); ok {
			query, _, _ = strings.Cut(query, "#")
			for _, p := range strings.Split(query, "&") {
				k, v, _ := strings.Cut(p, "=")
				if !secretKey(k) || v == "" {
					continue
				}
				out = append(out, v)
				if d, err := url.QueryUnescape(v); err == nil {
					out = append(out, d)
				}
			}
		}
	}
	if m := userinfoRE.FindStringSubmatch(connStr); m != nil && m[2] != "" {
		out = append(out, m[2])
	}
	for _, v := range keyValueSecrets(connStr) {
		v = strings.Trim(v, "'")
		if v != "" {
			out = append(out, v)
		}
	}
	// Longest first, so a password containing another is masked whole.
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}
