package chat

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// ParseError says where and why model output does not follow the format.
type ParseError struct {
	Offset int    // byte offset in the completion text where the problem was found
	Reason string // what is wrong
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("chat: parse completion at byte %d: %s", e.Offset, e.Reason)
}

func parseErrorf(offset int, format string, args ...any) *ParseError {
	return &ParseError{Offset: offset, Reason: fmt.Sprintf(format, args...)}
}

// specialTokens may not appear inside parsed content or reasoning.
var specialTokens = []string{BOS, EOS, ThinkStart, ThinkEnd, DSML}

// Parse splits a completion, the text the model generated after the prompt,
// into an assistant message: ReasoningContent (thinking mode: the text up to
// the first </think>), Content, and ToolCalls from a DSML block. It follows
// the official parse_message_from_completion_text exactly, including what it
// accepts: a missing EOS after a tool block, and a string="false" value that
// is not valid JSON (spliced into Arguments as is). Tool calls carry no IDs.
//
// Parse is the plain reading of the reference; StreamParser does the same
// incrementally and is tested against it.
func Parse(text string, thinking bool) (Message, error) {
	msg := Message{Role: RoleAssistant}
	i := 0
	if thinking {
		next, reasoning, stop := readUntil(text, i, ThinkEnd, toolCallsStart)
		if stop != ThinkEnd {
			return Message{}, parseErrorf(len(reasoning), "thinking mode: no %s before the tool calls or the end", ThinkEnd)
		}
		msg.ReasoningContent = reasoning
		i = next
	}
	contentStart := i
	next, content, stop := readUntil(text, i, EOS, toolCallsStart)
	msg.Content = content
	switch stop {
	case "":
		return Message{}, parseErrorf(len(text), "no %s and no tool calls at the end of the content", EOS)
	case EOS:
		i = next
	case toolCallsStart:
		calls, end, err := parseToolCalls(text, next)
		if err != nil {
			return Message{}, err
		}
		msg.ToolCalls = calls
		next, rest, stop := readUntil(text, end, EOS)
		if rest != "" {
			return Message{}, parseErrorf(end, "unexpected text after the tool calls: %s", shorten(rest))
		}
		i, _ = next, stop
	}
	if i != len(text) {
		return Message{}, parseErrorf(i, "unexpected text after %s: %s", EOS, shorten(text[i:]))
	}
	if err := checkSpecial(msg.ReasoningContent, "reasoning", 0); err != nil {
		return Message{}, err
	}
	if err := checkSpecial(msg.Content, "content", contentStart); err != nil {
		return Message{}, err
	}
	return msg, nil
}

// checkSpecial reports a special token inside parsed content or reasoning.
func checkSpecial(s, what string, offset int) error {
	for _, tok := range specialTokens {
		if k := strings.Index(s, tok); k >= 0 {
			return parseErrorf(offset+k, "special token %s inside the %s", tok, what)
		}
	}
	return nil
}

// readUntil is the reference's _read_until_stop: it finds the earliest of
// stops at or after i and returns the index after it, the text before it and
// the stop found, or len(text), the rest and "" when there is none.
func readUntil(text string, i int, stops ...string) (next int, before, stop string) {
	at := len(text)
	for _, s := range stops {
		if k := strings.Index(text[i:], s); k >= 0 && i+k < at {
			at, stop = i+k, s
		}
	}
	if stop == "" {
		return len(text), text[i:], ""
	}
	return at + len(stop), text[i:at], stop
}

