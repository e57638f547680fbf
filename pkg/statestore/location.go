package statestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Location is where durable state files live. Names are slash-separated
// relative paths. It is an interface so that object stores (S3) can stand in
// for a directory later.
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

// path maps a validated slash-separated name to a file path under root.
func (d *dirLocation) path(name string) (string, error) {
	if name == "" || name == "." || !fs.ValidPath(name) {
		return "", fmt.Errorf("statestore: invalid file name %q", name)
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
			if p == start && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), tmpPrefix) {
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
