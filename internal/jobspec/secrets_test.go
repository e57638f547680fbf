package jobspec

import (
	"os"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/secrets"
	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

func pgSpec(url string) *sluicev1.JobSpec {
	return &sluicev1.JobSpec{Name: "j",
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{BootstrapServers: "k:9092", Subscribe: []string{"t"},
			Properties: map[string]string{"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "${env:SLUICE_TEST_SASL}"}}}},
		Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{Url: url, Table: "t"}}}}
}

// Validation checks only the syntax of references: the variables and
// files they name need not exist where the spec is submitted, and the Job
// it returns builds nothing from placeholders.
func TestCompileValidatesReferenceSyntaxOnly(t *testing.T) {
	for _, url := range []string{"${env:SLUICE_TEST_PGURL}", "postgres://u:${file:/run/secrets/pg}@h/db", "postgres://u@h/db?password=${env:PGPASS}"} {
		j, err := Compile(pgSpec(url))
		if err != nil {
			t.Fatalf("Compile(%q) = %v", url, err)
		}
		if j.Spec.GetSink().GetPostgres().GetUrl() != url {
			t.Errorf("Compile changed the spec's url to %q", j.Spec.GetSink().GetPostgres().GetUrl())
		}
		if _, err := j.NewSink(nil); err == nil || !strings.Contains(err.Error(), "validation only") {
			t.Errorf("NewSink of a validation-only job = %v", err)
		}
	}
	_, err := Compile(pgSpec("postgres://u:${env:1x}@h/db"))
	if err == nil || !strings.Contains(err.Error(), "sink.postgres.url (password): reference ${env:1x}") {
		t.Fatalf("Compile(bad reference) = %v", err)
	}
}

func TestCompileForUseResolves(t *testing.T) {
	t.Setenv("SLUICE_TEST_SASL", "sasl-marker")
	t.Setenv("SLUICE_TEST_PGURL", "postgres://u:pg-marker@h/db")
	j, err := CompileForUse(pgSpec("${env:SLUICE_TEST_PGURL}"))
	if err != nil {
		t.Fatal(err)
	}
	if j.validateOnly {
		t.Fatal("CompileForUse left placeholders")
	}
	if got := j.Spec.GetSink().GetPostgres().GetUrl(); got != "${env:SLUICE_TEST_PGURL}" {
		t.Errorf("j.Spec url = %q, want the reference", got)
	}
	if j.Hash != Hash(pgSpec("${env:SLUICE_TEST_PGURL}")) {
		t.Error("hash is not of the spec as written")
	}
	os.Unsetenv("SLUICE_TEST_SASL")
	_, err = CompileForUse(pgSpec("${env:SLUICE_TEST_PGURL}"))
	if err == nil || !strings.Contains(err.Error(), `source.kafka.properties["sasl.password"]: secret reference ${env:SLUICE_TEST_SASL}: environment variable SLUICE_TEST_SASL is not set`) {
		t.Fatalf("CompileForUse(unset variable) = %v", err)
	}
}

// A connector that quotes a bad option in its error must not carry a
// resolved secret into the error (which ends up in the catalog as the
// job's last error).
func TestCompileForUseScrubsErrors(t *testing.T) {
	t.Setenv("SLUICE_TEST_SASL", "x")
	t.Setenv("SLUICE_TEST_PGURL", "not a url with scrubme-marker")
	_, err := Compile(pgSpec("${env:SLUICE_TEST_PGURL}"), ResolveSecrets(secrets.OS))
	if err == nil {
		t.Fatal("Compile accepted a bad URL")
	}
	if strings.Contains(err.Error(), "scrubme-marker") {
		t.Fatalf("error holds the secret: %v", err)
	}
}

func TestRedactKeepsReferences(t *testing.T) {
	r := Redact(pgSpec("postgres://u:${env:PGPASS}@h/db?sslpassword=lit"))
	if got := r.GetSink().GetPostgres().GetUrl(); got != "postgres://u:${env:PGPASS}@h/db?sslpassword="+Redacted {
		t.Errorf("redacted url = %q", got)
	}
	if got := r.GetSource().GetKafka().GetProperties()["sasl.password"]; got != "${env:SLUICE_TEST_SASL}" {
		t.Errorf("redacted reference = %q", got)
	}
}
