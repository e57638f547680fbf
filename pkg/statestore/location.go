package statestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Location is where durable state files live. Names are slash-separated
// relative paths (fs.ValidPath, not "."). Dir keeps them in a directory, S3
// in a bucket; OpenLocation opens either from a checkpoint.state URI.
type Location interface {
	// Put stores data under name atomically: a concurrent or later Get sees
	// either the whole previous content (or none) or the whole new content.
	Put(ctx context.Context, name string, data []byte) error
	// Get returns the content of name, or an error wrapping ErrNotExist.
	Get(ctx context.Context, name string) ([]byte, error)
	// List returns the names of all files under prefix (a "directory"),
	// sorted. An absent prefix is an empty list, not an error.
	List(ctx context.Context, prefix string) ([]string, error)
	// Delete removes name; an absent file is not an error.
	Delete(ctx context.Context, name string) error
}

// ErrNotExist is returned (wrapped) by Location.Get when the file is absent.
var ErrNotExist = errors.New("statestore: no such file")

// tmpPrefix marks Dir's in-flight files; List hides them so a reader never
// mistakes a half-written file for a real one.
const tmpPrefix = ".tmp-"

// dirLocation is a Location on a local (or mounted) file system.
type dirLocation struct {
	root string
}

// Dir returns a Location rooted at the directory root, creating it.
func Dir(root string) (Location, error) {
	if root == "" {
		return nil, errors.New("statestore: Dir: root: required")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("statestore: Dir: create %s: %w", root, err)
	}
	return &dirLocation{root: root}, nil
}

// checkName accepts the names every Location takes: slash-separated
// relative paths without empty, "." or ".." elements (fs.ValidPath), so a
// name means the same file in a directory and in a bucket.
func checkName(name string) error {
	if name == "" || name == "." || !fs.ValidPath(name) {
		return fmt.Errorf("statestore: invalid file name %q", name)
	}
	return nil
}

// hidden reports a name List leaves out: an in-flight temp file of Dir.
func hidden(name string) bool {
	return strings.HasPrefix(path.Base(name), tmpPrefix)
}

// path maps a validated slash-separated name to a file path under root.
func (d *dirLocation) path(name string) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(name)), nil
}

func (d *dirLocation) Put(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("statestore: put %s: %w", name, err)
	}
	// Write to a unique temp file in the same directory and rename it into
	// place: rename within a directory is atomic, so readers see all or
	// nothing, and two writers racing on the same name each rename a whole
	// file (the last one wins, and for us both carry the same bytes).
	f, err := os.CreateTemp(dir, tmpPrefix+filepath.Base(p)+"-*")
	if err != nil {
		return fmt.Errorf("statestore: put %s: %w", name, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("statestore: put %s: write: %w", name, err)
	}
	// Sync before rename so a crash cannot leave the new name pointing at
	// data that never reached the disk.
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("statestore: put %s: sync: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("statestore: put %s: close: %w", name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("statestore: put %s: rename: %w", name, err)
	}
	committed = true
	// Persist the directory entry too; best effort, as not every file
	// system supports syncing a directory.
	if df, err := os.Open(dir); err == nil {
		_ = df.Sync()
		_ = df.Close()
	}
	return nil
}

func (d *dirLocation) Get(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("statestore: get %s: %w", name, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("statestore: get %s: %w", name, err)
	}
	return data, nil
}

func (d *dirLocation) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := d.root
	if prefix != "" {
		p, err := d.path(prefix)
		if err != nil {
			return nil, err
		}
		start = p
	}
	var names []string
	err := filepath.WalkDir(start, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			// An absent prefix, or one below a file, holds nothing.
			if p == start && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) {
				return fs.SkipAll
			}
			return err
		}
		if e.IsDir() || hidden(e.Name()) {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("statestore: list %s: %w", prefix, err)
	}
	sort.Strings(names)
	return names, nil
}

func (d *dirLocation) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("statestore: delete %s: %w", name, err)
	}
	return nil
}

// OpenLocation opens the Location a checkpoint.state URI names:
//
//	/abs/path or file:///abs/path  a directory (Dir), created if absent
//	s3://bucket[/prefix]           objects under prefix in bucket (S3)
//
// s3cfg says how to reach S3 (it is ignored for a directory); its zero value
// is the SDK's default region and credential chain. OpenLocation does not
// call S3: a missing bucket or refused credentials show on first use, with
// advice in the error. Errors never carry s3cfg's secrets, nor credentials
// written into the URI (which are refused).
func OpenLocation(ctx context.Context, uri string, s3cfg S3Config) (Location, error) {
	if !strings.Contains(uri, "://") {
		if uri == "" || !filepath.IsAbs(uri) {
			return nil, fmt.Errorf("statestore: location %q: give an absolute path, file:///path or s3://bucket/prefix", uri)
		}
		return Dir(filepath.Clean(uri))
	}
	u, err := url.Parse(uri)
	if err != nil {
		// url.Parse's error repeats the URI, which may hold a secret.
		return nil, errors.New("statestore: location is not a valid URL")
	}
	if u.User != nil {
		return nil, fmt.Errorf("statestore: location %s://%s%s: credentials in the URL are not accepted; the job's AWS credentials are used", u.Scheme, u.Host, u.EscapedPath())
	}
	if u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		// Not echoed: a query may be where someone put a secret.
		return nil, fmt.Errorf("statestore: location %s://%s: a query, fragment or opaque part is not accepted (give s3://bucket/prefix; region and endpoint come from the job's settings)", u.Scheme, u.Host)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("statestore: location %q: a file URL names no host (file:///path)", uri)
		}
		if !filepath.IsAbs(u.Path) {
			return nil, fmt.Errorf("statestore: location %q: the path must be absolute", uri)
		}
		return Dir(filepath.Clean(u.Path))
	case "s3":
		if u.Host == "" {
			return nil, fmt.Errorf("statestore: location %q: no bucket (s3://bucket/prefix)", uri)
		}
		return openS3(ctx, u.Host, u.Path, s3cfg)
	}
	return nil, fmt.Errorf("statestore: location %q: scheme %q is not supported (file or s3)", uri, u.Scheme)
}
