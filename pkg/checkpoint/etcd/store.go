package etcd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/sluicehq/sluice/pkg/checkpoint"
	"github.com/sluicehq/sluice/pkg/stream"
)

// DefaultPrefix is the key prefix used when WithPrefix is not given.
const DefaultPrefix = "/sluice/"

// Option configures a Store; options are validated by New.
type Option func(*options)

type options struct {
	prefix    string
	chunkSize int
}

// DefaultChunkSize is the largest plan or commit stored as one value; larger
// ones are split into parts of this size (see the package documentation).
// etcd refuses requests above 1.5 MiB by default (--max-request-bytes).
const DefaultChunkSize = 512 << 10

// WithPrefix sets the prefix under which every key of the store lives.
// Default "/sluice/". It must end with '/'; use different prefixes to share
// one etcd among several driver groups.
func WithPrefix(prefix string) Option {
	return func(o *options) { o.prefix = prefix }
}

// Store is a checkpoint.Store in etcd. It is safe for concurrent use.
type Store struct {
	client    *clientv3.Client
	prefix    string
	chunkSize int
}

var _ checkpoint.Store = (*Store)(nil)

// New returns a Store on client. The client belongs to the caller: Close
// does not close it.
func New(client *clientv3.Client, opts ...Option) (*Store, error) {
	if client == nil {
		return nil, errors.New("new etcd checkpoint store: etcd client is nil")
	}
	o := options{prefix: DefaultPrefix, chunkSize: DefaultChunkSize}
	for _, opt := range opts {
		opt(&o)
	}
	if o.prefix == "" || !strings.HasSuffix(o.prefix, "/") {
		return nil, fmt.Errorf("new etcd checkpoint store: prefix %q must be non-empty and end with '/'", o.prefix)
	}
	if o.chunkSize <= 0 {
		return nil, fmt.Errorf("new etcd checkpoint store: chunk size %d must be positive", o.chunkSize)
	}
	return &Store{client: client, prefix: o.prefix, chunkSize: o.chunkSize}, nil
}

// Close does nothing: the client belongs to the caller.
func (s *Store) Close() error { return nil }

// Keys. Job names are escaped; batches are fixed width so that key order is
// numeric order (BatchID is never negative: see checkpoint.CheckBatch).

func (s *Store) jobKey(job string) string { return s.prefix + "jobs/" + url.PathEscape(job) }
func (s *Store) jobsPrefix() string       { return s.prefix + "jobs/" }
func (s *Store) plansPrefix(job string) string {
	return s.prefix + "plans/" + url.PathEscape(job) + "/"
}
func (s *Store) endsPrefix(job string) string { return s.prefix + "ends/" + url.PathEscape(job) + "/" }
func (s *Store) commitsPrefix(job string) string {
	return s.prefix + "commits/" + url.PathEscape(job) + "/"
}
func batchKey(b stream.BatchID) string { return fmt.Sprintf("%020d", int64(b)) }

// Parts of chunked plans and commits live beside, not under, the plans and
// commits prefixes, so that the latest-entry reads see heads only.
func (s *Store) planPartsPrefix(job string) string {
	return s.prefix + "planparts/" + url.PathEscape(job) + "/"
}
func (s *Store) commitPartsPrefix(job string) string {
	return s.prefix + "commitparts/" + url.PathEscape(job) + "/"
}

func (s *Store) planKey(job string, b stream.BatchID) string { return s.plansPrefix(job) + batchKey(b) }
func (s *Store) commitKey(job string, b stream.BatchID) string {
	return s.commitsPrefix(job) + batchKey(b)
}
func (s *Store) batchEndsPrefix(job string, b stream.BatchID) string {
	return s.endsPrefix(job) + batchKey(b) + "/"
}

// taskEnd is the stored value of a task end.
type taskEnd struct {
	Key string          `json:"key"`
	End stream.Position `json:"end"`
}

// fenced runs ops in one transaction guarded by the fence. what names the
// write for errors ("job orders: put plan 42").
func (s *Store) fenced(ctx context.Context, f checkpoint.Fence, what string, ops ...clientv3.Op) error {
	if f.Key == "" || f.Epoch <= 0 {
		return fmt.Errorf("%s: fence %+v is not a leadership fence: the etcd store only accepts writes from an elected leader (internal/cluster)", what, f)
	}
	resp, err := s.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(f.Key), "=", f.Epoch)).
		Then(ops...).
		Commit()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%s: election key %s epoch %d: %w", what, f.Key, f.Epoch, checkpoint.ErrFenced)
	}
	return nil
}

