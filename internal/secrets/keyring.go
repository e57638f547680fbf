package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// KeySize is the length of a cluster key: AES-256.
const KeySize = 32

// envelopePrefix starts every encrypted value; v1 is AES-256-GCM with a
// 12-byte random nonce and the value's field path and job name as
// additional data, so a ciphertext cannot be moved to another field or job.
const envelopePrefix = "enc:v1:"

var (
	keyIDRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	envelopeRE = regexp.MustCompile(`^enc:v1:([A-Za-z0-9_.-]{1,64}):([A-Za-z0-9_-]+)$`)
)

func isEnvelope(v string) bool { return strings.HasPrefix(v, envelopePrefix) }

// Keyring holds the cluster's secret keys: the first encrypts, each
// decrypts the envelopes carrying its id.
type Keyring struct {
	ids  []string
	aead map[string]cipher.AEAD
}

// Primary is the id of the key that encrypts.
func (k *Keyring) Primary() string { return k.ids[0] }

// IDs lists the key ids, the primary first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// LoadKeyFile reads a key file (--secrets-key-file). It holds either 32 raw
// bytes, or lines of text, newest key first, each
//
//	[<id>:]<base64 of 32 bytes>
//
// with blank lines and lines starting with # ignored. A key without an id
// gets one derived from it (the first 8 hex digits of its SHA-256), so the
// output of `head -c32 /dev/urandom | base64` is a key file. Errors never
// hold key material.
func LoadKeyFile(path string) (*Keyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secrets key file: %w", err)
	}
	k, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("secrets key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKeys reads the contents of a key file (see LoadKeyFile).
func ParseKeys(b []byte) (*Keyring, error) {
	if len(b) == KeySize && !isText(b) {
		return newKeyring([]string{derivedID(b)}, [][]byte{b})
	}
	var ids []string
	var keys [][]byte
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, enc, hasID := strings.Cut(line, ":")
		if !hasID {
			id, enc = "", line
		}
		key, err := decodeKey(enc)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		if !hasID {
			id = derivedID(key)
		} else if !keyIDRE.MatchString(id) {
			return nil, fmt.Errorf("line %d: key id must be 1-64 letters, digits, '.', '_' or '-'", n+1)
		}
		ids, keys = append(ids, id), append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("holds no key (want 32 raw bytes or lines of [<id>:]<base64 of 32 bytes>; create one with: head -c32 /dev/urandom | base64)")
	}
	return newKeyring(ids, keys)
}

func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\n' && c != '\r' && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}

func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("key is %d bytes, want %d (AES-256)", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, errors.New("key is not base64")
}

func derivedID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:4])
}

func newKeyring(ids []string, keys [][]byte) (*Keyring, error) {
	k := &Keyring{aead: map[string]cipher.AEAD{}}
	for i, id := range ids {
		if _, dup := k.aead[id]; dup {
			return nil, fmt.Errorf("key id %q appears twice", id)
		}
		block, err := aes.NewCipher(keys[i])
		if err != nil {
			return nil, err
		}
		gcm, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		k.ids = append(k.ids, id)
		k.aead[id] = gcm
	}
	return k, nil
}

// GenerateKeyFile writes a new key file at path with mode 0600, unless a
// file is already there; it reports whether it created one.
func GenerateKeyFile(path string) (bool, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	content := "# Sluice secrets key (AES-256-GCM), newest first: [<id>:]<base64>\n" +
		derivedID(key) + ":" + base64.StdEncoding.EncodeToString(key) + "\n"
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		os.Remove(path)
		return false, err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return false, err
	}
	return true, nil
}

// encrypt seals plain with the primary key; aad binds it to its place.
func (k *Keyring) encrypt(plain, aad string) (string, error) {
	id := k.ids[0]
	gcm := k.aead[id]
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := gcm.Seal(nonce, nonce, []byte(plain), []byte(aad))
	return envelopePrefix + id + ":" + base64.RawURLEncoding.EncodeToString(out), nil
}

// KeyError is an envelope that cannot be opened. It names the field and
// the key id, never a value.
type KeyError struct {
	Field  string
	KeyID  string
	Reason string
}

func (e *KeyError) Error() string {
	if e.KeyID == "" {
		return fmt.Sprintf("%s: encrypted value: %s", e.Field, e.Reason)
	}
	return fmt.Sprintf("%s: encrypted with key %q: %s", e.Field, e.KeyID, e.Reason)
}

// decrypt opens envelope v of field.
func (k *Keyring) decrypt(field, v, aad string) (string, error) {
	m := envelopeRE.FindStringSubmatch(v)
	if m == nil {
		return "", &KeyError{Field: field, Reason: "malformed envelope (want enc:v1:<key id>:<base64url>)"}
	}
	if k == nil {
		return "", &KeyError{Field: field, KeyID: m[1], Reason: "this driver has no --secrets-key-file"}
	}
	gcm, ok := k.aead[m[1]]
	if !ok {
		return "", &KeyError{Field: field, KeyID: m[1],
			Reason: fmt.Sprintf("no such key in --secrets-key-file (it holds %s); keep retired keys in the file until every job was re-encrypted", strings.Join(k.ids, ", "))}
	}
	raw, err := base64.RawURLEncoding.DecodeString(m[2])
	if err != nil || len(raw) < gcm.NonceSize()+gcm.Overhead() {
		return "", &KeyError{Field: field, KeyID: m[1], Reason: "malformed ciphertext"}
	}
	plain, err := gcm.Open(nil, raw[:gcm.NonceSize()], raw[gcm.NonceSize():], []byte(aad))
	if err != nil {
		return "", &KeyError{Field: field, KeyID: m[1], Reason: "authentication failed (another key with this id, or the value was moved from another field or job)"}
	}
	return string(plain), nil
}
