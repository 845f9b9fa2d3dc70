package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode"

	"github.com/dsv32/dsv32/chat"
)

// readBody reads a request body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *Error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, "request_too_large", "",
				"request body exceeds the limit of %d bytes", limit)
		}
		return nil, errorf(http.StatusBadRequest, "", "", "reading the request body: %v", err)
	}
	return data, nil
}

// decodeJSON unmarshals a request body, turning encoding/json's errors into
// 400s that name the field.
func decodeJSON(data []byte, v any) *Error {
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	return jsonError(err, "")
}

// jsonError is a 400 for a JSON decoding error; prefix names the enclosing
// field (as "messages[2]") for errors inside it.
func jsonError(err error, prefix string) *Error {
	join := func(field string) string {
		switch {
		case prefix == "":
			return field
		case field == "":
			return prefix
		}
		return prefix + "." + field
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var field *fieldError
	switch {
	case errors.As(err, &syntax):
		return errorf(http.StatusBadRequest, "invalid_json", prefix,
			"malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, "invalid_json", prefix, "malformed JSON: %v", err)
	case errors.As(err, &typ):
		name := join(jsonPath(typ.Field))
		if name == "" {
			return errorf(http.StatusBadRequest, "invalid_type", "", "the request body must be a JSON object, got %s", typ.Value)
		}
		return errorf(http.StatusBadRequest, "invalid_type", name,
			"invalid type for '%s': expected %s, got %s", name, jsonKind(typ.Type), typ.Value)
	case errors.As(err, &field):
		name := join(field.field)
		return errorf(http.StatusBadRequest, "invalid_value", name, "invalid '%s': %s", name, field.msg)
	}
	return errorf(http.StatusBadRequest, "invalid_value", prefix, "invalid request: %v", err)
}

// jsonPath drops the Go names of embedded structs (which start with a
// capital, or are the chat package's "plain") from a decoding error's path.
func jsonPath(field string) string {
	var keep []string
	for _, part := range strings.Split(field, ".") {
		if part != "" && part != "plain" && !unicode.IsUpper(rune(part[0])) {
			keep = append(keep, part)
		}
	}
	return strings.Join(keep, ".")
}

// jsonKind names a Go type the way a JSON user thinks of it.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return t.String()
}

// DecodeChatRequest parses a chat completions body. Each message and tool is
// decoded on its own so that an error names it ("messages[2].content").
func DecodeChatRequest(data []byte) (*ChatRequest, *Error) {
	var aux struct {
		ChatRequest
		Messages []json.RawMessage `json:"messages"`
		Tools    []json.RawMessage `json:"tools"`
	}
	if err := decodeJSON(data, &aux); err != nil {
		return nil, err
	}
	req := aux.ChatRequest
	req.Messages = make([]chat.Message, len(aux.Messages))
	for i, raw := range aux.Messages {
		if err := decodeObject(raw, &req.Messages[i], fmt.Sprintf("messages[%d]", i)); err != nil {
			return nil, err
		}
	}
	req.Tools = nil
	for i, raw := range aux.Tools {
		var t chat.Tool
		if err := decodeObject(raw, &t, fmt.Sprintf("tools[%d]", i)); err != nil {
			return nil, err
		}
		req.Tools = append(req.Tools, t)
	}
	return &req, nil
}

// decodeObject decodes one array element that must be a JSON object.
func decodeObject(raw json.RawMessage, v any, name string) *Error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return errorf(http.StatusBadRequest, "invalid_type", name, "invalid type for '%s': expected an object, got %s", name, shortJSON(raw))
	}
	if err := json.Unmarshal(raw, v); err != nil {
		var typ *json.UnmarshalTypeError
		var field *fieldError
		if errors.As(err, &typ) || errors.As(err, &field) {
			return jsonError(err, name)
		}
		return errorf(http.StatusBadRequest, "invalid_value", name, "invalid '%s': %v", name, err)
	}
	return nil
}

func shortJSON(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

// DecodeCompletionRequest parses a completions body.
func DecodeCompletionRequest(data []byte) (*CompletionRequest, *Error) {
	var req CompletionRequest
	if err := decodeJSON(data, &req); err != nil {
		return nil, err
	}
	return &req, nil
}
