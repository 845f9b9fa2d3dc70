package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Schema is a compiled JSON schema, for the subset tool parameters use: type
// (one or a list), properties, required, enum, items, additionalProperties
// (bool or schema), minimum/maximum (and exclusive forms), minLength/maxLength
// and minItems/maxItems. Other keywords (description, default, format, anyOf,
// $ref, …) are accepted and ignored, so a schema from an MCP server never
// makes a tool unusable; it is then checked less strictly.
type Schema struct {
	never      bool // the schema `false`
	types      []string
	properties map[string]*Schema
	required   []string
	enum       []any
	items      *Schema
	additional *Schema // nil: anything; the schema false: none
	min, max   *float64
	exMin      *float64
	exMax      *float64
	minLen     *int
	maxLen     *int
	minItems   *int
	maxItems   *int
}

// CompileSchema parses a JSON schema.
func CompileSchema(raw json.RawMessage) (*Schema, error) {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	return compile(v, "$")
}

func compile(v any, path string) (*Schema, error) {
	switch v := v.(type) {
	case bool:
		return &Schema{never: !v}, nil
	case map[string]any:
		s := &Schema{}
		var err error
		if t, ok := v["type"]; ok {
			switch t := t.(type) {
			case string:
				s.types = []string{t}
			case []any:
				for _, x := range t {
					name, ok := x.(string)
					if !ok {
						return nil, fmt.Errorf("schema %s: type list holds a non-string", path)
					}
					s.types = append(s.types, name)
				}
			default:
				return nil, fmt.Errorf("schema %s: type must be a string or a list", path)
			}
			for _, name := range s.types {
				switch name {
				case "object", "array", "string", "number", "integer", "boolean", "null":
				default:
					return nil, fmt.Errorf("schema %s: unknown type %q", path, name)
				}
			}
		}
		if p, ok := v["properties"]; ok {
			pm, ok := p.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("schema %s: properties must be an object", path)
			}
			s.properties = map[string]*Schema{}
			for k, sub := range pm {
				if s.properties[k], err = compile(sub, path+"."+k); err != nil {
					return nil, err
				}
			}
		}
		if r, ok := v["required"]; ok {
			rl, ok := r.([]any)
			if !ok {
				return nil, fmt.Errorf("schema %s: required must be a list", path)
			}
			for _, x := range rl {
				name, ok := x.(string)
				if !ok {
					return nil, fmt.Errorf("schema %s: required holds a non-string", path)
				}
				s.required = append(s.required, name)
			}
		}
		if e, ok := v["enum"]; ok {
			el, ok := e.([]any)
			if !ok {
				return nil, fmt.Errorf("schema %s: enum must be a list", path)
			}
			s.enum = el
		}
		if it, ok := v["items"]; ok {
			if s.items, err = compile(it, path+"[]"); err != nil {
				return nil, err
			}
		}
		if ap, ok := v["additionalProperties"]; ok {
			if s.additional, err = compile(ap, path+".*"); err != nil {
				return nil, err
			}
		}
		for key, dst := range map[string]**float64{"minimum": &s.min, "maximum": &s.max,
			"exclusiveMinimum": &s.exMin, "exclusiveMaximum": &s.exMax} {
			if x, ok := v[key]; ok {
				f, ok := number(x)
				if !ok {
					if _, isBool := x.(bool); isBool { // draft-4 boolean form: ignored
						continue
					}
					return nil, fmt.Errorf("schema %s: %s must be a number", path, key)
				}
				*dst = &f
			}
		}
		for key, dst := range map[string]**int{"minLength": &s.minLen, "maxLength": &s.maxLen,
			"minItems": &s.minItems, "maxItems": &s.maxItems} {
			if x, ok := v[key]; ok {
				f, ok := number(x)
				if !ok || f < 0 || f != math.Trunc(f) {
					return nil, fmt.Errorf("schema %s: %s must be a non-negative integer", path, key)
				}
				n := int(f)
				*dst = &n
			}
		}
		return s, nil
	default:
		return nil, fmt.Errorf("schema %s: must be an object or a boolean, got %s", path, jsonType(v))
	}
}

