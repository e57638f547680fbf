package secrets

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"

	sluicev1 "github.com/sluicehq/sluice/proto/sluice/v1"
)

// secretName matches field names that suggest a secret. A field it
// matches must be in Fields; a false positive goes in notSecret with the
// reason.
var secretName = regexp.MustCompile(`(?i)(password|passwd|passphrase|secret|token|credential|jaas|private_key|api_key|sslpassword|key_password)`)

var notSecret = map[protoreflect.FullName]string{}

// TestEverySecretFieldIsMarked walks every message of job.proto: a field
// whose name looks secret and is not marked in Fields fails, so a secret
// option added later cannot be forgotten by redaction and encryption. It
// also checks that each entry of Fields names a field of the right type.
func TestEverySecretFieldIsMarked(t *testing.T) {
	fd := sluicev1.File_sluice_v1_job_proto
	seen := map[protoreflect.FullName]bool{}
	var visit func(protoreflect.MessageDescriptors)
	visit = func(msgs protoreflect.MessageDescriptors) {
		for i := 0; i < msgs.Len(); i++ {
			m := msgs.Get(i)
			visit(m.Messages())
			for j := 0; j < m.Fields().Len(); j++ {
				f := m.Fields().Get(j)
				seen[f.FullName()] = true
				_, marked := Fields[f.FullName()]
				if _, ok := notSecret[f.FullName()]; ok || marked {
					continue
				}
				if secretName.MatchString(string(f.Name())) {
					t.Errorf("field %s looks secret but is not marked in secrets.Fields", f.FullName())
				}
			}
		}
	}
	visit(fd.Messages())
	for name, kind := range Fields {
		if !seen[name] {
			t.Errorf("secrets.Fields names %s, which job.proto does not have", name)
			continue
		}
		desc := fd.Messages().ByName(name.Parent().Name())
		f := desc.Fields().ByName(name.Name())
		switch kind {
		case Whole, PostgresConn:
			if f.Kind() != protoreflect.StringKind || f.IsList() || f.IsMap() {
				t.Errorf("%s is marked %d but is not a string", name, kind)
			}
		case SecretProperties:
			if !f.IsMap() || f.MapValue().Kind() != protoreflect.StringKind {
				t.Errorf("%s is marked SecretProperties but is not a map of strings", name)
			}
		}
	}
}

func testKeys(t *testing.T, ids ...string) *Keyring {
	t.Helper()
	var lines []string
	for _, id := range ids {
		sum := sha256.Sum256([]byte(id)) // one key per id across keyrings
		key := sum[:]
		lines = append(lines, id+":"+base64.StdEncoding.EncodeToString(key))
	}
	k, err := ParseKeys([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fullSpec has a secret in every marked field.
func fullSpec() *sluicev1.JobSpec {
	auth := &sluicev1.AwsAuth{AwsAccessKey: "AKIA", AwsSecretKey: "m-aws-secret", AwsSessionToken: "m-aws-token"}
	return &sluicev1.JobSpec{
		Name: "j",
		Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{
			BootstrapServers: "k:9092", Subscribe: []string{"t"},
			Properties: map[string]string{"sasl.username": "me", "sasl.password": "m-sasl", "ssl.key.password": "${env:KEYPASS}"},
		}}},
		Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{
			Url: "postgres://u:m-pg-pass@h:5432/db?sslmode=require&sslpassword=m-pg-sslpass", Table: "t"}}},
		DeadLetter: &sluicev1.Sink{Kind: &sluicev1.Sink_Kafka{Kafka: &sluicev1.KafkaSink{
			BootstrapServers: "k:9092", Topic: "dl", Properties: map[string]string{"sasl.jaas.config": "m-jaas"}}}},
		Checkpoint: &sluicev1.Checkpoint{Kind: &sluicev1.Checkpoint_S3{S3: &sluicev1.S3Checkpoint{Bucket: "b", Auth: auth}}},
	}
}

var markers = []string{"m-aws-secret", "m-aws-token", "m-sasl", "m-pg-pass", "m-pg-sslpass", "m-jaas"}

