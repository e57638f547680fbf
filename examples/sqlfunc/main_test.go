//go:build duckdb_arrow

package main

import (
	"context"
	"strings"
	"testing"
)

// TestRun runs the example end to end and checks its table.
func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	want := `branch  account         eur   payments
lisbon  PT50 **** 0154  1660  2
london  GB29 **** 6819  451   2
london  GB94 **** 3459  58.5  1
`
	if out.String() != want {
		t.Errorf("output\n%s\nwant\n%s", out.String(), want)
	}
}