// Validate checks a decoded JSON value (numbers as json.Number or float64)
// and returns an error naming the first offending path.
func (s *Schema) Validate(v any) error { return s.validate(v, "$") }

func (s *Schema) validate(v any, path string) error {
	if s == nil {
		return nil
	}
	if s.never {
		return fmt.Errorf("%s: not allowed", path)
	}
	if len(s.types) > 0 {
		ok := false
		for _, t := range s.types {
			if hasType(v, t) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%s: expected %s, got %s", path, strings.Join(s.types, " or "), jsonType(v))
		}
	}
	if s.enum != nil {
		ok := false
		for _, e := range s.enum {
			if equalJSON(v, e) {
				ok = true
				break
			}
		}
		if !ok {
			allowed, _ := json.Marshal(s.enum)
			return fmt.Errorf("%s: %s is not one of %s", path, short(v), allowed)
		}
	}
	switch v := v.(type) {
	case map[string]any:
		for _, r := range s.required {
			if _, ok := v[r]; !ok {
				return fmt.Errorf("%s: missing required property %q", path, r)
			}
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if sub, ok := s.properties[k]; ok {
				if err := sub.validate(v[k], path+"."+k); err != nil {
					return err
				}
			} else if s.additional != nil {
				if s.additional.never {
					return fmt.Errorf("%s: unknown property %q", path, k)
				}
				if err := s.additional.validate(v[k], path+"."+k); err != nil {
					return err
				}
			}
		}
	case []any:
		if s.minItems != nil && len(v) < *s.minItems {
			return fmt.Errorf("%s: %d items, at least %d required", path, len(v), *s.minItems)
		}
		if s.maxItems != nil && len(v) > *s.maxItems {
			return fmt.Errorf("%s: %d items, at most %d allowed", path, len(v), *s.maxItems)
		}
		for i, x := range v {
			if err := s.items.validate(x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case string:
		n := utf8.RuneCountInString(v)
		if s.minLen != nil && n < *s.minLen {
			return fmt.Errorf("%s: string of %d characters, at least %d required", path, n, *s.minLen)
		}
		if s.maxLen != nil && n > *s.maxLen {
			return fmt.Errorf("%s: string of %d characters, at most %d allowed", path, n, *s.maxLen)
		}
	case json.Number, float64:
		f, _ := number(v)
		if s.min != nil && f < *s.min {
			return fmt.Errorf("%s: %v is less than the minimum %v", path, f, *s.min)
		}
		if s.max != nil && f > *s.max {
			return fmt.Errorf("%s: %v is greater than the maximum %v", path, f, *s.max)
		}
		if s.exMin != nil && f <= *s.exMin {
			return fmt.Errorf("%s: %v must be greater than %v", path, f, *s.exMin)
		}
		if s.exMax != nil && f >= *s.exMax {
			return fmt.Errorf("%s: %v must be less than %v", path, f, *s.exMax)
		}
	}
	return nil
}

func number(v any) (float64, bool) {
	switch v := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		return f, err == nil
	case float64:
		return v, true
	case int:
		return float64(v), true
	}
	return 0, false
}

func hasType(v any, t string) bool {
	switch t {
	case "integer":
		f, ok := number(v)
		return ok && !math.IsInf(f, 0) && f == math.Trunc(f)
	case "number":
		_, ok := number(v)
		return ok
	default:
		return jsonType(v) == t
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number, float64, int:
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

func equalJSON(a, b any) bool {
	if fa, ok := number(a); ok {
		fb, ok := number(b)
		return ok && fa == fb
	}
	switch a := a.(type) {
	case []any:
		bl, ok := b.([]any)
		if !ok || len(a) != len(bl) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], bl[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		bm, ok := b.(map[string]any)
		if !ok || len(a) != len(bm) {
			return false
		}
		for k, x := range a {
			y, ok := bm[k]
			if !ok || !equalJSON(x, y) {
				return false
			}
		}
		return true
	}
	return a == b
}

func short(v any) string {
	b, _ := json.Marshal(v)
	return Truncate(string(b), 80)
}
