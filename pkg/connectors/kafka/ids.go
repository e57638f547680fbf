package kafka

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/pkg/stream"
)

// topicPartition is one Kafka partition.
type topicPartition struct {
	topic     string
	partition int32
}

func (tp topicPartition) id() stream.PartitionID {
	return stream.PartitionID(partitionName(tp.topic, tp.partition))
}

func (tp topicPartition) less(o topicPartition) bool {
	if tp.topic != o.topic {
		return tp.topic < o.topic
	}
	return tp.partition < o.partition
}

func partitionName(topic string, p int32) string {
	return topic + "/" + strconv.FormatInt(int64(p), 10)
}

// parsePartitionID reads "topic/3". Kafka topic names cannot hold '/', so the
// last slash separates the partition.
func parsePartitionID(id stream.PartitionID) (topicPartition, error) {
	s := string(id)
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return topicPartition{}, fmt.Errorf("partition %q is not topic/partition", s)
	}
	p, err := strconv.ParseInt(s[i+1:], 10, 32)
	if err != nil || p < 0 {
		return topicPartition{}, fmt.Errorf("partition %q is not topic/partition", s)
	}
	return topicPartition{topic: s[:i], partition: int32(p)}, nil
}

// position renders an offset as the source's Position: decimal ASCII.
func position(off int64) stream.Position { return stream.Position(strconv.FormatInt(off, 10)) }

func parsePosition(p stream.Position) (int64, error) {
	off, err := strconv.ParseInt(string(p), 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("position %q is not a Kafka offset", p.String())
	}
	return off, nil
}
