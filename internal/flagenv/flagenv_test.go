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
