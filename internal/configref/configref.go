// Package configref describes the keys of a TOML config from the Go types that decode it. The
// struct tags the decoder reads (`toml`) sit beside the ones this package reads (`doc`,
// `default`), so the reference cannot list a key the decoder refuses or miss one it accepts.
package configref

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Key is one key of a config.
type Key struct {
	Table   string // dotted table name, "branches"; "" at the top level
	Name    string // "batch_sizes"
	Type    string // "list of tokens"
	Default string // as TOML would write it; "" when the key has none
	Doc     string
}

// Path is the key as error messages and the reference name it: "branches.batch_sizes".
func (k Key) Path() string {
	if k.Table == "" {
		return k.Name
	}
	return k.Table + "." + k.Name
}

// Typer is a config type that decodes itself from TOML (a token count, a rule that takes a
// name or a number); ConfigType says in words what it accepts.
type Typer interface{ ConfigType() string }

var typerType = reflect.TypeFor[Typer]()

// Keys lists the keys of cfg, a struct (or a pointer to one) holding the defaults, in field
// order. A field whose type is a struct is a table; an embedded struct adds its fields to the
// table it is embedded in.
func Keys(cfg any) []Key {
	v := reflect.ValueOf(cfg)
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	var keys []Key
	walk(&keys, "", v)
	return keys
}

func walk(keys *[]Key, table string, v reflect.Value) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			walk(keys, table, fv)
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
			if fv.IsNil() {
				fv = reflect.Zero(ft)
			} else {
				fv = fv.Elem()
			}
		}
		if ft.Kind() == reflect.Struct && !isTyper(ft) {
			walk(keys, join(table, name), fv)
			continue
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !isTyper(ft.Elem()) {
			// An array of tables, [[name]]: its keys are those of one element.
			walk(keys, join(table, name), reflect.Zero(ft.Elem()))
			continue
		}
		def, ok := f.Tag.Lookup("default")
		if !ok {
			def = format(fv)
		}
		*keys = append(*keys, Key{Table: table, Name: name, Type: typeName(ft), Default: def, Doc: f.Tag.Get("doc")})
	}
}

func join(table, name string) string {
	if table == "" {
		return name
	}
	return table + "." + name
}

func isTyper(t reflect.Type) bool {
	return t.Implements(typerType) || reflect.PointerTo(t).Implements(typerType)
}

func typeName(t reflect.Type) string {
	if isTyper(t) {
		return reflect.Zero(t).Interface().(Typer).ConfigType()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice:
		return "list of " + plural(typeName(t.Elem()))
	case reflect.Array:
		return fmt.Sprintf("list of %d %s", t.Len(), plural(typeName(t.Elem())))
	case reflect.Map:
		return "table of " + plural(typeName(t.Elem()))
	}
	return t.Kind().String()
}

func plural(s string) string {
	if strings.HasSuffix(s, "s") {
		return s
	}
	return s + "s"
}

// format writes a default as TOML would; zero values are no default ("").
func format(v reflect.Value) string {
	if v.IsZero() {
		return ""
	}
	if m, ok := v.Interface().(toml.Marshaler); ok {
		if b, err := m.MarshalTOML(); err == nil {
			return string(b)
		}
	}
	if m, ok := v.Interface().(encoding.TextMarshaler); ok {
		if b, err := m.MarshalText(); err == nil {
			return strconv.Quote(string(b))
		}
	}
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Slice, reflect.Array:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = format(v.Index(i))
			if parts[i] == "" {
				parts[i] = "0"
			}
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

// Tables lists the tables of keys in order of first appearance.
func Tables(keys []Key) []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range keys {
		if !seen[k.Table] {
			seen[k.Table] = true
			out = append(out, k.Table)
		}
	}
	return out
}

// InTable lists the names of the keys of one table.
func InTable(keys []Key, table string) []string {
	var out []string
	for _, k := range keys {
		if k.Table == table {
			out = append(out, k.Name)
		}
	}
	return out
}