// PutJob writes the job's catalog entry.
func (s *Store) PutJob(ctx context.Context, f checkpoint.Fence, job checkpoint.JobRecord) error {
	what := fmt.Sprintf("job %q: put catalog entry", job.Name)
	if err := checkpoint.CheckJob(job.Name); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	v, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.fenced(ctx, f, what, clientv3.OpPut(s.jobKey(job.Name), string(v)))
}

// GetJob reads a catalog entry; an unknown job is checkpoint.ErrNotFound.
func (s *Store) GetJob(ctx context.Context, name string) (checkpoint.JobRecord, error) {
	var rec checkpoint.JobRecord
	what := fmt.Sprintf("job %q: get catalog entry", name)
	if err := checkpoint.CheckJob(name); err != nil {
		return rec, fmt.Errorf("%s: %w", what, err)
	}
	resp, err := s.client.Get(ctx, s.jobKey(name))
	if err != nil {
		return rec, fmt.Errorf("%s: %w", what, err)
	}
	if len(resp.Kvs) == 0 {
		return rec, fmt.Errorf("%s: %w", what, checkpoint.ErrNotFound)
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return rec, fmt.Errorf("%s: decode %s: %w", what, resp.Kvs[0].Key, err)
	}
	return rec, nil
}

// ListJobs returns every catalog entry, sorted by name; an entry that does
// not decode is listed with its name and Unreadable set.
func (s *Store) ListJobs(ctx context.Context) ([]checkpoint.JobRecord, error) {
	resp, err := s.client.Get(ctx, s.jobsPrefix(), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	jobs := make([]checkpoint.JobRecord, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var rec checkpoint.JobRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			// One bad entry must not hide the others (nor stop a driver
			// from starting them): list it as unreadable, by its key.
			name, uerr := url.PathUnescape(strings.TrimPrefix(string(kv.Key), s.jobsPrefix()))
			if uerr != nil {
				name = strings.TrimPrefix(string(kv.Key), s.jobsPrefix())
			}
			rec = checkpoint.JobRecord{Name: name, Unreadable: fmt.Errorf("decode %s: %w", kv.Key, err)}
		}
		jobs = append(jobs, rec)
	}
	slices.SortFunc(jobs, func(a, b checkpoint.JobRecord) int { return strings.Compare(a.Name, b.Name) })
	return jobs, nil
}

// DeleteJob removes the catalog entry and all logs of the job in one fenced
// transaction. Deleting an unknown job succeeds, so a retried delete does not
// fail.
func (s *Store) DeleteJob(ctx context.Context, f checkpoint.Fence, name string) error {
	what := fmt.Sprintf("job %q: delete", name)
	if err := checkpoint.CheckJob(name); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.fenced(ctx, f, what,
		clientv3.OpDelete(s.jobKey(name)),
		clientv3.OpDelete(s.plansPrefix(name), clientv3.WithPrefix()),
		clientv3.OpDelete(s.endsPrefix(name), clientv3.WithPrefix()),
		clientv3.OpDelete(s.commitsPrefix(name), clientv3.WithPrefix()),
		clientv3.OpDelete(s.planPartsPrefix(name), clientv3.WithPrefix()),
		clientv3.OpDelete(s.commitPartsPrefix(name), clientv3.WithPrefix()),
	)
}

// PutPlan writes the offset log entry of plan.Batch, replacing any earlier
// plan of that batch.
func (s *Store) PutPlan(ctx context.Context, f checkpoint.Fence, job string, plan checkpoint.BatchPlan) error {
	what := fmt.Sprintf("job %q: put plan %d", job, plan.Batch)
	if err := errors.Join(checkpoint.CheckJob(job), checkpoint.CheckBatch(plan.Batch)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	v, err := json.Marshal(plan)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.putChunked(ctx, f, what, s.planKey(job, plan.Batch), s.planPartsPrefix(job)+batchKey(plan.Batch)+"/", v)
}

// LatestPlan returns the plan of the highest batch, or checkpoint.ErrNotFound.
func (s *Store) LatestPlan(ctx context.Context, job string) (checkpoint.BatchPlan, error) {
	var plan checkpoint.BatchPlan
	err := s.latest(ctx, job, "latest plan", s.plansPrefix(job), s.planPartsPrefix(job), &plan)
	return plan, err
}

// PutTaskEnd records where the task key of batch stopped.
func (s *Store) PutTaskEnd(ctx context.Context, f checkpoint.Fence, job string, batch stream.BatchID, key string, end stream.Position) error {
	what := fmt.Sprintf("job %q: batch %d: put task end %q", job, batch, key)
	if err := errors.Join(checkpoint.CheckJob(job), checkpoint.CheckBatch(batch)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if key == "" {
		return fmt.Errorf("%s: range key must not be empty", what)
	}
	v, err := json.Marshal(taskEnd{Key: key, End: end})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.fenced(ctx, f, what, clientv3.OpPut(s.batchEndsPrefix(job, batch)+key, string(v)))
}

// TaskEnds returns the recorded task ends of batch by range key; none is an
// empty map, not an error.
func (s *Store) TaskEnds(ctx context.Context, job string, batch stream.BatchID) (map[string]stream.Position, error) {
	what := fmt.Sprintf("job %q: batch %d: task ends", job, batch)
	if err := errors.Join(checkpoint.CheckJob(job), checkpoint.CheckBatch(batch)); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	resp, err := s.client.Get(ctx, s.batchEndsPrefix(job, batch), clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ends := make(map[string]stream.Position, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var te taskEnd
		if err := json.Unmarshal(kv.Value, &te); err != nil {
			return nil, fmt.Errorf("%s: decode %s: %w", what, kv.Key, err)
		}
		ends[te.Key] = te.End
	}
	return ends, nil
}

// PutCommit writes the commit log entry of c.Batch.
func (s *Store) PutCommit(ctx context.Context, f checkpoint.Fence, job string, c checkpoint.Commit) error {
	what := fmt.Sprintf("job %q: put commit %d", job, c.Batch)
	if err := errors.Join(checkpoint.CheckJob(job), checkpoint.CheckBatch(c.Batch)); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.putChunked(ctx, f, what, s.commitKey(job, c.Batch), s.commitPartsPrefix(job)+batchKey(c.Batch)+"/", v)
}

// LatestCommit returns the commit of the highest batch, or
// checkpoint.ErrNotFound.
func (s *Store) LatestCommit(ctx context.Context, job string) (checkpoint.Commit, error) {
	var c checkpoint.Commit
	err := s.latest(ctx, job, "latest commit", s.commitsPrefix(job), s.commitPartsPrefix(job), &c)
	return c, err
}

// Purge deletes plans, task ends and commits of batches below before, in one
// fenced transaction. The catalog entry stays.
func (s *Store) Purge(ctx context.Context, f checkpoint.Fence, job string, before stream.BatchID) error {
	what := fmt.Sprintf("job %q: purge batches below %d", job, before)
	if err := checkpoint.CheckJob(job); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if before < 0 {
		before = 0 // nothing is below a negative batch; still check the fence
	}
	// [prefix, prefix+batchKey(before)) holds exactly the batches below
	// before, task ends included, because batch keys are fixed width.
	return s.fenced(ctx, f, what,
		clientv3.OpDelete(s.plansPrefix(job), clientv3.WithRange(s.planKey(job, before))),
		clientv3.OpDelete(s.endsPrefix(job), clientv3.WithRange(s.endsPrefix(job)+batchKey(before))),
		clientv3.OpDelete(s.commitsPrefix(job), clientv3.WithRange(s.commitKey(job, before))),
		clientv3.OpDelete(s.planPartsPrefix(job), clientv3.WithRange(s.planPartsPrefix(job)+batchKey(before))),
		clientv3.OpDelete(s.commitPartsPrefix(job), clientv3.WithRange(s.commitPartsPrefix(job)+batchKey(before))),
	)
}

// latest decodes into v the value of the greatest key under prefix,
// assembling it from its parts under partsPrefix when it is chunked.
func (s *Store) latest(ctx context.Context, job, what, prefix, partsPrefix string, v any) error {
	what = fmt.Sprintf("job %q: %s", job, what)
	if err := checkpoint.CheckJob(job); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	resp, err := s.client.Get(ctx, prefix,
		clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if len(resp.Kvs) == 0 {
		return fmt.Errorf("%s: %w", what, checkpoint.ErrNotFound)
	}
	kv := resp.Kvs[0]
	value, err := s.assemble(ctx, kv.Value, partsPrefix+strings.TrimPrefix(string(kv.Key), prefix)+"/", resp.Header.Revision)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", what, kv.Key, err)
	}
	if err := json.Unmarshal(value, v); err != nil {
		return fmt.Errorf("%s: decode %s: %w", what, kv.Key, err)
	}
	return nil
}

// chunkHead is the value of a plan or commit key whose entry was too large
// for one etcd request: it names the parts holding the entry's JSON. Entries
// themselves are JSON objects without a "chunked" member, so one decoding
// tells the two apart.
type chunkHead struct {
	Chunked *chunkRef `json:"chunked"`
}

type chunkRef struct {
	Gen    string `json:"gen"`    // the parts' generation: one per write
	Parts  int    `json:"parts"`  // parts 000000 .. Parts-1
	Size   int    `json:"size"`   // bytes of the whole entry
	SHA256 string `json:"sha256"` // of the whole entry, hex
}

// putChunked writes value at key, fenced. A value up to the chunk size is
// stored as is. A larger one is split into parts, each written in its own
// fenced transaction under batchParts+gen+"/", and then the head at key,
// which references them, in a last fenced transaction: etcd limits the
// size of a whole transaction (1.5 MiB by default), so they cannot all be
// one. Readers find an entry only through its head, so they see it once
// all its parts are there and never partly. Each write uses a new
// generation, so rewriting the entry never changes parts that the current
// head references; the head's transaction deletes every other generation of
// the batch (parts of earlier writes, or of a write that failed before its
// head). Fencing holds throughout: a deposed leader's parts are refused,
// or, written before it was deposed, are orphans that the next write of the
// batch, Purge or DeleteJob remove.
func (s *Store) putChunked(ctx context.Context, f checkpoint.Fence, what, key, batchParts string, value []byte) error {
	if len(value) <= s.chunkSize {
		return s.fenced(ctx, f, what,
			clientv3.OpPut(key, string(value)),
			clientv3.OpDelete(batchParts, clientv3.WithPrefix()))
	}
	var g [8]byte
	if _, err := rand.Read(g[:]); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	sum := sha256.Sum256(value)
	ref := chunkRef{Gen: hex.EncodeToString(g[:]), Size: len(value), SHA256: hex.EncodeToString(sum[:])}
	genPrefix := batchParts + ref.Gen + "/"
	for off := 0; off < len(value); off += s.chunkSize {
		part := value[off:min(off+s.chunkSize, len(value))]
		if err := s.fenced(ctx, f, fmt.Sprintf("%s: part %d", what, ref.Parts),
			clientv3.OpPut(genPrefix+partKey(ref.Parts), string(part))); err != nil {
			return err
		}
		ref.Parts++
	}
	head, err := json.Marshal(chunkHead{Chunked: &ref})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return s.fenced(ctx, f, what,
		clientv3.OpPut(key, string(head)),
		// Every other generation of the batch: [batchParts, genPrefix) and
		// [end of genPrefix, end of batchParts).
		clientv3.OpDelete(batchParts, clientv3.WithRange(genPrefix)),
		clientv3.OpDelete(clientv3.GetPrefixRangeEnd(genPrefix), clientv3.WithRange(clientv3.GetPrefixRangeEnd(batchParts))))
}

func partKey(i int) string { return fmt.Sprintf("%06d", i) }

// assemble returns the entry a head value stands for: the value itself, or,
// for a chunked head, its parts under batchParts read at revision rev (the
// head's read), checked against the head.
func (s *Store) assemble(ctx context.Context, value []byte, batchParts string, rev int64) ([]byte, error) {
	if !bytes.Contains(value, []byte(`"chunked"`)) {
		return value, nil // cannot be a head; skip decoding it twice
	}
	var h chunkHead
	if err := json.Unmarshal(value, &h); err != nil || h.Chunked == nil {
		return value, nil // not a head: the entry's own decoding reports errors
	}
	ref := h.Chunked
	resp, err := s.client.Get(ctx, batchParts+ref.Gen+"/", clientv3.WithPrefix(), clientv3.WithRev(rev),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("read %d parts: %w", ref.Parts, err)
	}
	if len(resp.Kvs) != ref.Parts {
		return nil, fmt.Errorf("chunked entry has %d of its %d parts (generation %s)", len(resp.Kvs), ref.Parts, ref.Gen)
	}
	out := make([]byte, 0, ref.Size)
	for i, kv := range resp.Kvs {
		if want := batchParts + ref.Gen + "/" + partKey(i); string(kv.Key) != want {
			return nil, fmt.Errorf("chunked entry: part %s where %s was expected", kv.Key, want)
		}
		out = append(out, kv.Value...)
	}
	sum := sha256.Sum256(out)
	if len(out) != ref.Size || hex.EncodeToString(sum[:]) != ref.SHA256 {
		return nil, fmt.Errorf("chunked entry: parts of generation %s do not match its head (%d bytes, want %d)", ref.Gen, len(out), ref.Size)
	}
	return out, nil
}
