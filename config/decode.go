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
	Dir    value `toml:"dir"`
	MaxAge value `toml:"max_age"`
	Jobs   value `toml:"jobs"`
}

type rawRegistry struct {
	Insecure value `toml:"insecure"`
	Mirrors  value `toml:"mirrors"`
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
// Keys inside a reported one are not reported again.
func checkKeys(md toml.MetaData, ps *problems) bool {
	ok, reported := true, map[string]bool{}
	report := func(key toml.Key, format string, args ...any) {
		ps.addf(keyPath(key...), format, args...)
		reported[key.String()] = true
	}
	for _, key := range md.Keys() {
		if reportedAbove(reported, key) {
			continue
		}
		t, known := shapeOf(key)
		switch {
		case !known:
			if parent, _ := shapeOf(key[:len(key)-1]); isTable(parent) || len(key) == 1 {
				report(key, "unknown key")
			}
		case isTable(t) && md.Type(key...) != "Hash":
			report(key, "want a table, got %s", tomlTypeName(md.Type(key...)))
			ok = false
		}
	}
	for _, key := range md.Undecoded() {
		if !reportedAbove(reported, key) && !insideValue(key) {
			report(key, "unknown key")
		}
	}
	return ok
}

// insideValue reports whether key lies inside a value kept whole (an array
// of tables such as runner.kubernetes.tolerations): its validator checks
// the keys.
func insideValue(key toml.Key) bool {
	for n := 1; n < len(key); n++ {
		if t, ok := shapeOf(key[:n]); ok && t == reflect.TypeFor[value]() {
			return true
		}
	}
	return false
}

// reportedAbove reports whether a table holding key (or key itself) was
// reported.
func reportedAbove(reported map[string]bool, key toml.Key) bool {
	for n := len(key); n > 0; n-- {
		if reported[key[:n].String()] {
			return true
		}
	}
	return false
}

// shapeOf returns the raw type found at key, and false if there is none.
func shapeOf(key toml.Key) (reflect.Type, bool) {
	t := reflect.TypeFor[rawFile]()
	for _, k := range key {
		switch {
		case t == reflect.TypeFor[value]():
			return nil, false // a leaf has no keys inside
		case t.Kind() == reflect.Struct:
			f, ok := fieldByTag(t, k)
			if !ok {
				return nil, false
			}
			t = f.Type
		case t.Kind() == reflect.Map:
			t = t.Elem()
		default:
			return nil, false
		}
	}
	return t, true
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