// Closest returns the candidate nearest to s in edit distance when it is near enough to be a
// likely typo, else "".
func Closest(s string, candidates []string) string {
	best, bestD := "", len(s)/3+2
	for _, c := range candidates {
		if d := distance(strings.ToLower(s), strings.ToLower(c)); d < bestD || (d == bestD && best != "" && c < best) {
			best, bestD = c, d
		}
	}
	return best
}

// distance is the optimal string alignment distance: edits, with a swap of two neighbours
// counted as one, the commonest typo.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// Unknown explains the keys md left undecoded: an unknown table once, with the closest table;
// an unknown key with the closest key of its table and the table's keys. kind names the config
// ("sweep config"); hint may add a sentence for a table that belongs elsewhere (a train table in
// a sweep config, say).
func Unknown(md toml.MetaData, keys []Key, kind string, hint func(table string) string) string {
	tables := Tables(keys)
	known := map[string]bool{}
	for _, t := range tables {
		known[t] = true
	}
	var undecoded []string
	for _, k := range md.Undecoded() {
		undecoded = append(undecoded, k.String())
	}
	sort.Strings(undecoded)
	var msgs []string
	reported := map[string]bool{}
	for _, u := range undecoded {
		table, name := "", u
		if i := strings.LastIndex(u, "."); i >= 0 {
			table, name = u[:i], u[i+1:]
		}
		if known[table] && md.Type(u) != "Hash" && md.Type(u) != "ArrayHash" {
			m := "unknown key " + u
			if c := Closest(name, InTable(keys, table)); c != "" {
				m += fmt.Sprintf(": did you mean %s?", join(table, c))
			}
			if table == "" {
				m += fmt.Sprintf(" (top-level keys: %s)", strings.Join(InTable(keys, ""), ", "))
			} else {
				m += fmt.Sprintf(" (keys of [%s]: %s)", table, strings.Join(InTable(keys, table), ", "))
			}
			msgs = append(msgs, m)
			reported[u] = true
			continue
		}
		// The outermost unknown table is the mistake; the keys inside it follow from it.
		top := outermostUnknown(u, known)
		if reported[top] {
			continue
		}
		reported[top] = true
		if !strings.Contains(top, ".") && md.Type(top) != "Hash" && md.Type(top) != "ArrayHash" {
			msgs = append(msgs, fmt.Sprintf("unknown key %s at the top level: every key belongs to a table (tables of a %s: %s)", top, kind, tableList(tables)))
			continue
		}
		m := fmt.Sprintf("unknown table [%s]", top)
		if h := hint(top); h != "" {
			m += ": " + h
		} else if c := Closest(top, tables); c != "" {
			m += fmt.Sprintf(": did you mean [%s]?", c)
		}
		msgs = append(msgs, m+fmt.Sprintf(" (tables of a %s: %s)", kind, tableList(tables)))
	}
	return strings.Join(msgs, "; ")
}

func outermostUnknown(u string, known map[string]bool) string {
	parts := strings.Split(u, ".")
	for i := 1; i <= len(parts); i++ {
		if p := strings.Join(parts[:i], "."); !known[p] {
			return p
		}
	}
	return u
}

func tableList(tables []string) string {
	var out []string
	for _, t := range tables {
		if t != "" {
			out = append(out, t)
		}
	}
	return strings.Join(out, ", ")
}

// MarkdownTable renders the keys of one table as a Markdown table: key, type, default, meaning.
func MarkdownTable(keys []Key, table string) string {
	var b strings.Builder
	b.WriteString("| key | type | default | meaning |\n| --- | --- | --- | --- |\n")
	cell := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
	for _, k := range keys {
		if k.Table != table {
			continue
		}
		def := "none"
		switch {
		case k.Default == "required":
			def = "**required**"
		case isLiteral(k.Default):
			def = "`" + k.Default + "`"
		case k.Default != "":
			def = k.Default // in words: derived from other keys or from the parent
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", k.Name, cell(k.Type), cell(def), cell(k.Doc))
	}
	return b.String()
}

// isLiteral reports whether a default is a TOML value rather than words.
func isLiteral(def string) bool {
	var v map[string]any
	_, err := toml.Decode("v = "+def, &v)
	return def != "" && err == nil
}
