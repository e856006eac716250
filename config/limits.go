package config

import (
	"fmt"
	"strings"
)

// Limits on a build file. A build file may come from a repository nobody
// has read (a CI building pull requests), and the TOML decoder's work grows
// with the square of the nesting depth and with the number of keys times
// the length of their paths: 400 kB of `args = {a={a=…}}` would take it
// hours and tens of gigabytes. So one linear pass over the text checks
// these before the decoder sees it. A real build.toml is a few kilobytes,
// nests five levels deep and holds a few hundred values.
const (
	MaxFileSize  = 1 << 20 // bytes
	MaxDepth     = 32      // nested tables, inline tables, arrays and dotted-key parts
	MaxValues    = 10_000  // keys, table headers and array elements
	MaxKeyLength = 256     // bytes of one key's whole dotted path, its tables' names included
)

// maxKeyWork bounds the decoder's work on keys, which grows with each key's
// depth times its dotted parts (every part is a table it walks down to):
// 10,000 keys 32 deep would take it seconds. A large real build file needs a
// tenth of this.
const maxKeyWork = 250_000

// checkSize refuses a file of more than MaxFileSize bytes.
func checkSize(n int, file string) error {
	if n <= MaxFileSize {
		return nil
	}
	return &Error{File: file, Msg: fmt.Sprintf("larger than %d bytes (1 MiB), the most a build file may hold", MaxFileSize)}
}

// limitError is the first place where a build file breaks a limit.
type limitError struct {
	off int    // byte offset in the source
	key string // the table and top-level key it is under, as written
	msg string
}

// frame is where keys and values are: the top level under a [table]
// header, an inline table or an array.
type frame struct {
	kind  byte // 0 for the top level, '{' or '['
	depth int  // keys inside count their parts from here; an array's elements are at it
	path  int  // bytes of the key path up to here
}

// limitScanner knows just enough TOML to count what costs the decoder:
// strings and comments are skipped whole, brackets nest, and a key ends at
// its "=". On valid TOML it sees the structure the decoder sees; on invalid
// TOML the decoder stops at the first error, and the scanner has counted
// everything before it.
type limitScanner struct {
	src    string
	i      int
	stack  []frame // open inline tables and arrays, at most MaxDepth
	table  frame   // the top level, under the last [table] header
	values int
	work   int // see maxKeyWork

	inKey    bool
	keyStart int   // offset of the key's first byte; -1 until there is one
	keyParts int   // dotted parts
	keyLen   int   // bytes, quotes included
	keyBase  frame // what the key is in

	val frame // where a value starting now sits

	hdr              string // the last [table] header and
	topStart, topEnd int    // the top-level key being read, for messages
}

// checkLimits returns the first place where src breaks a limit, or nil. It
// takes time linear in len(src) and memory bounded by MaxDepth.
func checkLimits(src string) *limitError {
	s := &limitScanner{src: src}
	s.startKey(s.table)
	for s.i < len(s.src) {
		if err := s.step(); err != nil {
			return err
		}
	}
	return nil
}

func (s *limitScanner) step() *limitError {
	switch c := s.src[s.i]; {
	case c == '\n':
		s.i++
		if len(s.stack) == 0 {
			s.startKey(s.table)
		}
	case c == ' ' || c == '\t' || c == '\r':
		s.i++
	case c == '#':
		if j := strings.IndexByte(s.src[s.i:], '\n'); j >= 0 {
			s.i += j
		} else {
			s.i = len(s.src)
		}
	case s.inKey:
		return s.keyByte(c)
	default:
		return s.valueByte(c)
	}
	return nil
}

func (s *limitScanner) startKey(base frame) {
	s.inKey, s.keyStart, s.keyParts, s.keyLen, s.keyBase = true, -1, 1, 0, base
}

func (s *limitScanner) keyByte(c byte) *limitError {
	switch {
	case c == '[' && len(s.stack) == 0 && s.keyStart < 0:
		return s.header()
	case c == '}' && s.keyStart < 0 && len(s.stack) > 0:
		return s.valueByte(c) // {} or a trailing comma
	case c == '.':
		s.keyParts++
		s.i++
	case c == '=':
		return s.endKey()
	default:
		if s.keyStart < 0 {
			s.keyStart = s.i
			if len(s.stack) == 0 {
				s.topStart = s.i
			}
		}
		j := s.i + 1
		if c == '"' || c == '\'' {
			j = skipQuoted(s.src, s.i)
		}
		s.keyLen += j - s.i
		s.i = j
		if len(s.stack) == 0 {
			s.topEnd = s.i
		}
	}
	return nil
}

// endKey is at the "=" after a key: the key is counted and a value follows.
func (s *limitScanner) endKey() *limitError {
	s.val = frame{depth: s.keyBase.depth + s.keyParts, path: s.keyBase.path + s.keyLen + s.keyParts}
	at := s.keyStart
	if at < 0 {
		at = s.i // "= 1": the decoder will say what is missing
	}
	s.work += s.val.depth * (s.keyParts + 2)
	if err := s.check(at, s.val); err != nil {
		return err
	}
	s.inKey = false
	s.i++
	return nil
}

