//go:build duckdb_arrow

package sqltransform

import "errors"

// ErrInvalid is wrapped by every *FieldError.
var ErrInvalid = errors.New("invalid transforms")

// FieldError is one problem in a job's transforms. Field is the path as the
// user wrote it in YAML: transforms[3].aggregate.aggregations[0].fn.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }
