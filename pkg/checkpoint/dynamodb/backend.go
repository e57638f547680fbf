package dynamodb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
)

// Attribute names. Keys are strings; values are JSON in a binary attribute.
const (
	attrPK    = "pk"
	attrSK    = "sk"
	attrValue = "v"     // B: the record, blob part or task end (JSON)
	attrVer   = "ver"   // N: version of the fence and head records
	attrParts = "n"     // N: number of parts of a blob, on every part
	attrEpoch = "epoch" // N: stamp of a task end, for its condition
	attrFKey  = "fk"    // S: fence key of a task end
)

// DynamoDB limits the backend works within.
const (
	maxSortKey = 1024
	maxItem    = 400 * 1024
	// partSize leaves room for the keys and other attributes of an item.
	partSize = 350 * 1024
	// batchWriteMax is BatchWriteItem's limit of requests per call.
	batchWriteMax = 25
)

// backend is casstore.Backend on one DynamoDB table.
type backend struct {
	client *dynamodb.Client
	table  string
	prefix string
}

var _ casstore.Backend = (*backend)(nil)

func (b *backend) fenceKey() map[string]types.AttributeValue {
	return key(b.prefix+"fence", "fence")
}

func (b *backend) headKey(job string) map[string]types.AttributeValue {
	return key(b.prefix+"jobs", job)
}

func (b *backend) logPK(l casstore.LogRef) string { return b.prefix + "log#" + l.Inc }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		attrPK: &types.AttributeValueMemberS{Value: pk},
		attrSK: &types.AttributeValueMemberS{Value: sk},
	}
}

func batchSK(batch int64) string { return fmt.Sprintf("%020d", batch) }

func blobPrefix(r casstore.BlobRef) string {
	return batchSK(r.Batch) + "#blob#" + r.Kind + "#" + r.ID + "#"
}

func endsPrefix(batch int64) string { return batchSK(batch) + "#end#" }

// checkKeyPart refuses a job name or range key DynamoDB cannot hold in a
// sort key.
func checkKeyPart(what, s string, room int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8, which DynamoDB keys require", what, s)
	}
	if len(s) > room {
		return fmt.Errorf("%s is %d bytes; the DynamoDB store allows at most %d", what, len(s), room)
	}
	return nil
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

func (b *backend) getRecord(ctx context.Context, k map[string]types.AttributeValue) ([]byte, string, error) {
	out, err := b.client.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: &b.table, Key: k, ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, "", explain(err)
	}
	if out.Item == nil {
		return nil, "", casstore.ErrNotExist
	}
	return recordOf(out.Item)
}

func recordOf(item map[string]types.AttributeValue) ([]byte, string, error) {
	v, ok := item[attrValue].(*types.AttributeValueMemberB)
	ver, ok2 := item[attrVer].(*types.AttributeValueMemberN)
	if !ok || !ok2 {
		return nil, "", fmt.Errorf("item %v has no %s or %s attribute: not written by this store", item[attrSK], attrValue, attrVer)
	}
	return v.Value, ver.Value, nil
}

// putRecord writes a versioned record: created when version is "",
// replaced when its ver attribute still equals version.
func (b *backend) putRecord(ctx context.Context, k map[string]types.AttributeValue, value []byte, version string) (string, error) {
	if len(value) > maxItem-2048 {
		return "", fmt.Errorf("record is %d bytes; a DynamoDB item holds at most 400 KB", len(value))
	}
	next := int64(1)
	in := &dynamodb.PutItemInput{TableName: &b.table}
	if version == "" {
		in.ConditionExpression = aws.String("attribute_not_exists(#pk)")
		in.ExpressionAttributeNames = map[string]string{"#pk": attrPK}
	} else {
		n, err := strconv.ParseInt(version, 10, 64)
		if err != nil {
			return "", fmt.Errorf("version %q is not a number", version)
		}
		next = n + 1
		in.ConditionExpression = aws.String("#ver = :ver")
		in.ExpressionAttributeNames = map[string]string{"#ver": attrVer}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":ver": &types.AttributeValueMemberN{Value: version}}
	}
	nv := strconv.FormatInt(next, 10)
	in.Item = map[string]types.AttributeValue{
		attrValue: &types.AttributeValueMemberB{Value: value},
		attrVer:   &types.AttributeValueMemberN{Value: nv},
	}
	for a, v := range k {
		in.Item[a] = v
	}
	if _, err := b.client.PutItem(ctx, in); err != nil {
		if isConditionFailed(err) {
			return "", casstore.ErrConflict
		}
		return "", explain(err)
	}
	return nv, nil
}

func (b *backend) GetFence(ctx context.Context) ([]byte, string, error) {
	return b.getRecord(ctx, b.fenceKey())
}

func (b *backend) PutFence(ctx context.Context, value []byte, version string) error {
	_, err := b.putRecord(ctx, b.fenceKey(), value, version)
	return err
}

func (b *backend) GetHead(ctx context.Context, job string) ([]byte, string, error) {
	if err := checkKeyPart("job name", job, maxSortKey); err != nil {
		return nil, "", err
	}
	return b.getRecord(ctx, b.headKey(job))
}

func (b *backend) PutHead(ctx context.Context, job string, value []byte, version string) (string, error) {
	if err := checkKeyPart("job name", job, maxSortKey); err != nil {
		return "", err
	}
	return b.putRecord(ctx, b.headKey(job), value, version)
}

// ListHeads queries the heads' partition with a consistent read.
func (b *backend) ListHeads(ctx context.Context) ([]casstore.Head, error) {
	var heads []casstore.Head
	err := b.query(ctx, &dynamodb.QueryInput{
		KeyConditionExpression:   aws.String("#pk = :pk"),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: b.prefix + "jobs"},
		},
	}, func(item map[string]types.AttributeValue) error {
		v, ver, err := recordOf(item)
		if err != nil {
			return err
		}
		sk, _ := item[attrSK].(*types.AttributeValueMemberS)
		if sk == nil {
			return fmt.Errorf("head item without %s", attrSK)
		}
		heads = append(heads, casstore.Head{Job: sk.Value, Value: v, Version: ver})
		return nil
	})
	return heads, err
}

// query runs a consistent Query over every page, calling fn per item.
func (b *backend) query(ctx context.Context, in *dynamodb.QueryInput, fn func(map[string]types.AttributeValue) error) error {
	in.TableName = &b.table
	in.ConsistentRead = aws.Bool(true)
	p := dynamodb.NewQueryPaginator(b.client, in)
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return explain(err)
		}
		for _, item := range page.Items {
			if err := fn(item); err != nil {
				return err
			}
		}
	}
	return nil
}

// PutBlob writes a blob as one or more write-once items: DynamoDB items
// hold 400 KB, and a plan of a few thousand partitions can exceed that.
// Parts are written before any head points to the blob, so a reader never
// sees a partial one.
func (b *backend) PutBlob(ctx context.Context, ref casstore.BlobRef, value []byte) error {
	parts := max(1, (len(value)+partSize-1)/partSize)
	pk := b.logPK(ref.LogRef)
	for i := range parts {
		chunk := value[i*partSize : min(len(value), (i+1)*partSize)]
		_, err := b.client.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: &b.table,
			Item: map[string]types.AttributeValue{
				attrPK:    &types.AttributeValueMemberS{Value: pk},
				attrSK:    &types.AttributeValueMemberS{Value: fmt.Sprintf("%s%05d", blobPrefix(ref), i)},
				attrValue: &types.AttributeValueMemberB{Value: chunk},
				attrParts: &types.AttributeValueMemberN{Value: strconv.Itoa(parts)},
			},
			ConditionExpression:      aws.String("attribute_not_exists(#pk)"),
			ExpressionAttributeNames: map[string]string{"#pk": attrPK},
		})
		if isConditionFailed(err) {
			return fmt.Errorf("%s %d (%s) part %d exists already: blob ids are unique, so another store wrote it", ref.Kind, ref.Batch, ref.ID, i)
		}
		if err != nil {
			return explain(err)
		}
	}
	return nil
}

func (b *backend) GetBlob(ctx context.Context, ref casstore.BlobRef) ([]byte, error) {
	var data []byte
	var got, want int
	err := b.query(ctx, &dynamodb.QueryInput{
		KeyConditionExpression:   aws.String("#pk = :pk AND begins_with(#sk, :p)"),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK, "#sk": attrSK},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: b.logPK(ref.LogRef)},
			":p":  &types.AttributeValueMemberS{Value: blobPrefix(ref)},
		},
	}, func(item map[string]types.AttributeValue) error {
		v, ok := item[attrValue].(*types.AttributeValueMemberB)
		n, ok2 := item[attrParts].(*types.AttributeValueMemberN)
		if !ok || !ok2 {
			return fmt.Errorf("blob part %v lacks %s or %s", item[attrSK], attrValue, attrParts)
		}
		want, _ = strconv.Atoi(n.Value)
		data = append(data, v.Value...) // parts come in sort key order
		got++
		return nil
	})
	if err != nil {
		return nil, err
	}
	if got == 0 {
		return nil, casstore.ErrNotExist
	}
	if got != want {
		return nil, fmt.Errorf("blob has %d of its %d parts", got, want)
	}
	return data, nil
}

