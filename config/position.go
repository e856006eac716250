package config

import (
	"errors"
	"strings"

	"github.com/BurntSushi/toml"
)

// pos is a place in the source, both counted from 1; the zero pos is unknown.
type pos struct{ line, col int }

// locator finds where a key's value sits in the source. BurntSushi/toml keeps
// positions private and hands one out only inside a ParseError, so locate
// walks down to the key with Primitive values and decodes it into a type that
// always fails: the error it gets back carries the key's position.
type locator struct {
	src string

	decoded bool // the fields below are set on first use: most files have no errors
	md      toml.MetaData
	tables  map[string]map[string]toml.Primitive // by key path; "" is the top
}

// errLocate is what probe returns so that the decoder reports a position.
var errLocate = errors.New("locate")

type probe struct{}

func (*probe) UnmarshalTOML(any) error { return errLocate }

// locate returns the position of key's value, or of the nearest enclosing key
// that has one; elem >= 0 moves on to that element of an array value.
func (l *locator) locate(key toml.Key, elem int) pos {
	for n := len(key); n > 0; n-- {
		start, ok := l.offset(key[:n])
		if !ok {
			continue
		}
		start = valueStart(l.src, start)
		if n == len(key) && elem >= 0 {
			if off, ok := arrayElem(l.src, start, elem); ok {
				start = off
			}
		}
		return l.at(start)
	}
	return pos{}
}

// offset returns the byte offset of key's value in src.
func (l *locator) offset(key toml.Key) (int, bool) {
	tables, ok := l.table(key[:len(key)-1])
	if !ok {
		return 0, false
	}
	prim, ok := tables[key[len(key)-1]]
	if !ok {
		return 0, false
	}
	var pe toml.ParseError
	if !errors.As(l.md.PrimitiveDecode(prim, &probe{}), &pe) || pe.Position.Line == 0 {
		return 0, false
	}
	return pe.Position.Start, true
}

// table returns the keys of the table at key, decoding each table once.
func (l *locator) table(key toml.Key) (map[string]toml.Primitive, bool) {
	if !l.decoded {
		l.decoded = true
		var top map[string]toml.Primitive
		if md, err := toml.Decode(l.src, &top); err == nil {
			l.md, l.tables = md, map[string]map[string]toml.Primitive{"": top}
		}
	}
	if t, ok := l.tables[key.String()]; ok || len(key) == 0 {
		return t, ok
	}
	parent, ok := l.table(key[:len(key)-1])
	if !ok {
		return nil, false
	}
	prim, ok := parent[key[len(key)-1]]
	if !ok {
		return nil, false
	}
	var t map[string]toml.Primitive
	if err := l.md.PrimitiveDecode(prim, &t); err != nil {
		return nil, false
	}
	l.tables[key.String()] = t
	return t, true
}

// at turns a byte offset into a line and a column, both counted in bytes
// from 1 the way the TOML decoder counts them in its syntax errors.
func (l *locator) at(off int) pos {
	if off < 0 || off > len(l.src) {
		return pos{}
	}
	before := l.src[:off]
	line := strings.Count(before, "\n") + 1
	col := off - (strings.LastIndexByte(before, '\n') + 1) + 1
	return pos{line: line, col: col}
}

// valueStart steps back onto the opening quotes of a string or the bracket
// of an array or inline table: the decoder places those values after them.
func valueStart(src string, off int) int {
	if off <= 0 || off > len(src) {
		return off
	}
	switch c := src[off-1]; c {
	case '[', '{':
		return off - 1
	case '"', '\'':
		n := 1
		for n < 3 && off-n > 0 && src[off-n-1] == c {
			n++
		}
		return off - n
	}
	return off
}

// arrayElem returns the offset of element n of the array whose "[" is at
// start. It knows just enough TOML to skip strings, comments and nesting.
func arrayElem(src string, start, n int) (int, bool) {
	if start >= len(src) || src[start] != '[' {
		return 0, false
	}
	depth, idx, expect := 0, 0, true
	for i := start + 1; i < len(src); i++ {
		switch c := src[i]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
		case c == '#':
			i = skipLine(src, i)
		case c == ',' && depth == 0:
			idx, expect = idx+1, true
		case c == ']' && depth == 0:
			return 0, false
		default:
			if expect && depth == 0 && idx == n {
				return i, true
			}
			expect = false
			i, depth = skipToken(src, i, depth)
		}
	}
	return 0, false
}

// skipToken moves over one token of an array element and returns the offset
// of its last byte and the new nesting depth.
func skipToken(src string, i, depth int) (int, int) {
	switch c := src[i]; c {
	case '[', '{':
		return i, depth + 1
	case ']', '}':
		return i, depth - 1
	case '"', '\'':
		return skipString(src, i), depth
	}
	return i, depth
}

// skipString returns the offset of the closing quote of the string at i.
func skipString(src string, i int) int {
	q := src[i : i+1]
	if strings.HasPrefix(src[i:], q+q+q) {
		end := strings.Index(src[i+3:], q+q+q)
		if end < 0 {
			return len(src) - 1
		}
		end += i + 3
		for end+3 < len(src) && src[end+3] == q[0] { // """a"""" ends at the last three
			end++
		}
		return end + 2
	}
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			if q == `"` {
				j++
			}
		case q[0], '\n':
			return j
		}
	}
	return len(src) - 1
}

func skipLine(src string, i int) int {
	if j := strings.IndexByte(src[i:], '\n'); j >= 0 {
		return i + j - 1
	}
	return len(src) - 1
}
