package jobspec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sluicehq/sluice/internal/rpc"
)

// Error lists every problem found in a spec, each with its field path.
type Error struct{ List []rpc.FieldViolation }

func (e *Error) Error() string {
	parts := make([]string, len(e.List))
	for i, v := range e.List {
		parts[i] = v.Field + ": " + v.Description
	}
	return "invalid job spec: " + strings.Join(parts, "; ")
}

// Violations implements rpc.BadRequester, so the API answers InvalidArgument.
func (e *Error) Violations() []rpc.FieldViolation { return e.List }

func (e *Error) add(field, format string, args ...any) {
	e.List = append(e.List, rpc.FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

// at is where the block at path reports its problems.
func (e *Error) at(path string) fieldErrors { return fieldErrors{e: e, path: path} }

// fieldErrors is one block of the spec reporting into an *Error. A
// connector names its options relative to its own block ("path",
// "columns[1].type"); the block's path ("sink.file", "deadLetter.file") is
// prefixed here, once, so the same connector reads right wherever it sits.
type fieldErrors struct {
	e    *Error
	path string
}

// at is the sub-block rel of f.
func (f fieldErrors) at(rel string) fieldErrors {
	return fieldErrors{e: f.e, path: joinPath(f.path, rel)}
}

// add reports a problem with option rel of the block ("" for the block
// itself).
func (f fieldErrors) add(rel, format string, args ...any) {
	f.e.add(joinPath(f.path, rel), format, args...)
}

// addConfig reports a connector's Validate error, which may join several:
// each one optionOf recognises goes under the option it names, relative to
// the block; any other under the block itself. It reports whether err was
// nil.
func (f fieldErrors) addConfig(err error, optionOf func(error) (option, reason string, ok bool)) bool {
	if err == nil {
		return true
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	for _, sub := range list {
		if option, reason, ok := optionOf(sub); ok {
			f.add(option, "%s", reason)
		} else {
			f.add("", "%v", sub)
		}
	}
	return false
}

// typedOption is the optionOf of a connector whose Validate returns errors
// of type E (such as *postgres.ConfigError); field reads their option and
// reason.
func typedOption[E error](field func(E) (option, reason string)) func(error) (string, string, bool) {
	return func(err error) (string, string, bool) {
		var t E
		if !errors.As(err, &t) {
			return "", "", false
		}
		option, reason := field(t)
		return option, reason, true
	}
}

// prefixedOption is the optionOf of a connector whose Validate names the
// option at the start of its message, under a fixed path of its own
// ("sink.file.path: required"): the option is read relative to prefix.
func prefixedOption(prefix string) func(error) (string, string, bool) {
	return func(err error) (string, string, bool) {
		rest, ok := strings.CutPrefix(err.Error(), prefix)
		if !ok {
			return "", "", false
		}
		return strings.Cut(rest, ": ")
	}
}

func joinPath(path, rel string) string {
	switch {
	case rel == "":
		return path
	case path == "":
		return rel
	case strings.HasPrefix(rel, "["):
		return path + rel
	}
	return path + "." + rel
}
