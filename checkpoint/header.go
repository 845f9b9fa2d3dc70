package checkpoint

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"unicode/utf8"
)

// MaxHeaderSize caps the JSON header of one file (the safetensors reference
// implementation uses the same 100 MB), so a corrupt length cannot make us
// allocate or scan gigabytes.
const MaxHeaderSize = 100 << 20

// metadataKey is the reserved header key holding the string-to-string metadata.
const metadataKey = "__metadata__"

// headerEntry is one tensor's header record. Pointers tell a missing field
// from a zero one.
type headerEntry struct {
	DType       *DType   `json:"dtype"`
	Shape       *[]int64 `json:"shape"`
	DataOffsets *[]int64 `json:"data_offsets"`
}

// parseHeader parses and validates the header of a whole safetensors file held
// in buf (length prefix, JSON, data). It returns the tensors in header order
// with Begin and End absolute in buf, and the metadata (never nil). Errors do
// not name the file; the caller adds it.
//
// Checks: the length prefix fits the file and MaxHeaderSize; the JSON is one
// valid UTF-8 object without duplicate keys; every entry is an object with a
// known dtype, non-negative dims and two offsets with 0 ≤ begin ≤ end ≤ data
// length; element count × element size equals end − begin (without overflow);
// no two tensors' byte ranges overlap. Gaps between tensors and trailing bytes
// are allowed.
func parseHeader(buf []byte) ([]Info, map[string]string, error) {
	if len(buf) < 8 {
		return nil, nil, fmt.Errorf("file is %d bytes, too short for the 8-byte header length", len(buf))
	}
	n := binary.LittleEndian.Uint64(buf)
	if n > MaxHeaderSize {
		return nil, nil, fmt.Errorf("header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	}
	if n > uint64(len(buf)-8) {
		return nil, nil, fmt.Errorf("header length %d exceeds the %d bytes after the length prefix (truncated file?)", n, len(buf)-8)
	}
	hdr := buf[8 : 8+n]
	dataStart := int64(8 + n)
	dataLen := int64(len(buf)) - dataStart
	if !utf8.Valid(hdr) {
		return nil, nil, errors.New("header is not valid UTF-8")
	}

	raw, err := splitObject(hdr)
	if err != nil {
		return nil, nil, fmt.Errorf("header JSON: %w", err)
	}
	meta := map[string]string{}
	infos := make([]Info, 0, len(raw))
	for _, kv := range raw {
		if kv.key == metadataKey {
			if err := json.Unmarshal(kv.value, &meta); err != nil {
				return nil, nil, fmt.Errorf("header %s: want an object of strings: %w", metadataKey, err)
			}
			if meta == nil { // "__metadata__": null
				meta = map[string]string{}
			}
			continue
		}
		info, err := parseEntry(kv.key, kv.value, dataStart, dataLen)
		if err != nil {
			return nil, nil, err
		}
		infos = append(infos, info)
	}

	// Overlap check on byte ranges sorted by start; empty tensors overlap nothing.
	order := make([]int, len(infos))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool {
		x, y := infos[order[a]], infos[order[b]]
		return x.Begin < y.Begin || x.Begin == y.Begin && x.End < y.End
	})
	prev := -1
	for _, i := range order {
		if infos[i].Begin == infos[i].End {
			continue
		}
		if prev >= 0 && infos[i].Begin < infos[prev].End {
			return nil, nil, fmt.Errorf("tensor %q: bytes [%d, %d) overlap tensor %q at [%d, %d)",
				infos[i].Name, infos[i].Begin-dataStart, infos[i].End-dataStart,
				infos[prev].Name, infos[prev].Begin-dataStart, infos[prev].End-dataStart)
		}
		prev = i
	}
	return infos, meta, nil
}

// parseEntry validates one tensor record; offsets come back absolute.
func parseEntry(name string, value json.RawMessage, dataStart, dataLen int64) (Info, error) {
	bad := func(format string, args ...any) (Info, error) {
		return Info{}, fmt.Errorf("tensor %q: "+format, append([]any{name}, args...)...)
	}
	if len(value) == 0 || value[0] != '{' {
		return bad("header entry is %s, want an object", jsonKind(value))
	}
	var e headerEntry
	if err := json.Unmarshal(value, &e); err != nil {
		return bad("header entry: %v", err)
	}
	switch {
	case e.DType == nil:
		return bad("header entry has no dtype")
	case e.Shape == nil:
		return bad("header entry has no shape")
	case e.DataOffsets == nil:
		return bad("header entry has no data_offsets")
	}
	dt := *e.DType
	size := dt.Size()
	if size == 0 {
		return bad("unknown dtype %q", string(dt))
	}
	shape := make([]int, len(*e.Shape))
	numel := int64(1)
	for i, d := range *e.Shape {
		if d < 0 {
			return bad("negative dimension %d in shape %v", d, *e.Shape)
		}
		if d > math.MaxInt || d != 0 && numel > math.MaxInt64/d {
			return bad("shape %v overflows the element count", *e.Shape)
		}
		numel *= d
		shape[i] = int(d)
	}
	if numel > math.MaxInt64/int64(size) {
		return bad("shape %v overflows the byte count", *e.Shape)
	}
	off := *e.DataOffsets
	if len(off) != 2 {
		return bad("data_offsets %v: want [begin, end]", off)
	}
	begin, end := off[0], off[1]
	if begin < 0 || end < begin || end > dataLen {
		return bad("data_offsets [%d, %d] out of range: the data section is %d bytes", begin, end, dataLen)
	}
	if want := numel * int64(size); end-begin != want {
		return bad("shape %v of %s needs %d bytes, data_offsets [%d, %d] hold %d", shape, dt, want, begin, end, end-begin)
	}
	return Info{Name: name, DType: dt, Shape: shape, Begin: dataStart + begin, End: dataStart + end}, nil
}

type keyValue struct {
	key   string
	value json.RawMessage
}

// splitObject splits a JSON object into its members in order, rejecting
// duplicate keys (encoding/json would silently keep the last) and anything
// but whitespace after the closing brace.
func splitObject(data []byte) ([]keyValue, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("empty")
		}
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("top level is %s, want an object", jsonKind(bytes.TrimLeft(data, " \t\r\n")))
	}
	var out []keyValue
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("object key is %v, want a string", tok)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("value of %q: %w", key, err)
		}
		out = append(out, keyValue{key, v})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the header object at byte %d", dec.InputOffset())
	}
	return out, nil
}

// jsonKind names the kind of a JSON value for error messages.
func jsonKind(v json.RawMessage) string {
	if len(v) == 0 {
		return "empty"
	}
	switch v[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}
