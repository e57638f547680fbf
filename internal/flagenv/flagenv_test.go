package flagenv

import (
	"flag"
	"strings"
	"testing"
	"time"
)

func TestEnvFillsUnsetFlags(t *testing.T) {
	t.Setenv("SLUICE_HEARTBEAT_TIMEOUT", "7s")
	t.Setenv("SLUICE_LISTEN", ":1")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	hb := fs.Duration("heartbeat-timeout", time.Second, "")
	listen := fs.String("listen", ":7077", "")
	if err := Parse(fs, []string{"--listen", ":2"}); err != nil {
		t.Fatal(err)
	}
	if *hb != 7*time.Second || *listen != ":2" {
		t.Fatalf("heartbeat-timeout %s (want 7s from env), listen %s (want the flag's :2)", *hb, *listen)
	}
}

func TestBadEnvValueNamesVariable(t *testing.T) {
	t.Setenv("SLUICE_SLOTS", "many")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Int("slots", 1, "")
	err := Parse(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "SLUICE_SLOTS") {
		t.Fatalf("err = %v, want it to name SLUICE_SLOTS", err)
	}
}

func TestList(t *testing.T) {
	if got := List(" a, ,b,"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("List = %q", got)
	}
}

func TestBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		str  string
		bad  bool
	}{
		{in: "1GiB", want: 1 << 30, str: "1GiB"},
		{in: "512MiB", want: 512 << 20, str: "512MiB"},
		{in: "2GB", want: 2e9, str: "1953125KiB"},
		{in: "1048576", want: 1 << 20, str: "1MiB"},
		{in: "100B", want: 100, str: "100"},
		{in: " 3 KiB ", want: 3 << 10, str: "3KiB"},
		{in: "lots", bad: true},
		{in: "-1MiB", bad: true},
		{in: "9999999TiB", bad: true},
	} {
		var b Bytes
		err := b.Set(tc.in)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("Set(%q) = %v, want an error quoting it", tc.in, err)
			}
			continue
		}
		if err != nil || int64(b) != tc.want || b.String() != tc.str {
			t.Errorf("Set(%q): %d %q %v, want %d %q", tc.in, int64(b), b.String(), err, tc.want, tc.str)
		}
	}
}
