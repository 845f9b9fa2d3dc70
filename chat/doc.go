// Package chat is DeepSeek-V3.2's chat format: it renders OpenAI-style
// messages as the prompt text the model was trained on, and parses the text
// the model generates back into reasoning, content and tool calls.
//
// DeepSeek-V3.2 ships no Jinja template. Its format is defined by a Python
// encoder and parser, encoding/encoding_dsv32.py in the model repository, and
// this package follows that file byte for byte; where the two disagree, that
// is a bug here. The golden cases in testdata/chat come from it.
//
// Reading order:
//
//   - message.go: Message, ToolCall, Tool and their OpenAI JSON forms.
//   - pyjson.go: JSON spelled the way Python's json.dumps spells it, which the
//     prompt needs for tool schemas, non-string arguments and response formats.
//   - encode.go: Encode, the renderer (encode_messages), and AttachTools.
//   - parse.go: Parse, the parser (parse_message_from_completion_text).
//   - stream.go: StreamParser, the same parser fed piece by piece, for servers.
//
// The format in brief: a prompt is BOS, then each message. A user turn is
// <｜User｜>…<｜Assistant｜> followed by <think> (thinking mode, last user
// turn) or </think>. An assistant turn is reasoning</think> (thinking mode,
// after the last user turn only), content, an optional DSML tool-call block,
// and EOS. Tool results follow as a <function_results> block. Tools are listed
// in the system (or developer) message.
//
// Reasoning retention: reasoning is shown only for assistant messages after
// the last user (or developer) message, so it is kept across any number of
// tool rounds of the current turn and dropped from earlier turns. Callers keep
// ReasoningContent on every stored assistant message; Encode applies the rule.
//
// What the package deliberately does not do:
//
//   - It works on strings, not token ids. Special tokens are text here; the
//     tokenizer package maps them to ids.
//   - It does not repair model output. Parse is as strict as the reference;
//     a server that wants tolerance turns a ParseError into its own answer.
//   - It does not pair tool results with calls by tool_call_id: like the
//     reference, it pairs them by position and ignores the ids.
//   - It does not render images or other non-text content parts.
//
// Where it knowingly differs from the reference: null content renders as the
// empty string (Python would print "None"), a tool message at index 0 is
// always rejected, and a lone UTF-16 surrogate in JSON becomes U+FFFD.
package chat
