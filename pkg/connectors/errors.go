package connectors

import (
	"errors"
	"fmt"

	"github.com/sluicehq/sluice/pkg/stream"
)

// ErrDataLoss marks records that were planned but can no longer be read:
// deleted by retention, or their topic or stream deleted. Whether it fails
// the job is the source's failOnDataLoss option.
var ErrDataLoss = errors.New("data loss")

// DataLossError says which records are gone.
type DataLossError struct {
	Partition stream.PartitionID
	Requested string
	Earliest  string
	Reason    string
}

func (e *DataLossError) Error() string {
	return fmt.Sprintf("data loss on %s: requested %s but earliest available is %s (%s); "+
		"set failOnDataLoss: false to skip ahead", e.Partition, e.Requested, e.Earliest, e.Reason)
}

// Is makes errors.Is(err, ErrDataLoss) true.
func (e *DataLossError) Is(target error) bool { return target == ErrDataLoss }

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying (bad configuration, corrupt data
// under onError: fail). Nil stays nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked Permanent
// or is a data loss.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p) || errors.Is(err, ErrDataLoss)
}
