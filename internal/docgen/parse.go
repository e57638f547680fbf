// Package docgen generates the job-spec reference (docs/reference/job-spec.md)
// from the comments of proto/sluice/v1/job.proto, the one place each job
// option is declared. `make docs` runs it; its test fails when the committed
// page is stale or when an option reachable from JobSpec has no comment.
//
// It also generates the API reference (docs/reference/api.md) from
// proto/sluice/v1/driver.proto: the RPCs of DriverService and the messages
// reachable from their requests and responses.
//
// The parser reads the subset of proto3 that job.proto and driver.proto use:
// messages (also nested, or declared on one line), services and their rpcs,
// fields (scalar, message, enum, repeated, optional, map), oneofs,
// enums, reserved and option lines, and // and /* */ comments. A comment
// describes the declaration it immediately precedes (no blank line between);
// a trailing // comment on the declaration's line is used when there is no
// leading one.
package docgen

import (
	"fmt"
	"regexp"
	"strings"
)

// File is a parsed .proto file.
type File struct {
	Package  string
	Messages []*Message // every message in declaration order, nested ones after their parent's start
	Enums    []*Enum    // every enum in declaration order
	Services []*Service // every service in declaration order
}

// Service is a proto service.
type Service struct {
	Name    string
	Comment string
	RPCs    []*RPC
}

// RPC is one method of a service.
type RPC struct {
	Name         string
	Request      string // request message as written
	Response     string // response message as written
	ClientStream bool
	ServerStream bool
	Comment      string
}

// Message is a proto message. Name is qualified by its enclosing messages
// (Outer.Inner).
type Message struct {
	Name    string
	Comment string
	Fields  []*Field
}

// Field is one field of a message.
type Field struct {
	Name     string // proto name (snake_case)
	JSONName string // protojson name (lowerCamelCase, or json_name)
	Number   int
	Type     string // element type: scalar, or message/enum name as written
	KeyType  string // map key type; empty unless Map
	Repeated bool
	Optional bool // proto3 optional: presence is tracked
	Map      bool
	Oneof    string // name of the enclosing oneof, if any
	Comment  string
}

// Enum is a proto enum.
type Enum struct {
	Name    string
	Comment string
	Values  []*EnumValue
}

// EnumValue is one value of an enum.
type EnumValue struct {
	Name    string
	Number  int
	Comment string
}

var (
	reMessageInline = regexp.MustCompile(`^message\s+(\w+)\s*\{\s*(.*;)\s*\}\s*$`)
	reService       = regexp.MustCompile(`^service\s+(\w+)\s*\{\s*$`)
	reRPC           = regexp.MustCompile(`^rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*(;|\{\s*\}|\{)$`)
	reMessage       = regexp.MustCompile(`^message\s+(\w+)\s*\{\s*(\}\s*)?$`)
	reEnum          = regexp.MustCompile(`^enum\s+(\w+)\s*\{\s*(\}\s*)?$`)
	reOneof         = regexp.MustCompile(`^oneof\s+(\w+)\s*\{\s*$`)
	reField         = regexp.MustCompile(`^(?:(repeated|optional)\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*(?:\[(.*)\])?\s*;$`)
	reMap           = regexp.MustCompile(`^map\s*<\s*(\w+)\s*,\s*([\w.]+)\s*>\s+(\w+)\s*=\s*(\d+)\s*(?:\[(.*)\])?\s*;$`)
	reEnumVal       = regexp.MustCompile(`^(\w+)\s*=\s*(-?\d+)\s*(?:\[(.*)\])?\s*;$`)
	rePackage       = regexp.MustCompile(`^package\s+([\w.]+)\s*;$`)
	reJSON          = regexp.MustCompile(`json_name\s*=\s*"([^"]*)"`)
)

type block struct {
	kind string // "message", "oneof", "enum", "service", "other"
	msg  *Message
	svc  *Service
	enum *Enum
	name string
}

// Parse parses the text of a .proto file.
func Parse(src string) (*File, error) {
	f := &File{}
	var stack []block
	var pending []string // leading comment lines for the next declaration
	inBlockComment := false
	for i, raw := range strings.Split(src, "\n") {
		lineNo := i + 1
		line := strings.TrimSpace(raw)
		if inBlockComment {
			end := strings.Index(line, "*/")
			if end < 0 {
				pending = append(pending, strings.TrimSpace(strings.TrimPrefix(line, "*")))
				continue
			}
			pending = append(pending, strings.TrimSpace(strings.TrimPrefix(line[:end], "*")))
			inBlockComment = false
			line = strings.TrimSpace(line[end+2:])
			if line == "" {
				continue
			}
		}
		if line == "" {
			pending = nil
			continue
		}
		if strings.HasPrefix(line, "//") {
			pending = append(pending, strings.TrimSpace(strings.TrimPrefix(line, "//")))
			continue
		}
		if strings.HasPrefix(line, "/*") {
			body := line[2:]
			if end := strings.Index(body, "*/"); end >= 0 {
				pending = append(pending, strings.TrimSpace(body[:end]))
				line = strings.TrimSpace(body[end+2:])
				if line == "" {
					continue
				}
			} else {
				pending = append(pending, strings.TrimSpace(body))
				inBlockComment = true
				continue
			}
		}
		code, trailing := splitTrailing(line)
		comment := joinComment(pending)
		if comment == "" {
			comment = trailing
		}
		pending = nil
		var top *block
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		switch {
		case code == "}" || code == "};":
			if len(stack) == 0 {
				return nil, fmt.Errorf("line %d: unmatched }", lineNo)
			}
			stack = stack[:len(stack)-1]
		case reMessageInline.MatchString(code):
			// A message declared on one line: message M { T f = 1; }
			m := reMessageInline.FindStringSubmatch(code)
			name := m[1]
			if p := enclosingMessage(stack); p != nil {
				name = p.Name + "." + name
			}
			msg := &Message{Name: name, Comment: comment}
			f.Messages = append(f.Messages, msg)
			for _, decl := range strings.Split(m[2], ";") {
				if decl = strings.TrimSpace(decl); decl == "" {
					continue
				}
				fld, err := parseField(decl + ";")
				if err != nil {
					return nil, fmt.Errorf("line %d: %v", lineNo, err)
				}
				msg.Fields = append(msg.Fields, fld)
			}
		case reMessage.MatchString(code):
			m := reMessage.FindStringSubmatch(code)
			name := m[1]
			if p := enclosingMessage(stack); p != nil {
				name = p.Name + "." + name
			}
			msg := &Message{Name: name, Comment: comment}
			f.Messages = append(f.Messages, msg)
			if m[2] == "" {
				stack = append(stack, block{kind: "message", msg: msg})
			}
		case reEnum.MatchString(code):
			m := reEnum.FindStringSubmatch(code)
			name := m[1]
			if p := enclosingMessage(stack); p != nil {
				name = p.Name + "." + name
			}
			e := &Enum{Name: name, Comment: comment}
			f.Enums = append(f.Enums, e)
			if m[2] == "" {
				stack = append(stack, block{kind: "enum", enum: e})
			}
		case reOneof.MatchString(code):
			if top == nil || top.kind != "message" {
				return nil, fmt.Errorf("line %d: oneof outside a message", lineNo)
			}
			stack = append(stack, block{kind: "oneof", msg: top.msg, name: reOneof.FindStringSubmatch(code)[1]})
		case strings.HasPrefix(code, "reserved ") || strings.HasPrefix(code, "option ") ||
			strings.HasPrefix(code, "syntax ") || strings.HasPrefix(code, "edition ") ||
			strings.HasPrefix(code, "import "):
			// Nothing to document.
		case rePackage.MatchString(code):
			f.Package = rePackage.FindStringSubmatch(code)[1]
		case reService.MatchString(code):
			svc := &Service{Name: reService.FindStringSubmatch(code)[1], Comment: comment}
			f.Services = append(f.Services, svc)
			stack = append(stack, block{kind: "service", svc: svc})
		case top != nil && top.kind == "service":
			m := reRPC.FindStringSubmatch(code)
			if m == nil {
				return nil, fmt.Errorf("line %d: cannot parse rpc %q", lineNo, code)
			}
			top.svc.RPCs = append(top.svc.RPCs, &RPC{Name: m[1], Request: m[3], Response: m[5],
				ClientStream: m[2] != "", ServerStream: m[4] != "", Comment: comment})
			if m[6] == "{" {
				stack = append(stack, block{kind: "other"})
			}
		case strings.HasPrefix(code, "service ") || strings.HasPrefix(code, "extend "):
			if strings.HasSuffix(code, "{") {
				stack = append(stack, block{kind: "other"})
			}
		case top != nil && top.kind == "enum":
			m := reEnumVal.FindStringSubmatch(code)
			if m == nil {
				return nil, fmt.Errorf("line %d: cannot parse enum value %q", lineNo, code)
			}
			var n int
			fmt.Sscan(m[2], &n)
			top.enum.Values = append(top.enum.Values, &EnumValue{Name: m[1], Number: n, Comment: comment})
		case top != nil && (top.kind == "message" || top.kind == "oneof"):
			fld, err := parseField(code)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", lineNo, err)
			}
			fld.Comment = comment
			if top.kind == "oneof" {
				fld.Oneof = top.name
			}
			top.msg.Fields = append(top.msg.Fields, fld)
		case top != nil && top.kind == "other":
			if strings.HasSuffix(code, "{") {
				stack = append(stack, block{kind: "other"})
			}
		default:
			return nil, fmt.Errorf("line %d: unexpected %q", lineNo, code)
		}
	}
	if len(stack) != 0 {
		return nil, fmt.Errorf("unterminated block at end of file")
	}
	return f, nil
}

