package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// The special strings of the format. They are plain text in the prompt; the
// tokenizer maps all but DSML to single ids.
const (
	BOS        = "<｜begin▁of▁sentence｜>"
	EOS        = "<｜end▁of▁sentence｜>"
	User       = "<｜User｜>"
	Assistant  = "<｜Assistant｜>"
	ThinkStart = "<think>"
	ThinkEnd   = "</think>"
	DSML       = "｜DSML｜" // prefix of the tool-call tag names; not one token
)

// The tool-call markup.
const (
	toolCallsStart = "\n\n<" + DSML + "function_calls" // what starts a tool block in model output
	functionCalls  = "<" + DSML + "function_calls>"
	functionCallsE = "</" + DSML + "function_calls>"
	invokeOpen     = "<" + DSML + "invoke"
	invokeClose    = "</" + DSML + "invoke"
	parameterOpen  = "<" + DSML + "parameter"
	parameterClose = "/" + DSML + "parameter" // the parser's stop string has no '<'
)

// toolsPreamble opens the tools block, byte for byte as the official encoder
// writes it; the tool schemas follow, one JSON object per line, then toolsEnd.
const toolsPreamble = `## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<｜DSML｜function_calls>" block like the following as part of your reply to the user:
<｜DSML｜function_calls>
<｜DSML｜invoke name="$FUNCTION_NAME">
<｜DSML｜parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</｜DSML｜parameter>
...
</｜DSML｜invoke>
<｜DSML｜invoke name="$FUNCTION_NAME2">
...
</｜DSML｜invoke>
</｜DSML｜function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:

<｜DSML｜function_calls>
...
</｜DSML｜function_calls>

<function_results>
...
</function_results>

<think>...thinking about results</think>

Here are the functions available in JSONSchema format:
<functions>
`

const toolsEnd = "\n</functions>\n"

const responseFormatHead = "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n"

// Options are encode_messages' keyword arguments. The zero value is not the
// Python default: the official defaults are DropThinking and AddBOS true.
type Options struct {
	// Thinking selects thinking_mode "thinking" (true) or "chat" (false).
	Thinking bool
	// DropThinking is drop_thinking: strip reasoning from assistant messages
	// before the last user message. Rendering never shows that reasoning
	// anyway, so its only visible effect is the official encoder's quirk
	// that it also removes developer messages before the last user message
	// and then fails; Encode reports that case as an error.
	DropThinking bool
	// AddBOS is add_default_bos_token: start with BOS, unless Context is set.
	AddBOS bool
	// Context holds earlier messages that are already in the prompt. Only
	// the messages passed to Encode are rendered, but indices (the last user
	// message, the pairing of tool results with calls) count over Context
	// followed by the messages.
	Context []Message
}

// Encode renders messages as the DeepSeek-V3.2 prompt text, byte for byte as
// the official encode_messages does. A conversation that ends with a user or
// developer message, or with a complete block of tool results, already ends
// with the opening of the next assistant turn.
func Encode(messages []Message, opts Options) (string, error) {
	all := make([]Message, 0, len(opts.Context)+len(messages))
	all = append(append(all, opts.Context...), messages...)
	e := encoder{all: all, nctx: len(opts.Context), thinking: opts.Thinking, last: -1}
	for i, m := range all {
		switch m.Role {
		case RoleSystem, RoleUser, RoleAssistant, RoleTool, RoleDeveloper:
		default:
			return "", fmt.Errorf("chat: encode %s: unknown role %q (want system, user, assistant, tool or developer)", e.where(i), m.Role)
		}
		if m.Role == RoleUser || m.Role == RoleDeveloper {
			e.last = i
		}
	}
	if opts.Thinking && opts.DropThinking {
		for i := 0; i < e.last; i++ {
			if all[i].Role == RoleDeveloper {
				return "", fmt.Errorf("chat: encode %s: a developer message before the last user message is removed by the official encoder's drop_thinking pass, which then fails; set DropThinking false to render it", e.where(i))
			}
		}
	}
	var b strings.Builder
	if opts.AddBOS && len(opts.Context) == 0 {
		b.WriteString(BOS)
	}
	for i := e.nctx; i < len(all); i++ {
		if err := e.render(&b, i); err != nil {
			return "", fmt.Errorf("chat: encode %s (%s): %w", e.where(i), all[i].Role, err)
		}
	}
	return b.String(), nil
}

type encoder struct {
	all      []Message // context, then the messages to render
	nctx     int       // len(context)
	thinking bool
	last     int // index in all of the last user or developer message, or -1
}

// where names message i for errors: messages[k] or context[k].
func (e *encoder) where(i int) string {
	if i < e.nctx {
		return fmt.Sprintf("context[%d]", i)
	}
	return fmt.Sprintf("messages[%d]", i-e.nctx)
}

// opener is what follows a user turn or a block of tool results at index i:
// "<think>" when the model is to think next, "</think>" otherwise.
func (e *encoder) opener(i int, current bool) string {
	if e.thinking && current {
		return ThinkStart
	}
	return ThinkEnd
}

