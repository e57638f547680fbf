package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/sluicehq/sluice/pkg/awsauth"
	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
	"github.com/sluicehq/sluice/pkg/stream"
)

// Store is a checkpoint.Store in a DynamoDB table. It is safe for
// concurrent use.
type Store struct {
	core      *casstore.Store
	transport *http.Transport
	table     string
}

var _ checkpoint.Store = (*Store)(nil)

// Open validates cfg, connects, and makes sure the table exists: when it
// does not, Open creates it (on-demand billing) and waits until it is
// ACTIVE, as long as ctx allows. A table with another key schema is an
// error. Credentials are resolved on the first call, so wrong ones fail
// here, with an error that says so.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	return open(ctx, cfg, casstore.Options{})
}

func open(ctx context.Context, cfg Config, o casstore.Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dynamodb checkpoint store: %w", err)
	}
	cfg = cfg.withDefaults()
	awsCfg, err := awsauth.Load(ctx, cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("dynamodb checkpoint store: %w", err)
	}
	// An own transport, so Close can release its connections.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	awsCfg.HTTPClient = &http.Client{Transport: tr}
	client := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	s := &Store{
		core:      casstore.New(&backend{client: client, table: cfg.Table, prefix: cfg.Prefix}, o),
		transport: tr,
		table:     cfg.Table,
	}
	if err := ensureTable(ctx, client, cfg); err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("dynamodb checkpoint store: %w", err)
	}
	return s, nil
}

// tablePoll is how often Open looks whether a new table is ACTIVE.
const tablePoll = 250 * time.Millisecond

// ensureTable creates the table when it is missing and waits for ACTIVE,
// then checks its key schema.
func ensureTable(ctx context.Context, c *dynamodb.Client, cfg Config) error {
	where := fmt.Sprintf("table %q", cfg.Table)
	if cfg.Endpoint != "" {
		where += " at " + cfg.Endpoint
	}
	desc, err := c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &cfg.Table})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		_, err = c.CreateTable(ctx, &dynamodb.CreateTableInput{
			TableName:   &cfg.Table,
			BillingMode: types.BillingModePayPerRequest,
			AttributeDefinitions: []types.AttributeDefinition{
				{AttributeName: aws.String(attrPK), AttributeType: types.ScalarAttributeTypeS},
				{AttributeName: aws.String(attrSK), AttributeType: types.ScalarAttributeTypeS},
			},
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String(attrPK), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String(attrSK), KeyType: types.KeyTypeRange},
			},
		})
		var inUse *types.ResourceInUseException
		switch {
		case errors.As(err, &inUse):
			// Another driver created it a moment ago.
		case err != nil:
			return fmt.Errorf("create %s: %w", where, explain(err))
		default:
			cfg.Logger.Info("created checkpoint table", "table", cfg.Table, "billing", "PAY_PER_REQUEST")
		}
		desc, err = c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &cfg.Table})
	}
	for err == nil && desc.Table.TableStatus != types.TableStatusActive {
		switch desc.Table.TableStatus {
		case types.TableStatusCreating, types.TableStatusUpdating:
		default:
			return fmt.Errorf("%s is %s, want ACTIVE", where, desc.Table.TableStatus)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to become ACTIVE (%s): %w", where, desc.Table.TableStatus, ctx.Err())
		case <-time.After(tablePoll):
		}
		desc, err = c.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: &cfg.Table})
	}
	if err != nil {
		return fmt.Errorf("describe %s: %w", where, explain(err))
	}
	return checkSchema(where, desc.Table)
}

// checkSchema refuses a table whose keys are not (pk S HASH, sk S RANGE):
// someone else's table, which the store must not write into.
func checkSchema(where string, t *types.TableDescription) error {
	attrTypes := map[string]types.ScalarAttributeType{}
	for _, a := range t.AttributeDefinitions {
		attrTypes[aws.ToString(a.AttributeName)] = a.AttributeType
	}
	ok := len(t.KeySchema) == 2
	for _, k := range t.KeySchema {
		name := aws.ToString(k.AttributeName)
		switch {
		case k.KeyType == types.KeyTypeHash && name == attrPK && attrTypes[name] == types.ScalarAttributeTypeS:
		case k.KeyType == types.KeyTypeRange && name == attrSK && attrTypes[name] == types.ScalarAttributeTypeS:
		default:
			ok = false
		}
	}
	if !ok {
		var got []string
		for _, k := range t.KeySchema {
			name := aws.ToString(k.AttributeName)
			got = append(got, fmt.Sprintf("%s %s %s", name, attrTypes[name], k.KeyType))
		}
		return fmt.Errorf("%s has key schema %v, want pk S HASH, sk S RANGE: it is not a checkpoint table; name another one", where, got)
	}
	return nil
}

