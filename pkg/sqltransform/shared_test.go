//go:build duckdb_arrow

package sqltransform

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/pkg/columnar"
)

func sharedConfig() Config {
	return Config{
		Source: columnar.KafkaSchema(false),
		Steps:  []Step{decodeJSON("branch STRING, amount BIGINT"), query(1, "t", "select branch, sum(amount) as s from t group by branch")},
	}
}

// TestCompileSharedRemembers: the same configuration compiles once, and
// every part of a configuration that a compile reads tells two apart.
func TestCompileSharedRemembers(t *testing.T) {
	ctx := context.Background()
	first, err := CompileShared(ctx, sharedConfig())
	if err != nil {
		t.Fatal(err)
	}
	again, err := CompileShared(ctx, sharedConfig())
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Fatal("the same configuration was compiled again")
	}

	for _, tc := range []struct {
		name   string
		change func(*Config)
	}{
		{"source with headers", func(c *Config) { c.Source = columnar.KafkaSchema(true) }},
		{"decode schema", func(c *Config) { c.Steps[0].Decode.Schema = "branch STRING, amount INT" }},
		{"decode field", func(c *Config) { c.Steps[0].Decode.Field = "key" }},
		{"query", func(c *Config) { c.Steps[1].SQL.Query = "select branch, max(amount) as s from t group by branch" }},
		{"view", func(c *Config) {
			c.Steps[1].SQL = &SQL{View: "u", Query: "select branch, sum(amount) as s from u group by branch"}
		}},
		{"path", func(c *Config) { c.Steps[1].Path = "transforms[2]" }},
		{"bad records", func(c *Config) { c.OnBad = SkipBad }},
		{"output mode", func(c *Config) { c.OutputMode = Update }},
		{"a step more", func(c *Config) {
			c.Steps = append(c.Steps[:1], Step{Path: "transforms[1]", Filter: "amount > 0"}, query(2, "t", c.Steps[1].SQL.Query))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := sharedConfig()
			tc.change(&cfg)
			p, err := CompileShared(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if p == first {
				t.Fatal("a different configuration got the remembered pipeline")
			}
			if again, err := CompileShared(ctx, cfg); err != nil || again != p {
				t.Fatalf("compiled again (%v)", err)
			}
		})
	}
}

// TestCompileSharedForgetsErrors: a configuration that does not compile
// reports its errors each time, and is not remembered as anything.
func TestCompileSharedForgetsErrors(t *testing.T) {
	cfg := sharedConfig()
	cfg.Steps[1].SQL.Query = "select branch, sum(nope) as s from t group by branch"
	for range 2 {
		_, err := CompileShared(context.Background(), cfg)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "transforms[1].sql.query" {
			t.Fatalf("got %v, want a FieldError of transforms[1].sql.query", err)
		}
	}
}

// TestCompileSharedEvicts: past recentSize configurations, the least
// recently used one is compiled again; a used one stays.
func TestCompileSharedEvicts(t *testing.T) {
	ctx := context.Background()
	cfgs := make([]Config, recentSize+1)
	ps := make([]*Pipeline, len(cfgs))
	for i := range cfgs {
		cfgs[i] = Config{Source: columnar.KafkaSchema(false),
			Steps: []Step{query(0, "", fmt.Sprintf("select offset + %d as n from source", i))}}
	}
	for i, cfg := range cfgs[:recentSize] {
		p, err := CompileShared(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	// Use the oldest, so that the second oldest goes first.
	if p, _ := CompileShared(ctx, cfgs[0]); p != ps[0] {
		t.Fatal("the oldest was compiled again before anything was evicted")
	}
	if _, err := CompileShared(ctx, cfgs[recentSize]); err != nil {
		t.Fatal(err)
	}
	if p, _ := CompileShared(ctx, cfgs[0]); p != ps[0] {
		t.Fatal("the recently used pipeline was evicted")
	}
	if p, _ := CompileShared(ctx, cfgs[1]); p == ps[1] {
		t.Fatal("the least recently used pipeline was not evicted")
	}
}