// parseToolCalls is the reference's parse_tool_calls, from just after
// "\n\n<｜DSML｜function_calls". It returns the calls and where they end.
func parseToolCalls(text string, i int) ([]ToolCall, int, error) {
	var calls []ToolCall
	for i < len(text) {
		next, between, stop := readUntil(text, i, invokeOpen, functionCallsE)
		if between != ">\n" {
			return nil, 0, parseErrorf(i, `tool calls: want ">\n" before the next invoke or the end of the block, got %s`, shorten(between))
		}
		if stop == functionCallsE {
			return calls, next, nil
		}
		if stop == "" {
			return nil, 0, parseErrorf(next, "tool calls: missing %s or %s", invokeOpen, functionCallsE)
		}
		i = next
		next, head, stop := readUntil(text, i, parameterOpen, invokeClose)
		name, ok := matchInvokeName(head)
		if !ok {
			return nil, 0, parseErrorf(i, `tool calls: want ' name="NAME">' and a newline after %s, got %s`, invokeOpen, shorten(head))
		}
		i = next
		var args []param
		for stop == parameterOpen {
			next, body, _ := readUntil(text, i, parameterClose)
			p, ok := matchParameter(body)
			if !ok {
				return nil, 0, parseErrorf(i, `tool call %q: want ' name="KEY" string="true|false">VALUE<' in a parameter, got %s`, name, shorten(body))
			}
			for _, q := range args {
				if q.key == p.key {
					return nil, 0, parseErrorf(i, "tool call %q: duplicate parameter %q", name, p.key)
				}
			}
			args = append(args, p)
			i = next
			next, between, stop = readUntil(text, i, parameterOpen, invokeClose)
			if between != ">\n" {
				return nil, 0, parseErrorf(i, `tool call %q: want ">\n" after a parameter, got %s`, name, shorten(between))
			}
			i = next
		}
		calls = append(calls, newToolCall(name, args))
	}
	return calls, i, nil
}

// param is one DSML parameter: its key, its raw value, and whether it is a
// string (string="true") or JSON (string="false").
type param struct {
	key, value string
	isString   bool
}

func newToolCall(name string, args []param) ToolCall {
	return ToolCall{Type: "function", Function: FunctionCall{Name: name, Arguments: argumentsJSON(args)}}
}

// argumentsJSON rebuilds the arguments text as the reference does: string
// values JSON-quoted, other values spliced in verbatim, not validated.
func argumentsJSON(args []param) string {
	var b strings.Builder
	b.WriteByte('{')
	for k, p := range args {
		if k > 0 {
			b.WriteString(", ")
		}
		writePyString(&b, p.key)
		b.WriteString(": ")
		if p.isString {
			writePyString(&b, p.value)
		} else {
			b.WriteString(p.value)
		}
	}
	b.WriteByte('}')
	return b.String()
}

// matchInvokeName matches the reference's re.findall(r'^\s*name="(.*?)">\n$',
// s, re.DOTALL). Python's $ also matches before a final newline, so
// ' name="f">\n\n' (the encoder's form of a call without arguments) matches too.
func matchInvokeName(s string) (string, bool) {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !isPySpace(r) || (r == utf8.RuneError && size == 1) {
			break
		}
		i += size
	}
	rest, ok := strings.CutPrefix(s[i:], `name="`)
	if !ok {
		return "", false
	}
	if name, ok := strings.CutSuffix(rest, "\">\n"); ok {
		return name, true
	}
	return strings.CutSuffix(rest, "\">\n\n")
}

// matchParameter matches the reference's re.findall(
// r'^ name="(.*?)" string="(true|false)">(.*?)<$', s, re.DOTALL): the key runs
// to the first ' string="true|false">' that leaves room for the value, and
// the value runs to a final '<' (or '<' and a newline, Python's $ again).
func matchParameter(s string) (param, bool) {
	rest, ok := strings.CutPrefix(s, ` name="`)
	if !ok {
		return param{}, false
	}
	var end int // where the value ends
	switch {
	case strings.HasSuffix(rest, "<"):
		end = len(rest) - 1
	case strings.HasSuffix(rest, "<\n"):
		end = len(rest) - 2
	default:
		return param{}, false
	}
	for k := 0; k < len(rest); k++ {
		if rest[k] != '"' {
			continue
		}
		for _, attr := range []string{`" string="true">`, `" string="false">`} {
			if strings.HasPrefix(rest[k:], attr) && k+len(attr) <= end {
				return param{key: rest[:k], value: rest[k+len(attr) : end], isString: attr[10] == 't'}, true
			}
		}
	}
	return param{}, false
}

// isPySpace reports whether Python's re module counts r as \s in a str pattern.
func isPySpace(r rune) bool {
	switch {
	case r >= 0x09 && r <= 0x0D, r >= 0x1C && r <= 0x20, r == 0x85, r == 0xA0, r == 0x1680,
		r >= 0x2000 && r <= 0x200A, r == 0x2028, r == 0x2029, r == 0x202F, r == 0x205F, r == 0x3000:
		return true
	}
	return false
}