func TestSealOpenRoundTrip(t *testing.T) {
	k := testKeys(t, "new", "old")
	spec := fullSpec()
	sealed, err := Seal(spec, k)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := proto.Marshal(sealed)
	for _, m := range markers {
		if strings.Contains(string(b), m) {
			t.Errorf("sealed spec holds %q", m)
		}
	}
	if got := sealed.GetSource().GetKafka().GetProperties()["ssl.key.password"]; got != "${env:KEYPASS}" {
		t.Errorf("reference changed by Seal: %q", got)
	}
	if got := sealed.GetSink().GetPostgres().GetUrl(); !strings.HasPrefix(got, "postgres://u:enc:v1:new:") || !strings.Contains(got, "@h:5432/db?sslmode=require&sslpassword=enc:v1:new:") {
		t.Errorf("sealed URL = %q", got)
	}
	if diff := cmp.Diff([]string{"new"}, KeyIDs(sealed)); diff != "" {
		t.Error(diff)
	}
	if lits := Literals(sealed); len(lits) != 0 {
		t.Errorf("Literals(sealed) = %v", lits)
	}
	// Sealing twice keeps the envelopes (they open with the key).
	again, err := Seal(sealed, k)
	if err != nil || !proto.Equal(again, sealed) {
		t.Fatalf("Seal(sealed) = %v", err)
	}
	opened, err := Open(sealed, k)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(spec, opened, protocmp.Transform()); diff != "" {
		t.Errorf("Open(Seal(spec)) differs (-want +got):\n%s", diff)
	}
	// Rotation: a keyring whose primary is newer still opens "new".
	rotated := testKeys(t, "newer", "new")
	if _, err := Open(sealed, rotated); err != nil {
		t.Fatalf("open with rotated keyring: %v", err)
	}
	resealed, _ := Seal(opened, rotated)
	if diff := cmp.Diff([]string{"newer"}, KeyIDs(resealed)); diff != "" {
		t.Error(diff)
	}
	// Without the key, the error names the field and the key id, no value.
	_, err = Open(sealed, testKeys(t, "other"))
	var ke *KeyError
	if !errors.As(err, &ke) || ke.KeyID != "new" || !strings.Contains(err.Error(), "no such key") {
		t.Fatalf("Open with another keyring = %v", err)
	}
}

// An envelope copied into another job or field does not open.
func TestEnvelopeBoundToJobAndField(t *testing.T) {
	k := testKeys(t, "a")
	sealed, err := Seal(fullSpec(), k)
	if err != nil {
		t.Fatal(err)
	}
	moved := proto.Clone(sealed).(*sluicev1.JobSpec)
	moved.Name = "other"
	if _, err := Open(moved, k); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("Open with another job name = %v", err)
	}
	swapped := proto.Clone(sealed).(*sluicev1.JobSpec)
	a := swapped.GetCheckpoint().GetS3().GetAuth()
	a.AwsSecretKey, a.AwsSessionToken = a.AwsSessionToken, a.AwsSecretKey
	if _, err := Open(swapped, k); err == nil {
		t.Fatal("Open with swapped envelopes succeeded")
	}
}

func TestSealWithoutKeyRefusesLiterals(t *testing.T) {
	_, err := Seal(fullSpec(), nil)
	var le *LiteralsError
	if !errors.As(err, &le) {
		t.Fatalf("Seal(nil key) = %v", err)
	}
	want := []string{
		"source.kafka.properties[\"sasl.password\"]",
		"sink.postgres.url (password)",
		"sink.postgres.url (sslpassword)",
		"deadLetter.kafka.properties[\"sasl.jaas.config\"]",
		"checkpoint.s3.auth.awsSecretKey",
		"checkpoint.s3.auth.awsSessionToken",
	}
	if diff := cmp.Diff(want, le.Fields, cmpSorted); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	for _, m := range markers {
		if strings.Contains(err.Error(), m) {
			t.Errorf("error quotes %q: %v", m, err)
		}
	}
	// References only: accepted without a key, unchanged.
	refs := &sluicev1.JobSpec{Name: "r", Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{
		Url: "postgres://u:${file:/run/secrets/pg/password}@h/db"}}}}
	out, err := Seal(refs, nil)
	if err != nil || !proto.Equal(out, refs) {
		t.Fatalf("Seal(references, nil) = %v, %v", out, err)
	}
}