func (e *encoder) render(b *strings.Builder, i int) error {
	m := e.all[i]
	switch m.Role {
	case RoleSystem:
		b.WriteString(m.Content)
		return writeToolsAndFormat(b, m)

	case RoleUser:
		b.WriteString(User + m.Content + Assistant)
		b.WriteString(e.opener(i, i == e.last))

	case RoleDeveloper:
		if m.Content == "" {
			return errors.New("developer message has empty content")
		}
		b.WriteString(User)
		if err := writeToolsAndFormat(b, m); err != nil {
			return err
		}
		b.WriteString("\n\n# The user's message is: " + m.Content + Assistant)
		b.WriteString(e.opener(i, i == e.last))

	case RoleAssistant:
		if e.thinking && i > e.last {
			if m.ReasoningContent == "" && len(m.ToolCalls) == 0 {
				return errors.New("in thinking mode an assistant message after the last user message needs reasoning_content or tool_calls")
			}
			b.WriteString(m.ReasoningContent + ThinkEnd)
		}
		b.WriteString(m.Content)
		if len(m.ToolCalls) > 0 {
			b.WriteString("\n\n" + functionCalls + "\n")
			for k, call := range m.ToolCalls {
				if k > 0 {
					b.WriteByte('\n')
				}
				if err := writeInvoke(b, call); err != nil {
					return fmt.Errorf("tool_calls[%d]: %w", k, err)
				}
			}
			b.WriteString("\n" + functionCallsE)
		}
		b.WriteString(EOS)

	case RoleTool:
		// Results pair with the calls of the nearest assistant message by position.
		j := i - 1
		for j >= 0 && e.all[j].Role == RoleTool {
			j--
		}
		if j < 0 || e.all[j].Role != RoleAssistant {
			return errors.New("tool result without a preceding assistant message with tool_calls")
		}
		order, calls := i-j, len(e.all[j].ToolCalls)
		if calls == 0 {
			return fmt.Errorf("tool result follows %s, an assistant message without tool_calls", e.where(j))
		}
		if order > calls {
			return fmt.Errorf("tool result %d for %s, which has %d tool calls", order, e.where(j), calls)
		}
		if order == 1 {
			b.WriteString("\n\n<function_results>")
		}
		b.WriteString("\n<result>" + m.Content + "</result>")
		if order == calls {
			b.WriteString("\n</function_results>\n\n")
			b.WriteString(e.opener(i, i >= e.last))
		}
	}
	return nil
}

// writeToolsAndFormat appends the tools block and the response format of a
// system or developer message, each after a blank line.
func writeToolsAndFormat(b *strings.Builder, m Message) error {
	if len(m.Tools) > 0 {
		b.WriteString("\n\n" + toolsPreamble)
		for k, t := range m.Tools {
			if t.Function.Name == "" && len(t.Function.order) == 0 {
				return fmt.Errorf("tools[%d] has no function", k)
			}
			s, err := t.Function.pyJSON()
			if err != nil {
				return fmt.Errorf("tools[%d] (%s): %w", k, t.Function.Name, err)
			}
			if k > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(s)
		}
		b.WriteString(toolsEnd)
	}
	if len(m.ResponseFormat) > 0 {
		v, err := parsePyJSON(string(m.ResponseFormat))
		if err != nil {
			return fmt.Errorf("response_format: %w", err)
		}
		if v.truthy() { // Python: `if response_format:`
			b.WriteString("\n\n" + responseFormatHead)
			writePy(b, v)
		}
	}
	return nil
}

// writeInvoke appends one call as a DSML invoke: each argument a parameter in
// the arguments' key order, strings raw with string="true", anything else as
// JSON with string="false". Names and keys are written unescaped.
func writeInvoke(b *strings.Builder, call ToolCall) error {
	args, err := parsePyJSON(call.Function.Arguments)
	if err != nil {
		return fmt.Errorf("function %q arguments: %w", call.Function.Name, err)
	}
	if args.kind != pyDict {
		return fmt.Errorf("function %q arguments: want a JSON object, got %s", call.Function.Name, shorten(call.Function.Arguments))
	}
	b.WriteString(invokeOpen + ` name="` + call.Function.Name + "\">\n")
	for k, key := range args.keys {
		if k > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(parameterOpen + ` name="` + key + `" string="`)
		if v := args.vals[k]; v.kind == pyStr {
			b.WriteString(`true">` + v.s)
		} else {
			b.WriteString(`false">`)
			writePy(b, v)
		}
		b.WriteString("<" + parameterClose + ">")
	}
	b.WriteString("\n" + invokeClose + ">")
	return nil
}

func shorten(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return fmt.Sprintf("%q", s)
}

// AttachTools returns messages with request-level tools and response format
// placed where the encoder reads them: on the first system message, or on a
// new system message with empty content put in front when there is none.
// This is what DeepSeek's own test does with test_input.json's "tools", and
// what an OpenAI-compatible server does with a request's "tools". It is an
// error if that system message already carries tools (or a response format
// when one is given). The input slice is not modified.
func AttachTools(messages []Message, tools []Tool, responseFormat json.RawMessage) ([]Message, error) {
	if len(tools) == 0 && len(responseFormat) == 0 {
		return messages, nil
	}
	out := append([]Message(nil), messages...)
	at := -1
	for i, m := range out {
		if m.Role == RoleSystem {
			at = i
			break
		}
	}
	if at < 0 {
		out = append([]Message{{Role: RoleSystem}}, out...)
		at = 0
	}
	sys := &out[at]
	if len(tools) > 0 {
		if len(sys.Tools) > 0 {
			return nil, fmt.Errorf("chat: tools given both for the request and on messages[%d]", at)
		}
		sys.Tools = tools
	}
	if len(responseFormat) > 0 {
		if len(sys.ResponseFormat) > 0 {
			return nil, fmt.Errorf("chat: response_format given both for the request and on messages[%d]", at)
		}
		sys.ResponseFormat = responseFormat
	}
	return out, nil
}