// PutEnd writes one task end, conditional on the entry's own stamp
// (casstore.Admits, as a condition expression).
func (b *backend) PutEnd(ctx context.Context, l casstore.LogRef, batch int64, key string, end casstore.End) error {
	sk := endsPrefix(batch) + key
	if err := checkKeyPart("range key", key, maxSortKey-len(endsPrefix(batch))); err != nil {
		return err
	}
	v, err := json.Marshal(end)
	if err != nil {
		return err
	}
	_, err = b.client.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: &b.table,
		Item: map[string]types.AttributeValue{
			attrPK:    &types.AttributeValueMemberS{Value: b.logPK(l)},
			attrSK:    &types.AttributeValueMemberS{Value: sk},
			attrValue: &types.AttributeValueMemberB{Value: v},
			attrEpoch: &types.AttributeValueMemberN{Value: strconv.FormatInt(end.Epoch, 10)},
			attrFKey:  &types.AttributeValueMemberS{Value: end.FenceKey},
		},
		ConditionExpression:      aws.String("attribute_not_exists(#pk) OR #e < :e OR (#e = :e AND #k = :k)"),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK, "#e": attrEpoch, "#k": attrFKey},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":e": &types.AttributeValueMemberN{Value: strconv.FormatInt(end.Epoch, 10)},
			":k": &types.AttributeValueMemberS{Value: end.FenceKey},
		},
	})
	if isConditionFailed(err) {
		return casstore.ErrConflict
	}
	if err != nil {
		return explain(err)
	}
	return nil
}

func (b *backend) Ends(ctx context.Context, l casstore.LogRef, batch int64) (map[string]casstore.End, error) {
	prefix := endsPrefix(batch)
	ends := map[string]casstore.End{}
	err := b.query(ctx, &dynamodb.QueryInput{
		KeyConditionExpression:   aws.String("#pk = :pk AND begins_with(#sk, :p)"),
		ExpressionAttributeNames: map[string]string{"#pk": attrPK, "#sk": attrSK},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: b.logPK(l)},
			":p":  &types.AttributeValueMemberS{Value: prefix},
		},
	}, func(item map[string]types.AttributeValue) error {
		sk, _ := item[attrSK].(*types.AttributeValueMemberS)
		v, _ := item[attrValue].(*types.AttributeValueMemberB)
		if sk == nil || v == nil {
			return fmt.Errorf("task end item %v lacks %s or %s", item[attrSK], attrSK, attrValue)
		}
		var e casstore.End
		if err := json.Unmarshal(v.Value, &e); err != nil {
			return fmt.Errorf("decode task end %s: %w", sk.Value, err)
		}
		ends[strings.TrimPrefix(sk.Value, prefix)] = e
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ends, nil
}

// DeleteLogs finds the incarnation's items below before with a consistent
// Query (batch numbers lead the sort key) and deletes them in batches of
// 25. Nothing points to them any more (casstore removed the pointers
// first), so the deletes need no condition.
func (b *backend) DeleteLogs(ctx context.Context, l casstore.LogRef, before int64) error {
	in := &dynamodb.QueryInput{
		ExpressionAttributeNames: map[string]string{"#pk": attrPK, "#sk": attrSK},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: b.logPK(l)},
		},
		ProjectionExpression: aws.String("#pk, #sk"),
	}
	if before == casstore.AllBatches {
		in.KeyConditionExpression = aws.String("#pk = :pk")
	} else {
		in.KeyConditionExpression = aws.String("#pk = :pk AND #sk < :b")
		in.ExpressionAttributeValues[":b"] = &types.AttributeValueMemberS{Value: batchSK(before)}
	}
	var pending []types.WriteRequest
	flush := func() error {
		err := b.batchDelete(ctx, pending)
		pending = pending[:0]
		return err
	}
	err := b.query(ctx, in, func(item map[string]types.AttributeValue) error {
		pending = append(pending, types.WriteRequest{DeleteRequest: &types.DeleteRequest{
			Key: map[string]types.AttributeValue{attrPK: item[attrPK], attrSK: item[attrSK]},
		}})
		if len(pending) == batchWriteMax {
			return flush()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete logs: %w", err)
	}
	if len(pending) > 0 {
		if err := flush(); err != nil {
			return fmt.Errorf("delete logs: %w", err)
		}
	}
	return nil
}

// batchDelete sends reqs with BatchWriteItem, resending the unprocessed
// ones (throttled by DynamoDB) with a growing pause.
func (b *backend) batchDelete(ctx context.Context, reqs []types.WriteRequest) error {
	pause := 50 * time.Millisecond
	for attempt := 0; len(reqs) > 0; attempt++ {
		if attempt == 10 {
			return fmt.Errorf("%d deletes still unprocessed after %d attempts", len(reqs), attempt)
		}
		out, err := b.client.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{b.table: reqs},
		})
		if err != nil {
			return explain(err)
		}
		reqs = out.UnprocessedItems[b.table]
		if len(reqs) > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
			pause = min(2*pause, 2*time.Second)
		}
	}
	return nil
}
