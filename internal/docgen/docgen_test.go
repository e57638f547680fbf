package docgen

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	protoPath    = "../../proto/sluice/v1/job.proto"
	pagePath     = "../../docs/reference/job-spec.md"
	apiProtoPath = "../../proto/sluice/v1/driver.proto"
	apiPagePath  = "../../docs/reference/api.md"
)

func loadProto(t *testing.T, path string) *File {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(string(src))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

func loadJobProto(t *testing.T) *File { t.Helper(); return loadProto(t, protoPath) }

// TestReferenceUpToDate fails when docs/reference/job-spec.md is not what
// the generator makes of job.proto now.
func TestReferenceUpToDate(t *testing.T) {
	checkPage(t, pagePath, loadJobProto(t).Markdown(Root))
}

// TestAPIReferenceUpToDate fails when docs/reference/api.md is not what the
// generator makes of driver.proto (and job.proto, which it links to) now.
func TestAPIReferenceUpToDate(t *testing.T) {
	checkPage(t, apiPagePath, loadProto(t, apiProtoPath).APIMarkdown(APIService, loadJobProto(t)))
}

// TestEveryAPIFieldDocumented fails when an rpc of DriverService, or a field
// of a message reachable from its requests and responses, has no comment in
// driver.proto.
func TestEveryAPIFieldDocumented(t *testing.T) {
	for _, name := range loadProto(t, apiProtoPath).ServiceUndocumented(APIService) {
		t.Errorf("%s has no comment in proto/sluice/v1/driver.proto: describe it, then run make proto and make docs", name)
	}
}

func checkPage(t *testing.T, pagePath, want string) {
	t.Helper()
	got, err := os.ReadFile(pagePath)
	if err != nil {
		t.Fatalf("%v: run make docs", err)
	}
	if string(got) != want {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(want, "\n")
		for i := 0; i < len(gl) || i < len(wl); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s is stale (first difference at line %d): run make docs and commit it\n have: %s\n want: %s",
					filepath.Base(pagePath), i+1, g, w)
			}
		}
	}
}

