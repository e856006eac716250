package config

import (
	"errors"
	"reflect"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// value is one TOML value kept as the decoder found it, so that a wrong type
// becomes a validation error naming the key, not a decoder error that stops at
// the first one.
type value struct {
	set bool
	v   any
}

// UnmarshalTOML keeps v as it is.
func (x *value) UnmarshalTOML(v any) error {
	x.set, x.v = true, v
	return nil
}

// The raw* types are the shape of build.toml: a struct or a map is a table,
// a value any leaf. Their toml tags are the only list of known keys.
type rawFile struct {
	Cache      rawCache               `toml:"cache"`
	Registries map[string]rawRegistry `toml:"registries"`
	Warm       rawWarm                `toml:"warm"`
	Images     map[string]rawImage    `toml:"images"`
	Runner     rawRunner              `toml:"runner"`
}

type rawCache struct {
	Dir        value `toml:"dir"`
	MaxAge     value `toml:"max_age"`
	Jobs       value `toml:"jobs"`
	Layers     value `toml:"layers"`
	LayersRepo value `toml:"layers_repo"`
	LayersTTL  value `toml:"layers_ttl"`
}

type rawRegistry struct {
	Insecure      value `toml:"insecure"`
	SkipTLSVerify value `toml:"skip_tls_verify"`
	CA            value `toml:"ca"`
	ClientCert    value `toml:"client_cert"`
	ClientKey     value `toml:"client_key"`
	Mirrors       value `toml:"mirrors"`
}

type rawWarm struct {
	Platforms value `toml:"platforms"`
	Extra     value `toml:"extra"`
}

type rawImage struct {
	Context           value            `toml:"context"`
	Dockerfile        value            `toml:"dockerfile"`
	Target            value            `toml:"target"`
	Platforms         value            `toml:"platforms"`
	OptionalPlatforms value            `toml:"optional_platforms"`
	Tags              value            `toml:"tags"`
	Output            value            `toml:"output"`
	Args              map[string]value `toml:"args"`
	Labels            map[string]value `toml:"labels"`
}

type rawRunner struct {
	Kind       value   `toml:"kind"`
	Kubernetes rawKube `toml:"kubernetes"`
}

type rawKube struct {
	Kubeconfig        value            `toml:"kubeconfig"`
	Context           value            `toml:"context"`
	Namespace         value            `toml:"namespace"`
	Image             value            `toml:"image"`
	ImagePullPolicy   value            `toml:"image_pull_policy"`
	ImagePullSecrets  value            `toml:"image_pull_secrets"`
	ServiceAccount    value            `toml:"service_account"`
	NodeSelector      map[string]value `toml:"node_selector"`
	Tolerations       value            `toml:"tolerations"`
	Requests          map[string]value `toml:"requests"`
	Limits            map[string]value `toml:"limits"`
	Labels            map[string]value `toml:"labels"`
	Annotations       map[string]value `toml:"annotations"`
	CredentialsSecret value            `toml:"credentials_secret"`
	CacheClaim        value            `toml:"cache_claim"`
	CacheSize         value            `toml:"cache_size"`
	StorageClass      value            `toml:"storage_class"`
	ContextRepository value            `toml:"context_repository"`
	PendingTimeout    value            `toml:"pending_timeout"`
	ActiveDeadline    value            `toml:"active_deadline"`
	TTLAfterFinished  value            `toml:"ttl_after_finished"`
	KeepFailed        value            `toml:"keep_failed"`
	HostNetwork       value            `toml:"host_network"`
	WarmSchedule      value            `toml:"warm_schedule"`
}

// decode parses src into the raw shape. Syntax errors, unknown keys and
// values where a table belongs go into ps; ok is false when the raw values
// cannot be trusted to validate.
func decode(src string, ps *problems) (raw rawFile, ok bool) {
	md, err := toml.Decode(src, &raw)
	var pe toml.ParseError
	if errors.As(err, &pe) {
		ps.errs = append(ps.errs, syntaxError(ps, pe))
		return raw, false
	}
	shapeOK := checkKeys(md, ps)
	if err != nil && shapeOK {
		// checkKeys should have explained every way the decoder can fail.
		ps.addf(path{elem: -1}, "%v", err)
	}
	return raw, err == nil && shapeOK
}

func syntaxError(ps *problems, pe toml.ParseError) *Error {
	at := ps.loc.at(pe.Position.Start)
	if at.line != pe.Position.Line {
		at = pos{line: pe.Position.Line, col: pe.Position.Col}
	}
	return &Error{File: ps.file, Line: at.line, Col: at.col, Key: pe.LastKey, Msg: pe.Message}
}

// checkKeys reports every key the raw shape does not have and every table
// key given a plain value; it returns false if there was one of the latter.
// Keys inside a reported one are not reported again. Its work is linear in
// the total length of the keys: each key is walked once from the top.
func checkKeys(md toml.MetaData, ps *problems) bool {
	ok, reported := true, &keySet{}
	report := func(key toml.Key, format string, args ...any) {
		ps.addf(keyPath(key...), format, args...)
		reported.add(key)
	}
	for _, key := range md.Keys() {
		if reported.holdsPrefixOf(key) {
			continue
		}
		s := shapeOf(key)
		switch {
		case !s.known:
			if isTable(s.parent) || len(key) == 1 {
				report(key, "unknown key")
			}
		case isTable(s.t) && md.Type(key...) != "Hash":
			report(key, "want a table, got %s", tomlTypeName(md.Type(key...)))
			ok = false
		}
	}
	for _, key := range md.Undecoded() {
		if !reported.holdsPrefixOf(key) && !shapeOf(key).insideValue {
			report(key, "unknown key")
		}
	}
	return ok
}

// keySet is a set of keys kept as a tree of their parts, so that asking
// whether it holds a key or any key above it takes one step per part.
type keySet struct {
	here  bool
	below map[string]*keySet
}

func (s *keySet) add(key toml.Key) {
	for _, k := range key {
		if s.below == nil {
			s.below = map[string]*keySet{}
		}
		next, ok := s.below[k]
		if !ok {
			next = &keySet{}
			s.below[k] = next
		}
		s = next
	}
	s.here = true
}

// holdsPrefixOf reports whether the set holds key or a table holding it.
func (s *keySet) holdsPrefixOf(key toml.Key) bool {
	for _, k := range key {
		if s = s.below[k]; s == nil {
			return false
		}
		if s.here {
			return true
		}
	}
	return false
}

// shape is what the raw shape says about a key.
type shape struct {
	t           reflect.Type // the raw type at the key; nil if unknown
	known       bool
	parent      reflect.Type // the raw type of the table holding it; nil if unknown
	insideValue bool         // the key lies inside a value kept whole (an array of tables such as runner.kubernetes.tolerations): its validator checks the keys
}

// shapeOf walks key down the raw shape once.
func shapeOf(key toml.Key) shape {
	var s shape
	t := reflect.TypeFor[rawFile]()
	for i, k := range key {
		if i == len(key)-1 {
			s.parent = t
		}
		switch {
		case t == reflect.TypeFor[value]():
			s.insideValue = true // a leaf has no keys inside
			return s
		case t.Kind() == reflect.Struct:
			f, ok := fieldByTag(t, k)
			if !ok {
				return s
			}
			t = f.Type
		case t.Kind() == reflect.Map:
			t = t.Elem()
		default:
			return s
		}
	}
	s.t, s.known = t, true
	return s
}

// fieldByTag matches a key exactly: the decoder would also take "Cache" for
// "cache", which a strict reading must not.
func fieldByTag(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); key != "" && f.Tag.Get("toml") == key {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func isTable(t reflect.Type) bool {
	return t != nil && (t.Kind() == reflect.Struct && t != reflect.TypeFor[value]() || t.Kind() == reflect.Map)
}

func tomlTypeName(t string) string {
	switch t {
	case "Hash":
		return "table"
	case "ArrayHash":
		return "array of tables"
	case "Bool":
		return "boolean"
	}
	return strings.ToLower(t)
}

// typeName names the TOML type of a decoded value for messages.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case time.Time:
		return "datetime"
	case []any:
		return "array"
	case []map[string]any:
		return "array of tables"
	case map[string]any:
		return "table"
	}
	return "date or time"
}
