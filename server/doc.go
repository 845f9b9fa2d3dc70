// Package server is the OpenAI-compatible HTTP API of dsv32: chat
// completions (with DeepSeek's reasoning_content, thinking switch and DSML
// tool calls), text completions, models, health and Prometheus metrics,
// over one engine and its tokenizer, on net/http with its own wire types and
// server-sent events.
//
// A chat request is validated, rendered by package chat into DeepSeek-V3.2's
// prompt, tokenized and handed to the engine, one engine request per choice.
// The tokens that come back are detokenized, checked for stop strings (on
// the text; a match cancels the engine request through its context and
// trims the text), and read back by chat's streaming parser into reasoning,
// content and tool calls — the same path for streamed and plain responses.
//
// Reading order:
//
//   - wire.go: the request, response, chunk and error types.
//   - decode.go: request bodies to structs, with errors that name the field.
//   - generate.go: sampling fields, the engine event queue, stop strings,
//     and the tolerant reading of model output.
//   - chatcompl.go: prompt building (tools, tool_choice, thinking) and Chat.
//   - completions.go: Complete, for /v1/completions.
//   - sse.go, metrics.go, server.go: events, Prometheus, routing.
//
// Model output that the strict parser rejects (a generation cut by
// max_tokens or a stop string, a special token inside content, a malformed
// tool block) is not an error here: the unparsed rest is returned as text,
// reasoning if the think block never closed and content otherwise, and tool
// calls parsed before the problem are kept.
//
// What it deliberately does not do: authentication, rate limiting, TLS
// (put a proxy in front); images, audio or other non-text content;
// constrained decoding (tool_choice "required" or a named function narrows
// the tools in the prompt but cannot force a call; response_format is shown
// to the model, not enforced); logit_bias, echo, suffix and best_of (they are
// rejected with 400); the Responses and Assistants APIs; more than one model
// per server.
package server