// TestEveryOptionDocumented fails when a field reachable from JobSpec has
// no comment in job.proto.
func TestEveryOptionDocumented(t *testing.T) {
	for _, name := range loadJobProto(t).Undocumented(Root) {
		t.Errorf("%s has no comment in proto/sluice/v1/job.proto: describe it (and its default), then run make proto and make docs", name)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want *File
	}{
		{
			name: "comments",
			src: `syntax = "proto3";
package x.v1;

// M is a message.
// Second line.
message M {
  // a is
  //   the first.
  string a = 1;

  // Detached: a blank line separates it from b.

  int64 b = 2;
  bool c = 3; // trailing
  /* block */ double d = 4;
  /*
   * multi
   * line
   */
  string e = 5;
}
`,
			want: &File{Package: "x.v1", Messages: []*Message{{Name: "M", Comment: "M is a message. Second line.", Fields: []*Field{
				{Name: "a", JSONName: "a", Number: 1, Type: "string", Comment: "a is the first."},
				{Name: "b", JSONName: "b", Number: 2, Type: "int64"},
				{Name: "c", JSONName: "c", Number: 3, Type: "bool", Comment: "trailing"},
				{Name: "d", JSONName: "d", Number: 4, Type: "double", Comment: "block"},
				{Name: "e", JSONName: "e", Number: 5, Type: "string", Comment: "multi line"},
			}}}},
		},
		{
			name: "oneofs",
			src: `message S {
  // Which one.
  oneof kind {
    // A.
    A a = 1;
    bool b_flag = 2;
  }
  int32 after = 3;
}
message A {}
`,
			want: &File{Messages: []*Message{
				{Name: "S", Fields: []*Field{
					{Name: "a", JSONName: "a", Number: 1, Type: "A", Oneof: "kind", Comment: "A."},
					{Name: "b_flag", JSONName: "bFlag", Number: 2, Type: "bool", Oneof: "kind"},
					{Name: "after", JSONName: "after", Number: 3, Type: "int32"},
				}},
				{Name: "A"},
			}},
		},
		{
			name: "nested messages and enums",
			src: `message Outer {
  message Inner {
    string x = 1;
  }
  enum Mode {
    // Unset.
    MODE_UNSPECIFIED = 0;
    MODE_ON = 1 [deprecated = true];
  }
  Inner inner = 1;
  Mode mode = 2;
}
`,
			want: &File{
				Messages: []*Message{
					{Name: "Outer", Fields: []*Field{
						{Name: "inner", JSONName: "inner", Number: 1, Type: "Inner"},
						{Name: "mode", JSONName: "mode", Number: 2, Type: "Mode"},
					}},
					{Name: "Outer.Inner", Fields: []*Field{{Name: "x", JSONName: "x", Number: 1, Type: "string"}}},
				},
				Enums: []*Enum{{Name: "Outer.Mode", Values: []*EnumValue{
					{Name: "MODE_UNSPECIFIED", Number: 0, Comment: "Unset."},
					{Name: "MODE_ON", Number: 1},
				}}},
			},
		},
		{
			name: "repeated, optional, map, reserved, options",
			src: `option go_package = "a/b;c";
import "google/protobuf/timestamp.proto";
message R {
  option deprecated = true;
  reserved 4, 6 to 8;
  reserved "old_name";
  repeated string topic_names = 1;
  optional bool fail_on_data_loss = 2;
  map<string, string> properties = 3 [deprecated = true];
  string renamed = 5 [json_name = "otherName"];
  google.protobuf.Timestamp create_time = 9;
}
`,
			want: &File{Messages: []*Message{{Name: "R", Fields: []*Field{
				{Name: "topic_names", JSONName: "topicNames", Number: 1, Type: "string", Repeated: true},
				{Name: "fail_on_data_loss", JSONName: "failOnDataLoss", Number: 2, Type: "bool", Optional: true},
				{Name: "properties", JSONName: "properties", Number: 3, Type: "string", KeyType: "string", Map: true},
				{Name: "renamed", JSONName: "otherName", Number: 5, Type: "string"},
				{Name: "create_time", JSONName: "createTime", Number: 9, Type: "google.protobuf.Timestamp"},
			}}}},
		},
		{
			name: "trailing comment with // in a string",
			src: `message Q {
  string url = 1 [json_name = "u//x"]; // the URL
}
`,
			want: &File{Messages: []*Message{{Name: "Q", Fields: []*Field{
				{Name: "url", JSONName: "u//x", Number: 1, Type: "string", Comment: "the URL"},
			}}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse:\n got  %s\n want %s", dump(got), dump(tc.want))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, src := range []string{
		"message M {\n  string a;\n}\n",    // no number
		"message M {\n  string a = 1;\n",   // unterminated
		"}\n",                              // unmatched
		"oneof k {\n}\n",                   // oneof outside a message
		"message M {\n  what is this\n}\n", // garbage
		"enum E {\n  A = x;\n}\n",          // bad enum value
	} {
		if _, err := Parse(src); err == nil {
			t.Errorf("Parse(%q): no error", src)
		}
	}
}

func dump(f *File) string {
	var b strings.Builder
	b.WriteString("package=" + f.Package)
	for _, m := range f.Messages {
		b.WriteString(" message " + m.Name + "[" + m.Comment + "]{")
		for _, fld := range m.Fields {
			fmt.Fprintf(&b, " %+v", *fld)
		}
		b.WriteString(" }")
	}
	for _, e := range f.Enums {
		b.WriteString(" enum " + e.Name + "{")
		for _, v := range e.Values {
			fmt.Fprintf(&b, " %+v", *v)
		}
		b.WriteString(" }")
	}
	return b.String()
}

func TestDefault(t *testing.T) {
	tests := []struct{ comment, want string }{
		{"spark.speculation. Default false.", "false"},
		{"the fraction of tasks, 0 to 1. Default 0.75.", "0.75"},
		{"never speculate a task that has run less. Default 100ms.", "100ms"},
		{"exponentialDelay: how much each back-off grows. Default 2.0, at least 1.", "2.0"},
		{`"exponentialDelay" (default), "fixedDelay" or "none".`, "exponentialDelay"},
		{"Restarts before the job fails; 0 (default) retries forever.", "0"},
		{`Default "sluice_checkpoints".`, "sluice_checkpoints"},
		{"Records per GetRecords call, default 10000 (the service maximum).", "10000"},
		{"Minimum wait between calls, default 400ms, at least 200ms.", "400ms"},
		{"efo: job-managed (default: register, wait for ACTIVE, reuse) or self-managed.", "job-managed"},
		{"CEL expression for the record data; default: the row as JSON.", "the row as JSON"},
		{"Output column name; defaults to fn or fn_field.", "fn or fn_field"},
		{"Field holding the payload; default `value`.", "value"},
		{"Default: exponentialDelay from 1s to 5m, retrying forever.", "exponentialDelay from 1s to 5m"},
		{"Off by default.", ""},
		{"Static keys; without them the SDK's default chain applies.", ""},
		{"Credentials. Default: the SDK's default chain.", "the SDK's default chain"},
		{"Region. Default: the SDK's configuration (AWS_REGION), else us-east-1.", "the SDK's configuration"},
		{"Comma-separated host:port list.", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := Default(tc.comment); got != tc.want {
			t.Errorf("Default(%q) = %q, want %q", tc.comment, got, tc.want)
		}
	}
}

func TestRequired(t *testing.T) {
	tests := []struct {
		comment string
		want    bool
	}{
		{"Target stream. Required.", true},
		{"CEL expression for the partition key; required.", true},
		{"Required. The source.", true},
		{"Required", true},
		{"Required in jobs with a sql step, where DuckDB decodes them.", false},
		{"deadLetter, required with onError deadLetter.", false},
		{"Not required.", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := Required(tc.comment); got != tc.want {
			t.Errorf("Required(%q) = %v, want %v", tc.comment, got, tc.want)
		}
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a | b", `a \| b`},
		{"<job>/batch=<N>", "&lt;job&gt;/batch=&lt;N&gt;"},
		{"sasl.* and __x__", `sasl.\* and \_\_x\_\_`},
		{"`a_b*<c>` outside_", "`a_b*<c>` outside\\_"},
		{"`x|y`", "`x\\|y`"},
	}
	for _, tc := range tests {
		if got := escape(tc.in); got != tc.want {
			t.Errorf("escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMarkdown(t *testing.T) {
	f, err := Parse(`// Root | job.
message Root {
  // Where <job> goes | pipes. Default "x".
  string path = 1;
  // sasl.* and ssl.*, __topic__.
  string props = 9;
  // The name. Required.
  string name = 8;
  repeated Child children = 2;
  map<string, Child> by_name = 3;
  oneof kind {
    // A.
    bool a = 4;
    // B.
    Child b = 5;
  }
  optional bool flag = 6;
  Color color = 7;
}
message Child {}
message Unreachable {
  string z = 1;
}
enum Color {
  // None.
  COLOR_UNSPECIFIED = 0;
}
`)
	if err != nil {
		t.Fatal(err)
	}
	md := f.Markdown("Root")
	for _, want := range []string{
		Header,
		"## Root\n\nRoot \\| job.\n",
		"| `path` | string | `x` | Where &lt;job&gt; goes \\| pipes. Default \"x\". |",
		"| `children` | list of [Child](#child) |  |  |",
		"| `name` | string | required | The name. Required. |",
		"| `props` | string |  | sasl.\\* and ssl.\\*, \\_\\_topic\\_\\_. |",
		"| `byName` | map of string to [Child](#child) |  |  |",
		"| `a` | bool |  | *Oneof `kind`* (not with `b`). A. |",
		"| `flag` | bool (optional) |  |  |",
		"| `color` | [Color](#color) (enum) |  |  |",
		"## Child\n\nNo options",
		"## Color\n",
		"| `COLOR_UNSPECIFIED` | 0 | None. |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "Unreachable") {
		t.Errorf("Markdown documents an unreachable message:\n%s", md)
	}
	if strings.Index(md, "## Root") > strings.Index(md, "## Child") {
		t.Errorf("sections not in declaration order")
	}
	if got, want := f.Undocumented("Root"), []string{"Root.children", "Root.by_name", "Root.flag", "Root.color"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Undocumented = %v, want %v", got, want)
	}
}

func TestParseService(t *testing.T) {
	f, err := Parse(`package x.v1;
// S serves.
service S {
  // Get gets.
  rpc Get(GetRequest) returns (M);
  rpc Watch(GetRequest) returns (stream M) {}
  rpc Push(stream M) returns (Empty) {
    option deprecated = true;
  }
}
message GetRequest { string name = 1; repeated int64 ids = 2; }
message Empty {}
message M {
  string a_b = 1;
}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []*Service{{Name: "S", Comment: "S serves.", RPCs: []*RPC{
		{Name: "Get", Request: "GetRequest", Response: "M", Comment: "Get gets."},
		{Name: "Watch", Request: "GetRequest", Response: "M", ServerStream: true},
		{Name: "Push", Request: "M", Response: "Empty", ClientStream: true},
	}}}
	if !reflect.DeepEqual(f.Services, want) {
		t.Errorf("Services = %+v, want %+v", f.Services, want)
	}
	if got := f.Messages[0]; got.Name != "GetRequest" || len(got.Fields) != 2 ||
		!reflect.DeepEqual(*got.Fields[1], Field{Name: "ids", JSONName: "ids", Number: 2, Type: "int64", Repeated: true}) {
		t.Errorf("one-line message parsed as %s", dump(f))
	}
}

func TestAPIMarkdown(t *testing.T) {
	job, err := Parse(`package x.v1;
message Spec {
  // N.
  string n = 1;
}
`)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(`package x.v1;
// Svc | api.
service Svc {
  // Submit submits.
  rpc Submit(SubmitRequest) returns (Res);
  rpc Watch(WatchRequest) returns (stream Res);
}
message SubmitRequest { Spec spec = 1; }
message WatchRequest {
  // The name.
  string name = 1;
}
message Res {
  // When it was made.
  google.protobuf.Timestamp create_time = 1;
  State state = 2;
  map<string, int64> duration_ms = 3;
}
message Unreachable {
  string z = 1;
}
enum State {
  // Unset.
  STATE_UNSPECIFIED = 0;
}
`)
	if err != nil {
		t.Fatal(err)
	}
	md := f.APIMarkdown("Svc", job)
	for _, want := range []string{
		APIHeader,
		"## Svc\n\nSvc \\| api.\n",
		"| `Submit` | [SubmitRequest](#submitrequest) | [Res](#res) | Submit submits. |",
		"| `Watch` | [WatchRequest](#watchrequest) | stream of [Res](#res) |  |",
		"| `spec` | [Spec](job-spec.md#spec) |  |",
		"| `name` | string | The name. |",
		"| `createTime` | Timestamp (RFC 3339 string in JSON) | When it was made. |",
		"| `state` | [State](#state) (enum) |  |",
		"| `durationMs` | map of string to int64 |  |",
		"| `STATE_UNSPECIFIED` | 0 | Unset. |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("APIMarkdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "Unreachable") || strings.Contains(md, "## Spec") {
		t.Errorf("APIMarkdown documents an unreachable or external message:\n%s", md)
	}
	want := []string{"Svc.Watch", "SubmitRequest.spec", "Res.state", "Res.duration_ms"}
	if got := f.ServiceUndocumented("Svc"); !reflect.DeepEqual(got, want) {
		t.Errorf("ServiceUndocumented = %v, want %v", got, want)
	}
	if got := f.ServiceUndocumented("Nope"); len(got) != 1 {
		t.Errorf("ServiceUndocumented of a missing service = %v", got)
	}
}
