package chat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Role says who speaks a message.
type Role string

// The roles the official encoder knows. Developer is DeepSeek's search-agent
// role: a user turn that carries tools (the public API rejects it).
const (
	RoleSystem    Role = "system"
	RoleUser      Role = "user"
	RoleAssistant Role = "assistant"
	RoleTool      Role = "tool"
	RoleDeveloper Role = "developer"
)

// Message is one OpenAI-style chat message. Its JSON form is OpenAI's, plus
// DeepSeek's reasoning_content, plus tools and response_format on system and
// developer messages, where the official encoder reads them.
//
// Content unmarshals from a string, from null (the empty string) or from an
// array of {"type": "text", "text": ...} parts, which are joined with "\n" as
// vLLM does; other part types are an error.
type Message struct {
	Role             Role       `json:"role"`
	Content          string     `json:"content"`
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID       string     `json:"tool_call_id,omitempty"` // ignored by the encoder: results pair with calls by position
	Name             string     `json:"name,omitempty"`         // ignored by the encoder

	// Tools and ResponseFormat are read on system and developer messages only.
	Tools          []Tool          `json:"tools,omitempty"`
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
}

// ToolCall is an assistant's call of a function tool. Arguments is the JSON
// text of an object, as on the OpenAI wire.
type ToolCall struct {
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type"`
	Function FunctionCall `json:"function"`
}

// FunctionCall names the called function and carries its arguments as JSON text.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Tool is an OpenAI function tool: {"type": "function", "function": {...}}.
type Tool struct {
	Type     string   `json:"type"`
	Function Function `json:"function"`
}

// Function is a tool's definition. Parameters is a JSON Schema.
//
// The tools block lists each function object with its keys in the order they
// arrived, including keys this struct has no field for (such as "strict"),
// because the official encoder prints the object it was given. A Function
// built in Go lists name, description (if not empty) and parameters (if set).
type Function struct {
	Name        string
	Description string
	Parameters  json.RawMessage

	order []string                   // keys in arrival order
	extra map[string]json.RawMessage // keys without a field, and non-string name/description
}

// UnmarshalJSON reads a message whose content is a string, null or an array
// of text parts.
func (m *Message) UnmarshalJSON(data []byte) error {
	type plain Message // no methods: avoids recursion
	var aux struct {
		plain
		Content json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	text, err := contentText(aux.Content)
	if err != nil {
		return fmt.Errorf("message content: %w", err)
	}
	*m = Message(aux.plain)
	m.Content = text
	return nil
}

func contentText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if raw[0] == '"' {
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	}
	var parts []struct {
		Type string  `json:"type"`
		Text *string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", fmt.Errorf("want a string or an array of text parts: %w", err)
	}
	texts := make([]string, len(parts))
	for i, p := range parts {
		if p.Type != "text" || p.Text == nil {
			return "", fmt.Errorf("part %d has type %q; only text parts are supported", i, p.Type)
		}
		texts[i] = *p.Text
	}
	return strings.Join(texts, "\n"), nil
}

// UnmarshalJSON reads a function object and remembers its key order.
func (f *Function) UnmarshalJSON(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("tool function: want a JSON object")
	}
	*f = Function{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key := tok.(string) // inside an object the decoder only yields string keys here
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("tool function key %q: %w", key, err)
		}
		f.set(key, raw)
	}
	_, err = dec.Token() // }
	return err
}

func (f *Function) set(key string, raw json.RawMessage) {
	seen := false
	for _, k := range f.order {
		seen = seen || k == key
	}
	if !seen {
		f.order = append(f.order, key)
	}
	var s string
	isString := json.Unmarshal(raw, &s) == nil && bytes.HasPrefix(bytes.TrimSpace(raw), []byte(`"`))
	switch {
	case key == "name" && isString:
		f.Name = s
		delete(f.extra, key)
	case key == "description" && isString:
		f.Description = s
		delete(f.extra, key)
	case key == "parameters":
		f.Parameters = append(json.RawMessage(nil), raw...)
	default:
		if key == "name" {
			f.Name = ""
		} else if key == "description" {
			f.Description = ""
		}
		if f.extra == nil {
			f.extra = map[string]json.RawMessage{}
		}
		f.extra[key] = append(json.RawMessage(nil), raw...)
	}
}

// fields returns the function object's keys and raw JSON values in order.
func (f Function) fields() (keys []string, vals []json.RawMessage) {
	quote := func(s string) json.RawMessage { b, _ := json.Marshal(s); return b }
	listed := map[string]bool{}
	for _, k := range f.order {
		listed[k] = true
		switch v, ok := f.extra[k]; {
		case ok:
			vals = append(vals, v)
		case k == "name":
			vals = append(vals, quote(f.Name))
		case k == "description":
			vals = append(vals, quote(f.Description))
		case k == "parameters" && len(f.Parameters) > 0:
			vals = append(vals, f.Parameters)
		default:
			continue
		}
		keys = append(keys, k)
	}
	if !listed["name"] {
		keys, vals = append(keys, "name"), append(vals, quote(f.Name))
	}
	if !listed["description"] && f.Description != "" {
		keys, vals = append(keys, "description"), append(vals, quote(f.Description))
	}
	if !listed["parameters"] && len(f.Parameters) > 0 {
		keys, vals = append(keys, "parameters"), append(vals, f.Parameters)
	}
	return keys, vals
}

// MarshalJSON writes the function object with its keys in their order.
func (f Function) MarshalJSON() ([]byte, error) {
	keys, vals := f.fields()
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		if err := json.Compact(&b, vals[i]); err != nil {
			return nil, fmt.Errorf("tool function %q key %q: %w", f.Name, k, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// pyJSON spells the function object as json.dumps does in the tools block.
func (f Function) pyJSON() (string, error) {
	keys, vals := f.fields()
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		v, err := pyJSON(string(vals[i]))
		if err != nil {
			return "", fmt.Errorf("key %q: %w", k, err)
		}
		writePyString(&b, k)
		b.WriteString(": ")
		b.WriteString(v)
	}
	b.WriteByte('}')
	return b.String(), nil
}
