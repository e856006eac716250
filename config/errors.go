package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// ErrInvalid is wrapped by every error that says a build.toml is wrong (bad
// syntax, unknown key, wrong type, bad value), as opposed to one that could
// not be read.
var ErrInvalid = errors.New("invalid build file")

// Error is one thing wrong with a build file, with where it is.
type Error struct {
	File string // the file name as given to Load or Parse
	Line int    // 1-based; 0 when unknown
	Col  int    // 1-based byte column; 0 when unknown
	Key  string // dotted key path, e.g. images.api.platforms[1]
	Msg  string

	err error // the cause, if another package's error
}

// Error formats as "file:line:col: key: message", leaving out what is unknown.
func (e *Error) Error() string {
	var parts []string
	where := e.File
	if e.Line > 0 {
		lc := strconv.Itoa(e.Line)
		if e.Col > 0 {
			lc += ":" + strconv.Itoa(e.Col)
		}
		where = strings.TrimPrefix(where+":"+lc, ":")
	}
	for _, s := range []string{where, e.Key} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(append(parts, e.Msg), ": ")
}

// Unwrap gives ErrInvalid and the cause, so that errors.Is finds either
// (e.g. platform.ErrInvalid for a bad platform).
func (e *Error) Unwrap() []error {
	if e.err == nil {
		return []error{ErrInvalid}
	}
	return []error{ErrInvalid, e.err}
}

// path is a key path being validated: a TOML key and, for an element of an
// array, its index (-1 otherwise).
type path struct {
	key  toml.Key
	elem int
}

func keyPath(key ...string) path { return path{key: toml.Key(key), elem: -1} }

// child returns the path of a key inside p's table.
func (p path) child(k string) path {
	key := append(append(toml.Key{}, p.key...), k)
	return path{key: key, elem: -1}
}

// at returns the path of element i of p's array.
func (p path) at(i int) path { return path{key: p.key, elem: i} }

func (p path) String() string {
	if p.elem < 0 {
		return p.key.String()
	}
	return fmt.Sprintf("%s[%d]", p.key, p.elem)
}

// maxErrors caps the errors reported for one file: placing each one costs a
// pass over the file, and nobody reads the hundredth.
const maxErrors = 20

// problems collects the errors found in one file, each placed by the locator.
type problems struct {
	file    string
	loc     *locator
	errs    []*Error
	dropped int // errors past maxErrors
}

func (ps *problems) add(p path, cause error, format string, args ...any) {
	if len(ps.errs) >= maxErrors {
		ps.dropped++
		return
	}
	at := ps.loc.locate(p.key, p.elem)
	ps.errs = append(ps.errs, &Error{
		File: ps.file, Line: at.line, Col: at.col,
		Key: p.String(), Msg: fmt.Sprintf(format, args...), err: cause,
	})
}

// addf records a problem of our own; addErr one found by another package,
// whose message is enough on its own.
func (ps *problems) addf(p path, format string, args ...any) { ps.add(p, nil, format, args...) }
func (ps *problems) addErr(p path, err error)                { ps.add(p, err, "%v", err) }

// err returns nil, the one error, or all of them in file order.
func (ps *problems) err() error {
	switch {
	case len(ps.errs) == 0:
		return nil
	case len(ps.errs) == 1 && ps.dropped == 0:
		return ps.errs[0]
	}
	slices.SortStableFunc(ps.errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(lineOrLast(a), lineOrLast(b)), cmp.Compare(a.Col, b.Col), cmp.Compare(a.Key, b.Key))
	})
	all := make([]error, len(ps.errs), len(ps.errs)+1)
	for i, e := range ps.errs {
		all[i] = e
	}
	if ps.dropped > 0 {
		all = append(all, &Error{File: ps.file, Msg: fmt.Sprintf("too many errors: %d more not shown", ps.dropped)})
	}
	return errors.Join(all...)
}

// lineOrLast sorts errors of unknown place after the placed ones.
func lineOrLast(e *Error) int {
	if e.Line == 0 {
		return math.MaxInt
	}
	return e.Line
}