func parseField(code string) (*Field, error) {
	if m := reMap.FindStringSubmatch(code); m != nil {
		f := &Field{Map: true, KeyType: m[1], Type: m[2], Name: m[3]}
		fmt.Sscan(m[4], &f.Number)
		f.JSONName = jsonName(f.Name, m[5])
		return f, nil
	}
	m := reField.FindStringSubmatch(code)
	if m == nil {
		return nil, fmt.Errorf("cannot parse field %q", code)
	}
	f := &Field{Repeated: m[1] == "repeated", Optional: m[1] == "optional", Type: m[2], Name: m[3]}
	fmt.Sscan(m[4], &f.Number)
	f.JSONName = jsonName(f.Name, m[5])
	return f, nil
}

// jsonName is protoc's JSON name of a field: json_name when the options set
// it, else the name with each underscore dropped and the letter after it
// upper-cased.
func jsonName(name, options string) string {
	if m := reJSON.FindStringSubmatch(options); m != nil {
		return m[1]
	}
	var b strings.Builder
	up := false
	for _, r := range name {
		if r == '_' {
			up = true
			continue
		}
		if up && r >= 'a' && r <= 'z' {
			r -= 'a' - 'A'
		}
		up = false
		b.WriteRune(r)
	}
	return b.String()
}

// splitTrailing separates a declaration from a trailing // comment, ignoring
// // inside string literals.
func splitTrailing(line string) (code, comment string) {
	inStr := byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inStr != 0:
			if c == '\\' {
				i++
			} else if c == inStr {
				inStr = 0
			}
		case c == '"' || c == '\'':
			inStr = c
		case c == '/' && i+1 < len(line) && line[i+1] == '/':
			return strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+2:])
		}
	}
	return line, ""
}

func joinComment(lines []string) string {
	return strings.Join(strings.Fields(strings.Join(lines, " ")), " ")
}

func enclosingMessage(stack []block) *Message {
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i].kind == "message" {
			return stack[i].msg
		}
	}
	return nil
}
