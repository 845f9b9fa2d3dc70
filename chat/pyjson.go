package chat

// The official encoder serialises tool schemas, non-string tool arguments and
// response formats with Python's json.dumps(value, ensure_ascii=False), after
// json.loads has parsed them. Go's encoding/json spells several things
// differently (separators, HTML and U+2028 escapes, floats, big integers, key
// order), so this file carries a small JSON reader that builds values the way
// json.loads does and a writer that spells them the way json.dumps does.

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

type pyKind int

const (
	pyNull pyKind = iota
	pyBool
	pyInt   // Python int: kept as its decimal digits, of any size
	pyFloat // Python float: a float64
	pyStr
	pyList
	pyDict
)

// pyValue is a JSON value as json.loads builds it. A dict keeps its keys in
// insertion order; a repeated key keeps its first position and its last value.
type pyValue struct {
	kind pyKind
	b    bool
	num  string  // pyInt: decimal digits, normalised ("-0" is "0")
	f    float64 // pyFloat
	s    string  // pyStr
	list []pyValue
	keys []string  // pyDict
	vals []pyValue // pyDict, parallel to keys
}

// maxJSONDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxJSONDepth = 10000

// parsePyJSON parses text the way Python's json.loads does: standard JSON plus
// NaN, Infinity and -Infinity; control characters inside strings are errors
// (strict mode); surrounding whitespace is allowed, anything else after the
// value is an error. A lone UTF-16 surrogate escape becomes U+FFFD (Python
// would keep it, but it could not be written out as UTF-8 anyway).
func parsePyJSON(text string) (pyValue, error) {
	r := jsonReader{s: text}
	r.space()
	v, err := r.value(0)
	if err != nil {
		return pyValue{}, err
	}
	r.space()
	if r.i != len(r.s) {
		return pyValue{}, fmt.Errorf("invalid JSON: extra data at byte %d", r.i)
	}
	return v, nil
}

type jsonReader struct {
	s string
	i int
}

func (r *jsonReader) errorf(format string, args ...any) error {
	return fmt.Errorf("invalid JSON at byte %d: %s", r.i, fmt.Sprintf(format, args...))
}

