package jobspec

import (
	"strings"
	"testing"
)

func TestCompileCommitOffsetsToGroup(t *testing.T) {
	tests := []struct {
		name, group, want string
	}{
		{"off", "", ""},
		{"a group", "sluice-treasury", ""},
		{"255 characters", strings.Repeat("g", 255), ""},
		{"256 characters", strings.Repeat("g", 256), "source.kafka.commitOffsetsToGroup: group id is 256 characters long; at most 255"},
		{"blank", "   ", "source.kafka.commitOffsetsToGroup: must not be blank"},
		{"control character", "a\tb", "source.kafka.commitOffsetsToGroup: group id \"a\\tb\" holds a control character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseYAML([]byte(good))
			if err != nil {
				t.Fatal(err)
			}
			spec.GetSource().GetKafka().CommitOffsetsToGroup = tt.group
			j, err := Compile(spec)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Compile() = %v", err)
				}
				if got := j.source.(kafkaSource).cfg.CommitOffsetsToGroup; got != tt.group {
					t.Fatalf("commitOffsetsToGroup compiled to %q, want %q", got, tt.group)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Compile() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestParseYAMLCommitOffsetsToGroup(t *testing.T) {
	spec, err := ParseYAML([]byte(strings.Replace(good, "maxOffsetsPerTrigger: 50000}", "maxOffsetsPerTrigger: 50000, commitOffsetsToGroup: sluice-treasury}", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if got := spec.GetSource().GetKafka().GetCommitOffsetsToGroup(); got != "sluice-treasury" {
		t.Fatalf("commitOffsetsToGroup = %q", got)
	}
}
