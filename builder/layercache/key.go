package layercache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"strconv"
)

// SchemaVersion is hashed into every key: a change to what keys hash must
// change it, so old entries can never be mistaken for new ones.
const SchemaVersion = "kiln-layercache-v1"

// Key identifies a state or a step: a SHA-256.
type Key [sha256.Size]byte

// String is the key in hex, which is also its registry tag.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// Short is the key's first 12 hex digits, for log lines.
func (k Key) Short() string { return k.String()[:12] }

// IsZero says whether k was never set.
func (k Key) IsZero() bool { return k == Key{} }

// ParseKey reads a key written by String.
func ParseKey(s string) (Key, error) {
	var k Key
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return k, fmt.Errorf("invalid layer cache key %q", s)
	}
	copy(k[:], b)
	return k, nil
}

// Builder hashes the fields of a key. Each field is written with its name
// and length, so ("a", "bc") and ("ab", "c") never collide.
type Builder struct {
	h hash.Hash
}

// NewBuilder starts a key of the given kind ("state", "step", "files" ...).
func NewBuilder(kind string) *Builder {
	b := &Builder{h: sha256.New()}
	return b.Add("schema", SchemaVersion).Add("kind", kind)
}

// Add hashes one named field.
func (b *Builder) Add(name, value string) *Builder {
	b.raw(name)
	b.raw(value)
	return b
}

// AddList hashes a named list, its length first.
func (b *Builder) AddList(name string, values []string) *Builder {
	b.raw(name)
	b.raw(strconv.Itoa(len(values)))
	for _, v := range values {
		b.raw(v)
	}
	return b
}

// AddKey hashes another key.
func (b *Builder) AddKey(name string, k Key) *Builder { return b.Add(name, k.String()) }

func (b *Builder) raw(s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	b.h.Write(n[:])
	io.WriteString(b.h, s)
}

// Sum is the key.
func (b *Builder) Sum() Key {
	var k Key
	copy(k[:], b.h.Sum(nil))
	return k
}

// File is one file of a selection, as a key sees it: everything a copy
// keeps but the modification time.
type File struct {
	Path string      // slash path, relative to the selection's root
	Mode fs.FileMode // type and permission bits
	UID  int
	GID  int
	Size int64  // regular files
	Link string // symlink target
}

// Files hashes a selection of files in the order they are added.
type Files struct {
	b *Builder
	n int
}

// NewFiles starts a digest of files.
func NewFiles() *Files { return &Files{b: NewBuilder("files")} }

// Add hashes f and, for a regular file, its content read from r.
func (fs *Files) Add(f File, r io.Reader) error {
	fs.n++
	fs.b.Add("path", f.Path).
		Add("mode", strconv.FormatUint(uint64(f.Mode), 8)).
		Add("owner", strconv.Itoa(f.UID)+":"+strconv.Itoa(f.GID)).
		Add("link", f.Link)
	if !f.Mode.IsRegular() {
		return nil
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return fmt.Errorf("hashing %s: %w", f.Path, err)
	}
	if n != f.Size {
		return fmt.Errorf("hashing %s: %d bytes read, %d expected (changed while read)", f.Path, n, f.Size)
	}
	fs.b.Add("size", strconv.FormatInt(n, 10)).Add("sha256", hex.EncodeToString(h.Sum(nil)))
	return nil
}

// AddValue hashes a named value among the files (a heredoc's text, a
// source pattern).
func (fs *Files) AddValue(name, value string) { fs.b.Add(name, value) }

// Count is how many files were added.
func (fs *Files) Count() int { return fs.n }

// Sum is the selection's digest.
func (fs *Files) Sum() Key { return fs.b.Add("count", strconv.Itoa(fs.n)).Sum() }
