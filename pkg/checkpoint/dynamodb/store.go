package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/awsstore"
	"github.com/sluicehq/sluice/pkg/checkpoint/internal/casstore"
)

// Store is a checkpoint.Store in a DynamoDB table, and a
// checkpoint.Claimer: a newly elected driver calls Claim before it reads
// checkpoints (see the package doc). Its methods are casstore's, which
// implements the records, fencing and reading rules over the table. It is
// safe for concurrent use.
type Store struct {
	*core
	transport *http.Transport
}

// core is embedded under an unexported name, so that its methods are
// Store's without exposing the internal type.
type core = casstore.Store

var (
	_ checkpoint.Store   = (*Store)(nil)
	_ checkpoint.Claimer = (*Store)(nil)
)

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
	awsCfg, tr, err := awsstore.Load(ctx, cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("dynamodb checkpoint store: %w", err)
	}
	client := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	if err := ensureTable(ctx, client, cfg); err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("dynamodb checkpoint store: %w", err)
	}
	b := &backend{client: client, table: cfg.Table, prefix: cfg.Prefix}
	return &Store{core: casstore.New(b, o), transport: tr}, nil
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
// permissions, and an unreachable endpoint.
func explain(err error) error {
	return awsstore.Explain(err, func(code string) string {
		switch code {
		case "UnrecognizedClientException", "InvalidSignatureException", "IncompleteSignatureException",
			"MissingAuthenticationTokenException", "ExpiredTokenException", "InvalidClientTokenId":
			return awsstore.CredentialsRefused
		case "AccessDeniedException":
			return "the credentials lack a DynamoDB permission the store needs (see docs/checkpoints.md: DescribeTable, CreateTable, GetItem, PutItem, Query, BatchWriteItem)"
		}
		return ""
	})
}

// Close releases the store's idle connections. The table stays.
func (s *Store) Close() error {
	s.transport.CloseIdleConnections()
	return nil
}