// explain adds what to do to errors users can fix: credentials and
// permissions, and an unreachable endpoint. AWS error messages do not carry
// secrets; neither does anything added here.
func explain(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
			"MissingAuthenticationTokenException", "ExpiredTokenException", "InvalidClientTokenId":
			return fmt.Errorf("%w: the AWS credentials were refused; check the access key, secret key, session token or role", err)
		case "AccessDeniedException":
			return fmt.Errorf("%w: the credentials lack a DynamoDB permission the store needs (see README: DescribeTable, CreateTable, GetItem, PutItem, Query, BatchWriteItem)", err)
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("%w: is the endpoint right and reachable?", err)
	}
	return err
}

// Claim raises the table's fence to f. A newly elected driver calls it
// before it reads checkpoints, so that nothing an older leader still has in
// flight can change what it reads; see the package doc. It fails with
// checkpoint.ErrFenced when a newer leader claimed the store already.
func (s *Store) Claim(ctx context.Context, f checkpoint.Fence) error {
	return s.core.Claim(ctx, f)
}

// PutJob writes the job's catalog entry (fenced).
func (s *Store) PutJob(ctx context.Context, f checkpoint.Fence, job checkpoint.JobRecord) error {
	return s.core.PutJob(ctx, f, job)
}

// GetJob reads a catalog entry; an unknown job is checkpoint.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, name string) (checkpoint.JobRecord, error) {
	return s.core.GetJob(ctx, name)
}

// ListJobs returns every catalog entry, sorted by name (a consistent read).
func (s *Store) ListJobs(ctx context.Context) ([]checkpoint.JobRecord, error) {
	return s.core.ListJobs(ctx)
}

// DeleteJob removes the catalog entry and every log of the job (fenced).
// Deleting an unknown job succeeds.
func (s *Store) DeleteJob(ctx context.Context, f checkpoint.Fence, name string) error {
	return s.core.DeleteJob(ctx, f, name)
}

// PutPlan writes the offset log entry of plan.Batch (fenced).
func (s *Store) PutPlan(ctx context.Context, f checkpoint.Fence, job string, plan checkpoint.BatchPlan) error {
	return s.core.PutPlan(ctx, f, job, plan)
}

// LatestPlan returns the plan of the highest batch, or checkpoint.ErrNotFound.
func (s *Store) LatestPlan(ctx context.Context, job string) (checkpoint.BatchPlan, error) {
	return s.core.LatestPlan(ctx, job)
}

// PutTaskEnd records where the task key of batch stopped (fenced).
func (s *Store) PutTaskEnd(ctx context.Context, f checkpoint.Fence, job string, batch stream.BatchID, key string, end stream.Position) error {
	return s.core.PutTaskEnd(ctx, f, job, batch, key, end)
}

// TaskEnds returns the task ends recorded for batch's current plan.
func (s *Store) TaskEnds(ctx context.Context, job string, batch stream.BatchID) (map[string]stream.Position, error) {
	return s.core.TaskEnds(ctx, job, batch)
}

// PutCommit writes the commit log entry of c.Batch (fenced).
func (s *Store) PutCommit(ctx context.Context, f checkpoint.Fence, job string, c checkpoint.Commit) error {
	return s.core.PutCommit(ctx, f, job, c)
}

// LatestCommit returns the commit of the highest batch, or
// checkpoint.ErrNotFound.
func (s *Store) LatestCommit(ctx context.Context, job string) (checkpoint.Commit, error) {
	return s.core.LatestCommit(ctx, job)
}

// Purge deletes plans, task ends and commits of batches below before
// (fenced). The driver calls it with its latest batch minus
// minBatchesToRetain.
func (s *Store) Purge(ctx context.Context, f checkpoint.Fence, job string, before stream.BatchID) error {
	return s.core.Purge(ctx, f, job, before)
}

// Close releases the store's idle connections. The table stays.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