var cmpSorted = cmp.Transformer("sort", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
})

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("p@ss:w/rd ?&'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SASL": "s3cr3t", "PGURL": "postgres://x:y@h/db"}
	r := Resolver{LookupEnv: func(n string) (string, bool) { v, ok := env[n]; return v, ok }, ReadFile: os.ReadFile}
	tests := []struct{ name, url, want string }{
		{"whole URL", "${env:PGURL}", "postgres://x:y@h/db"},
		{"userinfo password", "postgres://u:${file:" + pw + "}@h/db", "postgres://u:p%40ss%3Aw%2Frd%20%3F&%27@h/db"},
		{"query password", "postgres://u@h/db?password=${file:" + pw + "}&sslmode=disable", "postgres://u@h/db?password=p%40ss%3Aw%2Frd+%3F%26%27&sslmode=disable"},
		{"key=value", "host=h password=${file:" + pw + "} dbname=d", `host=h password='p@ss:w/rd ?&\'' dbname=d`},
		{"key=value quoted", "host=h password='${file:" + pw + "}'", `host=h password='p@ss:w/rd ?&\''`},
		{"literal kept", "postgres://u:lit@h/db", "postgres://u:lit@h/db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spec := &sluicev1.JobSpec{Name: "j",
				Source: &sluicev1.Source{Kind: &sluicev1.Source_Kafka{Kafka: &sluicev1.KafkaSource{Properties: map[string]string{"sasl.password": "${env:SASL}"}}}},
				Sink:   &sluicev1.Sink{Kind: &sluicev1.Sink_Postgres{Postgres: &sluicev1.PostgresSink{Url: tc.url}}}}
			out, values, err := Resolve(spec, r)
			if err != nil {
				t.Fatal(err)
			}
			if got := out.GetSink().GetPostgres().GetUrl(); got != tc.want {
				t.Errorf("url = %q, want %q", got, tc.want)
			}
			if got := out.GetSource().GetKafka().GetProperties()["sasl.password"]; got != "s3cr3t" {
				t.Errorf("sasl.password = %q", got)
			}
			if spec.GetSource().GetKafka().GetProperties()["sasl.password"] != "${env:SASL}" {
				t.Error("Resolve changed its input")
			}
			if !strings.Contains(strings.Join(values, "|"), "s3cr3t") {
				t.Errorf("values = %v", values)
			}
		})
	}
}

func TestResolveErrorsNameFieldAndReference(t *testing.T) {
	r := Resolver{LookupEnv: func(string) (string, bool) { return "", false }, ReadFile: os.ReadFile}
	spec := &sluicev1.JobSpec{Name: "j", Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Kinesis{Kinesis: &sluicev1.KinesisSink{
		AwsSecretKey: "${env:AWS_SECRET}"}}}}
	_, _, err := Resolve(spec, r)
	var re *ReferenceError
	if !errors.As(err, &re) || re.Field != "sink.kinesis.awsSecretKey" || re.Reference != "${env:AWS_SECRET}" {
		t.Fatalf("Resolve = %v", err)
	}
	spec.GetSink().GetKinesis().AwsSecretKey = "${file:/does/not/exist}"
	if _, _, err = Resolve(spec, r); err == nil || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "${file:/does/not/exist}") {
		t.Fatalf("Resolve(missing file) = %v", err)
	}
	spec.GetSink().GetKinesis().AwsSecretKey = "enc:v1:k:AAAA"
	if _, _, err = Resolve(spec, r); err == nil || !strings.Contains(err.Error(), "still encrypted") {
		t.Fatalf("Resolve(envelope) = %v", err)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct{ value, want string }{
		{"${env:OK_1}", ""},
		{"${file:/run/secrets/x}", ""},
		{"${env:1BAD}", "not an environment variable name"},
		{"${file:relative}", "must be absolute"},
		{"${vault:x}", "not ${env:NAME} or ${file:/absolute/path}"},
		{"${env:X", "not ${env:NAME}"},
		{"enc:v1:k:AAAA", ""},
		{"enc:v1:bad key:AAAA", "malformed encrypted value"},
		{"literal", ""},
	}
	for _, tc := range tests {
		spec := &sluicev1.JobSpec{Sink: &sluicev1.Sink{Kind: &sluicev1.Sink_Kinesis{Kinesis: &sluicev1.KinesisSink{AwsSecretKey: tc.value}}}}
		ps := Check(spec)
		switch {
		case tc.want == "" && len(ps) > 0:
			t.Errorf("Check(%q) = %v", tc.value, ps)
		case tc.want != "" && (len(ps) != 1 || !strings.Contains(ps[0].Description, tc.want) || ps[0].Field != "sink.kinesis.awsSecretKey"):
			t.Errorf("Check(%q) = %v, want %q", tc.value, ps, tc.want)
		}
	}
}

