package efo

import (
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// Starting positions for NewSubscription, as SubscribeToShard takes them.

// AfterSequence starts just after the record with sequence number seq: the
// planned start of a shard with a checkpoint.
func AfterSequence(seq string) types.StartingPosition {
	return types.StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: aws.String(seq)}
}

// AtSequence starts at the record with sequence number seq (to re-read an
// aggregated record whose user records were only partly consumed).
func AtSequence(seq string) types.StartingPosition {
	return types.StartingPosition{Type: types.ShardIteratorTypeAtSequenceNumber, SequenceNumber: aws.String(seq)}
}

// TrimHorizon starts at the oldest record still in the shard.
func TrimHorizon() types.StartingPosition {
	return types.StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
}

// Latest starts after the newest record at the time of the subscription.
func Latest() types.StartingPosition {
	return types.StartingPosition{Type: types.ShardIteratorTypeLatest}
}

// AtTimestamp starts at the first record that arrived at or after t.
func AtTimestamp(t time.Time) types.StartingPosition {
	return types.StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: aws.Time(t)}
}

func validStart(p types.StartingPosition) error {
	switch p.Type {
	case types.ShardIteratorTypeAfterSequenceNumber, types.ShardIteratorTypeAtSequenceNumber:
		if !isSeq(aws.ToString(p.SequenceNumber)) {
			return fmt.Errorf("starting position %s needs a sequence number (decimal digits), got %q", p.Type, aws.ToString(p.SequenceNumber))
		}
	case types.ShardIteratorTypeAtTimestamp:
		if p.Timestamp == nil {
			return fmt.Errorf("starting position %s needs a timestamp", p.Type)
		}
	case types.ShardIteratorTypeTrimHorizon, types.ShardIteratorTypeLatest:
	default:
		return fmt.Errorf("starting position type %q is not one of AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, "+
			"TRIM_HORIZON, LATEST, AT_TIMESTAMP", p.Type)
	}
	return nil
}

// PositionString describes a starting position for logs and errors.
func PositionString(p types.StartingPosition) string {
	switch p.Type {
	case types.ShardIteratorTypeAfterSequenceNumber, types.ShardIteratorTypeAtSequenceNumber:
		return string(p.Type) + " " + aws.ToString(p.SequenceNumber)
	case types.ShardIteratorTypeAtTimestamp:
		return string(p.Type) + " " + aws.ToTime(p.Timestamp).UTC().Format(time.RFC3339Nano)
	}
	return string(p.Type)
}

// SamePosition reports whether a and b start at the same place: the same
// type and, numerically, the same sequence number, or the same timestamp. A
// reader pool uses it to decide whether a kept Subscription (its Position)
// continues exactly where the next planned range starts.
func SamePosition(a, b types.StartingPosition) bool {
	if a.Type != b.Type {
		return false
	}
	switch a.Type {
	case types.ShardIteratorTypeAfterSequenceNumber, types.ShardIteratorTypeAtSequenceNumber:
		return CompareSequence(aws.ToString(a.SequenceNumber), aws.ToString(b.SequenceNumber)) == 0
	case types.ShardIteratorTypeAtTimestamp:
		return aws.ToTime(a.Timestamp).Equal(aws.ToTime(b.Timestamp))
	}
	return true
}

func isSeq(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// CompareSequence compares two sequence numbers numerically (they are
// decimal integers of up to 128 bits, too long for int64 and not always of
// the same length): -1 if a < b, 0 if equal, +1 if a > b.
func CompareSequence(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return strings.Compare(a, b)
}
