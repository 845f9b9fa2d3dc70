package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"sort"
	"strings"
	"unicode/utf8"
)

// Tool is something the model can call. Spec declares its name and the JSON
// schema of its parameters; Call receives arguments already checked against
// that schema. An error from Call becomes an error result the model sees.
type Tool interface {
	Spec() ToolSpec
	Call(ctx context.Context, args json.RawMessage) (string, error)
}

// Func makes a Tool from a spec and a function.
func Func(spec ToolSpec, fn func(ctx context.Context, args json.RawMessage) (string, error)) Tool {
	return funcTool{spec, fn}
}

type funcTool struct {
	spec ToolSpec
	fn   func(context.Context, json.RawMessage) (string, error)
}

func (t funcTool) Spec() ToolSpec { return t.spec }
func (t funcTool) Call(ctx context.Context, args json.RawMessage) (string, error) {
	return t.fn(ctx, args)
}

// DefaultMaxOutput caps one tool result appended to the history, in bytes.
const DefaultMaxOutput = 32 << 10

// Toolbox holds the tools of a run, with their compiled schemas, and turns a
// model's tool call into a result string. It never fails: unknown tools,
// malformed or invalid arguments, tool errors and tool panics all become an
// error result that names the problem, so the model can correct itself.
type Toolbox struct {
	MaxOutput int // bytes per result; 0: DefaultMaxOutput
	tools     map[string]Tool
	schemas   map[string]*Schema
	order     []string
}

// NewToolbox checks the tools' names and schemas.
func NewToolbox(tools ...Tool) (*Toolbox, error) {
	b := &Toolbox{}
	for _, t := range tools {
		if err := b.Add(t); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Add adds one tool. The zero Toolbox is empty and ready to use.
func (b *Toolbox) Add(t Tool) error {
	if b.tools == nil {
		b.tools, b.schemas = map[string]Tool{}, map[string]*Schema{}
	}
	spec := t.Spec()
	if spec.Name == "" {
		return errors.New("toolbox: tool with an empty name")
	}
	if _, dup := b.tools[spec.Name]; dup {
		return fmt.Errorf("toolbox: duplicate tool %q", spec.Name)
	}
	params := spec.Parameters
	if len(bytes.TrimSpace(params)) == 0 {
		params = json.RawMessage(`{"type":"object"}`)
	}
	s, err := CompileSchema(params)
	if err != nil {
		return fmt.Errorf("toolbox: tool %q: %w", spec.Name, err)
	}
	b.tools[spec.Name] = t
	b.schemas[spec.Name] = s
	b.order = append(b.order, spec.Name)
	return nil
}

// Specs lists the tool declarations in the order they were added.
func (b *Toolbox) Specs() []ToolSpec {
	if b == nil {
		return nil
	}
	out := make([]ToolSpec, 0, len(b.order))
	for _, n := range b.order {
		out = append(out, b.tools[n].Spec())
	}
	return out
}

// Call runs one tool call and returns the text for the tool message, and
// whether it is an error result.
func (b *Toolbox) Call(ctx context.Context, tc ToolCall) (result string, isErr bool) {
	if b == nil {
		return fmt.Sprintf("error: unknown tool %q: no tools are available", tc.Name), true
	}
	t, ok := b.tools[tc.Name]
	if !ok {
		names := append([]string(nil), b.order...)
		sort.Strings(names)
		return fmt.Sprintf("error: unknown tool %q (available: %s)", tc.Name, strings.Join(names, ", ")), true
	}
	args, err := ParseArguments(tc.Arguments)
	if err != nil {
		return fmt.Sprintf("error: malformed arguments for %s: %v", tc.Name, err), true
	}
	if err := b.schemas[tc.Name].Validate(args); err != nil {
		return fmt.Sprintf("error: invalid arguments for %s: %v", tc.Name, err), true
	}
	raw := json.RawMessage(tc.Arguments)
	if strings.TrimSpace(tc.Arguments) == "" {
		raw = json.RawMessage("{}")
	}
	out, err := safeCall(ctx, t, raw)
	if err != nil {
		return b.limit("error: " + err.Error()), true
	}
	return b.limit(out), false
}

func safeCall(ctx context.Context, t Tool, args json.RawMessage) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			slog.Error("tool panicked", "tool", t.Spec().Name, "panic", r)
			slog.Debug("tool panic stack", "tool", t.Spec().Name, "stack", string(debug.Stack()))
			err = fmt.Errorf("tool %s failed internally: %v", t.Spec().Name, r)
		}
	}()
	return t.Call(ctx, args)
}

// limit truncates s to MaxOutput bytes on a rune boundary, saying so.
func (b *Toolbox) limit(s string) string {
	max := b.MaxOutput
	if max <= 0 {
		max = DefaultMaxOutput
	}
	return Truncate(s, max)
}

// Truncate cuts s to at most max bytes on a rune boundary and appends a note
// with the number of bytes left out.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("\n[output truncated: %d more bytes]", len(s)-cut)
}

// ParseArguments decodes a tool call's arguments: one JSON object (an empty
// string counts as {}), numbers kept exact as json.Number.
func ParseArguments(s string) (map[string]any, error) {
	if strings.TrimSpace(s) == "" {
		return map[string]any{}, nil
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("not valid JSON: trailing data after the object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("arguments must be a JSON object, got %s", jsonType(v))
	}
	return obj, nil
}