func TestRedact(t *testing.T) {
	spec := fullSpec()
	Redact(spec, "*")
	p := spec.GetSource().GetKafka().GetProperties()
	if p["sasl.password"] != "*" || p["ssl.key.password"] != "${env:KEYPASS}" || p["sasl.username"] != "me" {
		t.Errorf("properties = %v", p)
	}
	if got := spec.GetSink().GetPostgres().GetUrl(); got != "postgres://u:*@h:5432/db?sslmode=require&sslpassword=*" {
		t.Errorf("url = %q", got)
	}
	b, _ := proto.Marshal(spec)
	for _, m := range markers {
		if strings.Contains(string(b), m) {
			t.Errorf("redacted spec holds %q", m)
		}
	}
}

func TestPostgresSpans(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"postgres://u:pw@h/db", []string{"pw"}},
		{"postgres://u@h/db", nil},
		{"postgres://u:${file:/a/b@c}@h/db", []string{"${file:/a/b@c}"}},
		{"postgres://u:p@w@h/db", []string{"p@w"}},
		{"postgresql://h/db?Password=x&ssl%70assword=y&sslmode=z#f", []string{"x", "y"}},
		{"host=h password=a sslpassword='b c' user=u", []string{"a", "b c"}},
		{"host=h password=${env:P} user=u", []string{"${env:P}"}},
	}
	for _, tc := range tests {
		var got []string
		for _, sp := range postgresSpans(tc.in) {
			got = append(got, tc.in[sp.start:sp.end])
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("postgresSpans(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestParseKeys(t *testing.T) {
	key := make([]byte, KeySize)
	key[5] = 9
	b64 := base64.StdEncoding.EncodeToString(key)
	k, err := ParseKeys([]byte(b64 + "\n"))
	if err != nil || k.Primary() != derivedID(key) {
		t.Fatalf("ParseKeys(base64) = %v, %v", k, err)
	}
	raw := make([]byte, KeySize)
	raw[0] = 0xff
	if k, err := ParseKeys(raw); err != nil || k.Primary() != derivedID(raw) {
		t.Fatalf("ParseKeys(raw) = %v, %v", k, err)
	}
	k, err = ParseKeys([]byte("# comment\n\nk2:" + b64 + "\nk1:" + base64.StdEncoding.EncodeToString(raw) + "\n"))
	if err != nil || cmp.Diff([]string{"k2", "k1"}, k.IDs()) != "" {
		t.Fatalf("ParseKeys(two) = %v, %v", k, err)
	}
	for in, want := range map[string]string{
		"":                        "holds no key",
		"k:" + b64[:20]:           "key is",
		"k:" + b64 + "\nk:" + b64: "appears twice",
		"bad id:" + b64:           "key id must be",
		"k:!!!":                   "not base64",
	} {
		if _, err := ParseKeys([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseKeys(%q) = %v, want %q", in, err, want)
		} else if strings.Contains(err.Error(), b64[:10]) {
			t.Errorf("error quotes key material: %v", err)
		}
	}
}

func TestGenerateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "secrets.key")
	created, err := GenerateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("GenerateKeyFile = %v, %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", st.Mode(), err)
	}
	k1, err := LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if created, err := GenerateKeyFile(path); err != nil || created {
		t.Fatalf("second GenerateKeyFile = %v, %v", created, err)
	}
	k2, _ := LoadKeyFile(path)
	if k1.Primary() != k2.Primary() {
		t.Fatal("key file replaced")
	}
}