// header reads a [table] or [[array of tables]] header: the keys after it
// are under its path.
func (s *limitScanner) header() *limitError {
	start := s.i
	s.i++
	array := s.i < len(s.src) && s.src[s.i] == '['
	if array {
		s.i++
	}
	parts, n := 1, 0
	for s.i < len(s.src) && s.src[s.i] != ']' && s.src[s.i] != '\n' {
		switch c := s.src[s.i]; c {
		case '.':
			parts++
			s.i++
		case ' ', '\t':
			s.i++
		case '"', '\'':
			j := skipQuoted(s.src, s.i)
			n += j - s.i
			s.i = j
		default:
			n++
			s.i++
		}
	}
	for n := 0; n < 2 && s.i < len(s.src) && s.src[s.i] == ']' && (n == 0 || array); n++ {
		s.i++
	}
	s.hdr, s.topStart, s.topEnd = s.src[start:s.i], 0, 0
	s.table = frame{depth: parts, path: n + parts}
	s.work += parts * (parts + 2)
	if err := s.check(start, s.table); err != nil {
		return err
	}
	s.startKey(s.table)
	return nil
}

func (s *limitScanner) valueByte(c byte) *limitError {
	switch c {
	case '"', '\'':
		s.i = skipQuoted(s.src, s.i)
		return nil
	case '[':
		f := frame{kind: '[', depth: s.val.depth + 1, path: s.val.path}
		if err := s.check(s.i, f); err != nil {
			return err
		}
		s.stack = append(s.stack, f)
		s.val = f
	case '{':
		f := frame{kind: '{', depth: s.val.depth, path: s.val.path}
		s.stack = append(s.stack, f)
		s.startKey(f)
	case ']', '}':
		if len(s.stack) > 0 {
			s.stack = s.stack[:len(s.stack)-1]
		}
		if len(s.stack) > 0 && s.stack[len(s.stack)-1].kind == '[' {
			s.val = s.stack[len(s.stack)-1]
		}
		s.inKey = false
	case ',':
		if len(s.stack) == 0 {
			break
		}
		top := s.stack[len(s.stack)-1]
		if top.kind == '{' {
			s.startKey(top)
			break
		}
		if err := s.check(s.i, top); err != nil { // one more element
			return err
		}
		s.val = top
	}
	s.i++
	return nil
}

// check counts one value at f's depth and path length, at offset off.
func (s *limitScanner) check(off int, f frame) *limitError {
	s.values++
	var msg string
	switch {
	case s.values > MaxValues:
		msg = fmt.Sprintf("more than %d values (keys, tables and array elements), too many for a build file", MaxValues)
	case f.depth > MaxDepth:
		msg = fmt.Sprintf("nested more than %d levels deep (tables, arrays and dotted keys), too deep for a build file", MaxDepth)
	case f.path > MaxKeyLength:
		msg = fmt.Sprintf("key path longer than %d bytes, too long for a build file", MaxKeyLength)
	case s.work > maxKeyWork:
		msg = fmt.Sprintf("too many deeply nested keys (their depths times their dotted parts add up to more than %d), more than a build file needs", maxKeyWork)
	default:
		return nil
	}
	return &limitError{off: off, key: s.topKey(), msg: msg}
}

// topKey is the table and top-level key being read, as written, cut short.
func (s *limitScanner) topKey() string {
	k := strings.Trim(s.hdr, "[] \t")
	if key := s.src[s.topStart:max(s.topStart, s.topEnd)]; key != "" {
		k = strings.TrimPrefix(k+"."+key, ".")
	}
	if len(k) > 64 {
		k = k[:64] + "…"
	}
	return k
}

// skipQuoted returns the offset just past the TOML string whose opening
// quote is at i: basic or literal, on one line or three-quoted. One left
// open ends at the end of its line (or of src): the decoder reports it.
func skipQuoted(src string, i int) int {
	q, triple := src[i], `"""`
	if q == '\'' {
		triple = `'''`
	}
	if strings.HasPrefix(src[i:], triple) {
		for j := i + 3; j < len(src); j++ {
			switch {
			case src[j] == '\\' && q == '"':
				j++
			case strings.HasPrefix(src[j:], triple):
				j += 3
				for k := 0; k < 2 && j < len(src) && src[j] == q; k++ { // """a""""" ends with two quotes of content
					j++
				}
				return j
			}
		}
		return len(src)
	}
	for j := i + 1; j < len(src); j++ {
		switch src[j] {
		case '\\':
			if q == '"' {
				j++
			}
		case q:
			return j + 1
		case '\n':
			return j
		}
	}
	return len(src)
}
