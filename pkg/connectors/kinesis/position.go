package kinesis

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/pkg/stream"
)

// Partition IDs are "<stream>/<shardId>"; stream names cannot hold '/'.
// Each stream also has one pseudo-partition "<stream>/@identity" in the
// plan's start positions, so that the commit log records the stream's ARN
// and creation time next to its shard positions.
const identitySuffix = "@identity"

func partitionID(streamName, shardID string) stream.PartitionID {
	return stream.PartitionID(streamName + "/" + shardID)
}

func splitPartitionID(id stream.PartitionID) (streamName, shardID string, err error) {
	s, sh, ok := strings.Cut(string(id), "/")
	if !ok || s == "" || sh == "" || strings.Contains(sh, "/") {
		return "", "", fmt.Errorf("partition %q is not <stream>/<shardId>", id)
	}
	return s, sh, nil
}

// position is a point in a shard, encoded as compact JSON. Exactly one of
// these holds:
//
//   - Seq set: the records up to and including sequence number Seq were
//     read; with Sub set, only the user records 0..Sub of the KPL aggregate
//     at Seq were read and more of them follow.
//   - Start set, Seq empty: nothing was read yet; reading starts at
//     TRIM_HORIZON, or AT_TIMESTAMP TS (epoch milliseconds; the planner turns
//     initialPosition latest into AT_TIMESTAMP of the first plan, so that a
//     shard where nothing arrives does not re-resolve "latest" at every
//     batch and skip what arrives in between).
//
// End says the shard was read to SHARD_END: nothing follows. Cut and
// CutDone serve availableNow: Cut (in a range's from only) asks the reader
// to stop before records that arrived after it; CutDone (in an end) says
// everything that arrived up to that time was read. Created (in a range's
// from only) is the creation time of the stream the plan was made for: a
// reader whose reads fail checks it against the live stream, so that a
// stream recreated while a batch runs is reported as such.
type position struct {
	Seq     string `json:"seq,omitempty"`
	Sub     *int64 `json:"sub,omitempty"`
	Start   string `json:"start,omitempty"`
	TS      int64  `json:"ts,omitempty"`
	End     bool   `json:"end,omitempty"`
	Cut     int64  `json:"cut,omitempty"`
	CutDone int64  `json:"cutDone,omitempty"`
	Created int64  `json:"created,omitempty"`
}

// Starting points of a position without a sequence number.
const (
	startTrimHorizon = "TRIM_HORIZON"
	startAtTimestamp = "AT_TIMESTAMP"
)

func (p position) encode() stream.Position {
	b, _ := json.Marshal(p) // cannot fail: plain fields
	return b
}

func decodePosition(b stream.Position) (position, error) {
	var p position
	if len(b) == 0 {
		return p, errors.New("empty position")
	}
	if err := decodeStrict(string(b), &p); err != nil {
		return p, fmt.Errorf("position %q: %w", b, err)
	}
	switch {
	case p.Seq != "" && !isSeq(p.Seq):
		return p, fmt.Errorf("position %q: sequence number is not decimal", b)
	case p.Seq != "" && p.Start != "":
		return p, fmt.Errorf("position %q: has both a sequence number and a start", b)
	case p.Seq == "" && p.Sub != nil:
		return p, fmt.Errorf("position %q: sub-sequence without a sequence number", b)
	case p.Sub != nil && *p.Sub < 0:
		return p, fmt.Errorf("position %q: negative sub-sequence number", b)
	case p.Seq == "" && p.Start != startTrimHorizon && p.Start != startAtTimestamp && !p.End:
		return p, fmt.Errorf("position %q: neither a sequence number nor a start", b)
	case p.Start == startAtTimestamp && p.TS <= 0:
		return p, fmt.Errorf("position %q: AT_TIMESTAMP without a time", b)
	}
	return p, nil
}

func decodeStrict(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// at reports whether p and q name the same point, ignoring the
// availableNow markers and the creation time.
func (p position) at(q position) bool {
	return p.Seq == q.Seq && p.Start == q.Start && p.TS == q.TS && p.End == q.End &&
		(p.Sub == nil) == (q.Sub == nil) && (p.Sub == nil || *p.Sub == *q.Sub)
}

// point strips the availableNow markers and the stream's creation time.
func (p position) point() position {
	p.Cut, p.CutDone, p.Created = 0, 0, 0
	return p
}

// StartingPosition is where a shard fetcher starts: the shard iterator type
// and its argument.
type StartingPosition struct {
	Type           types.ShardIteratorType
	SequenceNumber string    // AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER
	Timestamp      time.Time // AT_TIMESTAMP
}

func (s StartingPosition) String() string {
	switch s.Type {
	case types.ShardIteratorTypeAtSequenceNumber, types.ShardIteratorTypeAfterSequenceNumber:
		return string(s.Type) + " " + s.SequenceNumber
	case types.ShardIteratorTypeAtTimestamp:
		return string(s.Type) + " " + s.Timestamp.UTC().Format(time.RFC3339Nano)
	}
	return string(s.Type)
}

// starting is where reading continues after p. A partly read aggregate is
// fetched again (AT_SEQUENCE_NUMBER) and its read user records skipped.
func (p position) starting() StartingPosition {
	switch {
	case p.Seq != "" && p.Sub != nil:
		return StartingPosition{Type: types.ShardIteratorTypeAtSequenceNumber, SequenceNumber: p.Seq}
	case p.Seq != "":
		return StartingPosition{Type: types.ShardIteratorTypeAfterSequenceNumber, SequenceNumber: p.Seq}
	case p.Start == startAtTimestamp:
		return StartingPosition{Type: types.ShardIteratorTypeAtTimestamp, Timestamp: time.UnixMilli(p.TS)}
	}
	return StartingPosition{Type: types.ShardIteratorTypeTrimHorizon}
}

// isSeq reports whether s looks like a Kinesis sequence number: decimal
// digits without a leading zero. Sequence numbers are ordered with
// efo.CompareSequence.
func isSeq(s string) bool {
	if s == "" || len(s) > 128 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// identityPos is the position of a stream's identity pseudo-partition.
type identityPos struct {
	ARN     string `json:"arn"`
	Created int64  `json:"created"` // creation time, epoch milliseconds
}

func (p identityPos) encode() stream.Position {
	b, _ := json.Marshal(p)
	return b
}

func decodeIdentity(b stream.Position) (identityPos, error) {
	var p identityPos
	if err := decodeStrict(string(b), &p); err != nil {
		return p, fmt.Errorf("stream identity %q: %w", b, err)
	}
	if p.ARN == "" || p.Created == 0 {
		return p, fmt.Errorf("stream identity %q: ARN or creation time missing", b)
	}
	return p, nil
}