func (r *jsonReader) space() {
	for r.i < len(r.s) {
		switch r.s[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *jsonReader) value(depth int) (pyValue, error) {
	if depth > maxJSONDepth {
		return pyValue{}, r.errorf("nested more than %d levels", maxJSONDepth)
	}
	if r.i >= len(r.s) {
		return pyValue{}, r.errorf("expected a value, found end of input")
	}
	switch c := r.s[r.i]; {
	case c == '{':
		return r.object(depth)
	case c == '[':
		return r.array(depth)
	case c == '"':
		s, err := r.str()
		return pyValue{kind: pyStr, s: s}, err
	case c == '-' || (c >= '0' && c <= '9'):
		if strings.HasPrefix(r.s[r.i:], "-Infinity") {
			r.i += len("-Infinity")
			return pyValue{kind: pyFloat, f: math.Inf(-1)}, nil
		}
		return r.number()
	}
	for _, lit := range []struct {
		word string
		v    pyValue
	}{
		{"null", pyValue{kind: pyNull}},
		{"true", pyValue{kind: pyBool, b: true}},
		{"false", pyValue{kind: pyBool}},
		{"NaN", pyValue{kind: pyFloat, f: math.NaN()}},
		{"Infinity", pyValue{kind: pyFloat, f: math.Inf(1)}},
	} {
		if strings.HasPrefix(r.s[r.i:], lit.word) {
			r.i += len(lit.word)
			return lit.v, nil
		}
	}
	return pyValue{}, r.errorf("unexpected character %q", r.s[r.i])
}

func (r *jsonReader) object(depth int) (pyValue, error) {
	r.i++ // {
	v := pyValue{kind: pyDict}
	index := map[string]int{}
	r.space()
	if r.i < len(r.s) && r.s[r.i] == '}' {
		r.i++
		return v, nil
	}
	for {
		r.space()
		if r.i >= len(r.s) || r.s[r.i] != '"' {
			return pyValue{}, r.errorf("expected a property name in double quotes")
		}
		key, err := r.str()
		if err != nil {
			return pyValue{}, err
		}
		r.space()
		if r.i >= len(r.s) || r.s[r.i] != ':' {
			return pyValue{}, r.errorf("expected ':' after a property name")
		}
		r.i++
		r.space()
		val, err := r.value(depth + 1)
		if err != nil {
			return pyValue{}, err
		}
		if at, ok := index[key]; ok {
			v.vals[at] = val
		} else {
			index[key] = len(v.keys)
			v.keys = append(v.keys, key)
			v.vals = append(v.vals, val)
		}
		r.space()
		if r.i >= len(r.s) {
			return pyValue{}, r.errorf("unterminated object")
		}
		switch r.s[r.i] {
		case ',':
			r.i++
		case '}':
			r.i++
			return v, nil
		default:
			return pyValue{}, r.errorf("expected ',' or '}' in an object")
		}
	}
}

func (r *jsonReader) array(depth int) (pyValue, error) {
	r.i++ // [
	v := pyValue{kind: pyList}
	r.space()
	if r.i < len(r.s) && r.s[r.i] == ']' {
		r.i++
		return v, nil
	}
	for {
		r.space()
		elem, err := r.value(depth + 1)
		if err != nil {
			return pyValue{}, err
		}
		v.list = append(v.list, elem)
		r.space()
		if r.i >= len(r.s) {
			return pyValue{}, r.errorf("unterminated array")
		}
		switch r.s[r.i] {
		case ',':
			r.i++
		case ']':
			r.i++
			return v, nil
		default:
			return pyValue{}, r.errorf("expected ',' or ']' in an array")
		}
	}
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?, Python's number
// grammar: an int without a fraction or exponent, a float otherwise.
func (r *jsonReader) number() (pyValue, error) {
	start := r.i
	if r.s[r.i] == '-' {
		r.i++
	}
	digits := func() int {
		n := 0
		for r.i < len(r.s) && r.s[r.i] >= '0' && r.s[r.i] <= '9' {
			r.i++
			n++
		}
		return n
	}
	if r.i < len(r.s) && r.s[r.i] == '0' {
		r.i++
	} else if digits() == 0 {
		return pyValue{}, r.errorf("expected a digit")
	}
	isFloat := false
	if r.i+1 < len(r.s) && r.s[r.i] == '.' && r.s[r.i+1] >= '0' && r.s[r.i+1] <= '9' {
		r.i++
		digits()
		isFloat = true
	}
	if r.i < len(r.s) && (r.s[r.i] == 'e' || r.s[r.i] == 'E') {
		save := r.i
		r.i++
		if r.i < len(r.s) && (r.s[r.i] == '+' || r.s[r.i] == '-') {
			r.i++
		}
		if digits() == 0 {
			r.i = save // not an exponent; the caller reports the extra data
		} else {
			isFloat = true
		}
	}
	lit := r.s[start:r.i]
	if !isFloat {
		if lit == "-0" {
			lit = "0"
		}
		return pyValue{kind: pyInt, num: lit}, nil
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !isRangeError(err) { // out of range gives ±Inf or 0, as in Python
		return pyValue{}, r.errorf("bad number %q", lit)
	}
	return pyValue{kind: pyFloat, f: f}, nil
}

func isRangeError(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

func (r *jsonReader) str() (string, error) {
	r.i++ // "
	var b strings.Builder
	for {
		if r.i >= len(r.s) {
			return "", r.errorf("unterminated string")
		}
		c := r.s[r.i]
		switch {
		case c == '"':
			r.i++
			return b.String(), nil
		case c < 0x20:
			return "", r.errorf("control character %#02x in a string", c)
		case c != '\\':
			b.WriteByte(c)
			r.i++
			continue
		}
		if r.i+1 >= len(r.s) {
			return "", r.errorf("unterminated escape")
		}
		e := r.s[r.i+1]
		r.i += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			u, ok := r.hex4()
			if !ok {
				return "", r.errorf("bad \\u escape")
			}
			if u >= 0xD800 && u < 0xDC00 && strings.HasPrefix(r.s[r.i:], `\u`) {
				save := r.i
				r.i += 2
				if lo, ok := r.hex4(); ok && lo >= 0xDC00 && lo < 0xE000 {
					u = 0x10000 + (u-0xD800)<<10 + (lo - 0xDC00)
				} else {
					r.i = save
				}
			}
			if u >= 0xD800 && u < 0xE000 {
				u = utf8.RuneError
			}
			b.WriteRune(u)
		default:
			return "", r.errorf("invalid escape \\%c", e)
		}
	}
}

func (r *jsonReader) hex4() (rune, bool) {
	if r.i+4 > len(r.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(r.s[r.i:r.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	r.i += 4
	return rune(n), true
}

// writePy appends v spelled as json.dumps(v, ensure_ascii=False) spells it.
func writePy(b *strings.Builder, v pyValue) {
	switch v.kind {
	case pyNull:
		b.WriteString("null")
	case pyBool:
		if v.b {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case pyInt:
		b.WriteString(v.num)
	case pyFloat:
		b.WriteString(pyFloatRepr(v.f))
	case pyStr:
		writePyString(b, v.s)
	case pyList:
		b.WriteByte('[')
		for i, e := range v.list {
			if i > 0 {
				b.WriteString(", ")
			}
			writePy(b, e)
		}
		b.WriteByte(']')
	case pyDict:
		b.WriteByte('{')
		for i, k := range v.keys {
			if i > 0 {
				b.WriteString(", ")
			}
			writePyString(b, k)
			b.WriteString(": ")
			writePy(b, v.vals[i])
		}
		b.WriteByte('}')
	}
}

// truthy reports Python's bool(v).
func (v pyValue) truthy() bool {
	switch v.kind {
	case pyBool:
		return v.b
	case pyInt:
		return v.num != "0"
	case pyFloat:
		return v.f != 0
	case pyStr:
		return v.s != ""
	case pyList:
		return len(v.list) > 0
	case pyDict:
		return len(v.keys) > 0
	}
	return false
}

// pyJSON re-spells the JSON text raw the way json.dumps(json.loads(raw),
// ensure_ascii=False) does.
func pyJSON(raw string) (string, error) {
	v, err := parsePyJSON(raw)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	writePy(&b, v)
	return b.String(), nil
}

// pyQuote returns s as a JSON string literal spelled the way json.dumps(s,
// ensure_ascii=False) does: only '"', '\\' and control characters are escaped.
// Bytes that are not valid UTF-8 become U+FFFD.
func pyQuote(s string) string {
	var b strings.Builder
	writePyString(&b, s)
	return b.String()
}

func writePyString(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				b.WriteString(`\"`)
			case '\\':
				b.WriteString(`\\`)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			case '\b':
				b.WriteString(`\b`)
			case '\f':
				b.WriteString(`\f`)
			default:
				if c < 0x20 {
					fmt.Fprintf(b, `\u%04x`, c)
				} else {
					b.WriteByte(c)
				}
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
}

// pyFloatRepr spells f as Python's repr(float): the shortest digits that
// round-trip, fixed notation for decimal exponents -4..15 (always with a
// fraction, "1.0"), scientific otherwise ("1e-07", "1.5e+300").
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	sci := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX, at least two exponent digits as in Python
	exp, _ := strconv.Atoi(sci[strings.IndexByte(sci, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return sci
	}
	fixed := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(fixed, ".") {
		fixed += ".0"
	}
	return fixed
}
