package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sluicehq/sluice/pkg/stream"
)

func TestConfigValidate(t *testing.T) {
	const url = "postgres://u:secretpw@127.0.0.1:5432/db"
	ok := Config{URL: url, Table: "t"}
	with := func(f func(*Config)) Config {
		c := ok
		f(&c)
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means valid
	}{
		{"minimal", ok, ""},
		{"key=value url", with(func(c *Config) { c.URL = "host=127.0.0.1 port=5432 user=u password=secretpw dbname=db" }), ""},
		{"schema table", with(func(c *Config) { c.Table = "analytics.flows" }), ""},
		{"upsert", with(func(c *Config) { c.Mode = "upsert"; c.KeyColumns = []string{"id"} }), ""},
		{"columns", with(func(c *Config) {
			c.Columns = []Column{{Name: "v", Type: "numeric(18,2)"}, {Name: "at", Field: "ts", Type: "timestamp with time zone"}, {Name: "tags", Type: "text[]"}}
		}), ""},
		{"insert", with(func(c *Config) { c.WriteMethod = "insert" }), ""},
		{"no url", with(func(c *Config) { c.URL = "" }), "sink.postgres.url: required"},
		{"bad url", with(func(c *Config) { c.URL = "postgres://u:secretpw@host:notaport/db" }), "sink.postgres.url: cannot parse"},
		{"no table", with(func(c *Config) { c.Table = "" }), "sink.postgres.table: required"},
		{"three parts", with(func(c *Config) { c.Table = "a.b.c" }), "sink.postgres.table: \"a.b.c\" has more than two parts"},
		{"empty part", with(func(c *Config) { c.Table = "a." }), "sink.postgres.table: \"a.\": empty name"},
		{"long name", with(func(c *Config) { c.Table = strings.Repeat("x", 64) }), "longer than 63 bytes"},
		{"mode", with(func(c *Config) { c.Mode = "merge" }), `sink.postgres.mode: "merge" is not append or upsert`},
		{"upsert without keys", with(func(c *Config) { c.Mode = "upsert" }), "sink.postgres.keyColumns: required with mode upsert"},
		{"keys with append", with(func(c *Config) { c.KeyColumns = []string{"id"} }), "sink.postgres.keyColumns: only used with mode upsert"},
		{"key not a column", with(func(c *Config) {
			c.Mode, c.KeyColumns, c.Columns = "upsert", []string{"id"}, []Column{{Name: "v"}}
		}), `sink.postgres.keyColumns[0]: "id" is not one of columns[].name`},
		{"duplicate key", with(func(c *Config) { c.Mode, c.KeyColumns = "upsert", []string{"id", "id"} }), "keyColumns[1]: column \"id\" is listed twice"},
		{"method", with(func(c *Config) { c.WriteMethod = "bulk" }), `sink.postgres.writeMethod: "bulk" is not copy or insert`},
		{"column name", with(func(c *Config) { c.Columns = []Column{{Field: "x"}} }), "sink.postgres.columns[0].name: empty name"},
		{"duplicate column", with(func(c *Config) { c.Columns = []Column{{Name: "a"}, {Name: "a"}} }), "sink.postgres.columns[1].name: column \"a\" is listed twice"},
		{"type injection", with(func(c *Config) { c.Columns = []Column{{Name: "a", Type: "int); DROP TABLE x; --"}} }), "sink.postgres.columns[0].type: \"int); DROP TABLE x; --\" is not a SQL type name"},
		{"positions same as table", with(func(c *Config) { c.PositionsTable = "t" }), "sink.postgres.positionsTable: must differ from table"},
		{"positions name", with(func(c *Config) { c.PositionsTable = "a.b.c" }), "sink.postgres.positionsTable:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v, want %q", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := map[string]string{
		"postgres://u:secret@h:5432/db?sslmode=disable":          "postgres://u:*****@h:5432/db?sslmode=disable",
		"postgresql://us%40er:p%40ss@h1:5432,h2:5433/db":         "postgresql://us%40er:*****@h1:5432,h2:5433/db",
		"postgres://u@h/db":                                      "postgres://u@h/db",
		"postgres://h/db?user=u&password=secret&sslmode=require": "postgres://h/db?user=u&password=*****&sslmode=require",
		"host=h user=u password=secret dbname=db":                "host=h user=u password=***** dbname=db",
		"host=h password = 'sec ret\\'s' dbname=db":              "host=h password = ***** dbname=db",
		"postgres://u:sec%ZZret@h/db":                            "postgres://u:*****@h/db",
		"":                                                       "",
	}
	for in, want := range tests {
		if got := RedactURL(in, "*****"); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestScrub(t *testing.T) {
	conn := "postgres://u:p%40ss@h/db?password=other"
	msg := "failed: p@ss and p%40ss and other"
	if got := scrub(msg, conn); strings.Contains(got, "p@ss") || strings.Contains(got, "p%40ss") || strings.Contains(got, "other") {
		t.Fatalf("scrub left a password: %q", got)
	}
}

func TestCreateTableSQL(t *testing.T) {
	s, err := Config{URL: "postgres://h/db", Table: "s.t", Mode: "upsert", KeyColumns: []string{"id"},
		Columns: []Column{{Name: "id"}, {Name: "amount", Type: "numeric(18,2)"}, {Name: "at", Field: "ts"}, {Name: "doc"}, {Name: "none"}}}.settings()
	if err != nil {
		t.Fatal(err)
	}
	rows := []stream.Row{
		{"id": nil, "ts": time.Now(), "doc": nil},
		{"id": int64(1), "doc": map[string]any{"a": 1}},
	}
	cols := s.chunkColumns(nil, rows)
	got := s.createTableSQL(cols, rows)
	want := `CREATE TABLE IF NOT EXISTS "s"."t" ("id" bigint, "amount" numeric(18,2), "at" timestamptz, "doc" jsonb, "none" text, PRIMARY KEY ("id"))`
	if got != want {
		t.Fatalf("createTableSQL:\n got %s\nwant %s", got, want)
	}
	if got, want := s.insertSQL(cols[:2], 2), `INSERT INTO "s"."t" ("id", "amount") VALUES ($1, $2), ($3, $4) ON CONFLICT ("id") DO UPDATE SET "amount" = EXCLUDED."amount"`; got != want {
		t.Fatalf("insertSQL:\n got %s\nwant %s", got, want)
	}
	if got, want := s.conflictClause(cols[:1]), ` ON CONFLICT ("id") DO NOTHING`; got != want {
		t.Fatalf("conflictClause = %s, want %s", got, want)
	}
}

func TestChunkColumns(t *testing.T) {
	s, err := Config{URL: "postgres://h/db", Table: "t"}.settings()
	if err != nil {
		t.Fatal(err)
	}
	rows := []stream.Row{{"b": 1, "z": 2}, {"a": 3, "y": 4}}
	got := colNames(s.chunkColumns([]string{"z", "b"}, rows))
	if diff := cmp.Diff([]string{"z", "b", "a", "y"}, got); diff != "" {
		t.Fatalf("columns (-want +got):\n%s", diff)
	}
}

func TestDedupeKeepsLastPerKey(t *testing.T) {
	rows := [][]any{{int64(1), "a"}, {int64(2), "b"}, {int64(1), "c"}, {"1", "d"}}
	got := dedupe(rows, []int{0})
	want := [][]any{{int64(2), "b"}, {int64(1), "c"}, {"1", "d"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("dedupe (-want +got):\n%s", diff)
	}
}

// RedactURL used to mask only a key spelled exactly "password": sslpassword
// and percent-encoded keys that the driver decodes to password (pass%77ord)
// were shown in clear, in URLs and in key=value strings alike.
func TestRedactURLSecretKeys(t *testing.T) {
	for _, tt := range []struct{ name, in, want string }{
		{"url sslpassword", "postgres://u@h/db?sslpassword=secret&sslmode=require", "postgres://u@h/db?sslpassword=*****&sslmode=require"},
		{"url SSLPassword", "postgres://u@h/db?SSLPassword=secret", "postgres://u@h/db?SSLPassword=*****"},
		{"url encoded password key", "postgres://u@h/db?pass%77ord=secret", "postgres://u@h/db?pass%77ord=*****"},
		{"url encoded sslpassword key", "postgres://u@h/db?ssl%70assword=secret&x=1", "postgres://u@h/db?ssl%70assword=*****&x=1"},
		{"url encoded upper", "postgresql://h/db?%50ASSWORD=secret", "postgresql://h/db?%50ASSWORD=*****"},
		{"url both", "postgres://u:a@h/db?password=b&sslpassword=c", "postgres://u:*****@h/db?password=*****&sslpassword=*****"},
		{"unparsable url", "postgres://u:x@h:bad/db?ssl%70assword=secret", "postgres://u:*****@h:bad/db?ssl%70assword=*****"},
		{"kv sslpassword", "host=h sslpassword=secret sslkey=/k", "host=h sslpassword=***** sslkey=/k"},
		{"kv SSLPASSWORD quoted", "host=h SSLPASSWORD = 'se cret' user=u", "host=h SSLPASSWORD = ***** user=u"},
		{"kv encoded key", "host=h pass%77ord=secret", "host=h pass%77ord=*****"},
		{"kv encoded sslpassword first", "ssl%70assword=secret host=h", "ssl%70assword=***** host=h"},
		{"kv password inside another value", "options='-c password=x' password=secret", "options='-c password=x' password=*****"},
		{"kv not a secret", "host=h passwordfile=/p user=u", "host=h passwordfile=/p user=u"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactURL(tt.in, "*****"); got != tt.want {
				t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := scrub("error: secret", tt.in); strings.Contains(got, "secret") && strings.Contains(tt.in, "secret") {
				t.Errorf("scrub with %q left the secret: %q", tt.in, got)
			}
		})
	}
}
