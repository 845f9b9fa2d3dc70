package server

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/dsv32/dsv32/chat"
)

// This file holds the OpenAI wire types the server reads and writes: its own
// structs, with the field names of OpenAI's API reference plus DeepSeek's
// reasoning_content and thinking and vLLM's top_k, min_p and
// chat_template_kwargs.

// ChatRequest is the body of POST /v1/chat/completions. Pointer fields are
// optional: nil means the default. Fields OpenAI defines that are not listed
// here (user, metadata, store, parallel_tool_calls, service_tier, …) are
// accepted and ignored.
type ChatRequest struct {
	Model               string             `json:"model"`
	Messages            []chat.Message     `json:"messages"`
	Tools               []chat.Tool        `json:"tools,omitempty"`
	ToolChoice          *ToolChoice        `json:"tool_choice,omitempty"`
	ResponseFormat      json.RawMessage    `json:"response_format,omitempty"`
	Stream              bool               `json:"stream,omitempty"`
	StreamOptions       *StreamOptions     `json:"stream_options,omitempty"`
	N                   *int               `json:"n,omitempty"`
	Temperature         *float64           `json:"temperature,omitempty"`
	TopP                *float64           `json:"top_p,omitempty"`
	TopK                *int               `json:"top_k,omitempty"` // extension (vLLM); -1 or 0: off
	MinP                *float64           `json:"min_p,omitempty"` // extension (vLLM)
	Seed                *int64             `json:"seed,omitempty"`
	Stop                StringList         `json:"stop,omitempty"`
	MaxTokens           *int               `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int               `json:"max_completion_tokens,omitempty"`
	PresencePenalty     *float64           `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64           `json:"frequency_penalty,omitempty"`
	Logprobs            bool               `json:"logprobs,omitempty"`
	TopLogprobs         *int               `json:"top_logprobs,omitempty"`
	LogitBias           map[string]float64 `json:"logit_bias,omitempty"` // not supported: rejected when not empty

	// Thinking is DeepSeek's switch: {"type": "enabled"|"disabled"} or a bool.
	Thinking *Thinking `json:"thinking,omitempty"`
	// ChatTemplateKwargs is vLLM's switch: {"thinking": true} (or
	// "enable_thinking"). Thinking wins when both are set.
	ChatTemplateKwargs map[string]json.RawMessage `json:"chat_template_kwargs,omitempty"`
}

// CompletionRequest is the body of POST /v1/completions.
type CompletionRequest struct {
	Model            string             `json:"model"`
	Prompt           Prompt             `json:"prompt"`
	Suffix           string             `json:"suffix,omitempty"` // not supported: rejected when not empty
	Echo             bool               `json:"echo,omitempty"`   // not supported: rejected when true
	BestOf           *int               `json:"best_of,omitempty"`
	Stream           bool               `json:"stream,omitempty"`
	StreamOptions    *StreamOptions     `json:"stream_options,omitempty"`
	N                *int               `json:"n,omitempty"`
	Temperature      *float64           `json:"temperature,omitempty"`
	TopP             *float64           `json:"top_p,omitempty"`
	TopK             *int               `json:"top_k,omitempty"`
	MinP             *float64           `json:"min_p,omitempty"`
	Seed             *int64             `json:"seed,omitempty"`
	Stop             StringList         `json:"stop,omitempty"`
	MaxTokens        *int               `json:"max_tokens,omitempty"` // default 16, as OpenAI's
	PresencePenalty  *float64           `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float64           `json:"frequency_penalty,omitempty"`
	Logprobs         *int               `json:"logprobs,omitempty"` // alternatives per token, 0–20
	LogitBias        map[string]float64 `json:"logit_bias,omitempty"`
}

// StreamOptions asks for a final usage chunk.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// fieldError is a bad value in a named request field.
type fieldError struct {
	field, msg string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

// StringList is a string or an array of strings (the "stop" field).
type StringList []string

func (l *StringList) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case string(data) == "null":
		*l = nil
		return nil
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return &fieldError{"stop", err.Error()}
		}
		*l = StringList{s}
		return nil
	}
	var ss []string
	if err := json.Unmarshal(data, &ss); err != nil {
		return &fieldError{"stop", "want a string or an array of strings"}
	}
	*l = ss
	return nil
}

// Thinking is DeepSeek's thinking switch: {"type": "enabled"} or
// {"type": "disabled"}; a bare bool is accepted too.
type Thinking struct {
	Enabled bool
}

func (t *Thinking) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if string(data) == "true" || string(data) == "false" {
		t.Enabled = string(data) == "true"
		return nil
	}
	var obj struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return &fieldError{"thinking", `want {"type": "enabled"|"disabled"} or a bool`}
	}
	switch obj.Type {
	case "enabled":
		t.Enabled = true
	case "disabled":
		t.Enabled = false
	default:
		return &fieldError{"thinking.type", fmt.Sprintf("%q: want \"enabled\" or \"disabled\"", obj.Type)}
	}
	return nil
}

func (t Thinking) MarshalJSON() ([]byte, error) {
	if t.Enabled {
		return []byte(`{"type":"enabled"}`), nil
	}
	return []byte(`{"type":"disabled"}`), nil
}

// ToolChoice is "none", "auto", "required" or {"type": "function",
// "function": {"name": NAME}}; Mode is "function" for the last.
type ToolChoice struct {
	Mode string
	Name string
}

func (c *ToolChoice) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return &fieldError{"tool_choice", err.Error()}
		}
		switch s {
		case "none", "auto", "required":
			c.Mode, c.Name = s, ""
			return nil
		}
		return &fieldError{"tool_choice", fmt.Sprintf("%q: want \"none\", \"auto\", \"required\" or a function object", s)}
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(data, &obj); err != nil || obj.Type != "function" || obj.Function.Name == "" {
		return &fieldError{"tool_choice", `want "none", "auto", "required" or {"type": "function", "function": {"name": NAME}}`}
	}
	c.Mode, c.Name = "function", obj.Function.Name
	return nil
}

func (c ToolChoice) MarshalJSON() ([]byte, error) {
	if c.Mode == "function" {
		return json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": c.Name}})
	}
	return json.Marshal(c.Mode)
}

// Prompt is a completions prompt: a string, an array of strings, an array
// of token ids, or an array of arrays of token ids. Exactly one of Texts and
// IDs is set.
type Prompt struct {
	Texts []string
	IDs   [][]int32
}

func (p *Prompt) UnmarshalJSON(data []byte) error {
	*p = Prompt{}
	data = bytes.TrimSpace(data)
	bad := &fieldError{"prompt", "want a string, an array of strings, an array of token ids or an array of arrays of token ids"}
	if len(data) == 0 || string(data) == "null" {
		return nil
	}
	if data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return bad
		}
		p.Texts = []string{s}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(data, &items); err != nil {
		return bad
	}
	if len(items) == 0 {
		return &fieldError{"prompt", "empty array"}
	}
	switch first := bytes.TrimSpace(items[0]); {
	case len(first) > 0 && first[0] == '"':
		if err := json.Unmarshal(data, &p.Texts); err != nil {
			return bad
		}
	case len(first) > 0 && first[0] == '[':
		if err := json.Unmarshal(data, &p.IDs); err != nil {
			return bad
		}
	default:
		var ids []int32
		if err := json.Unmarshal(data, &ids); err != nil {
			return bad
		}
		p.IDs = [][]int32{ids}
	}
	return nil
}

func (p Prompt) MarshalJSON() ([]byte, error) {
	if p.IDs != nil {
		return json.Marshal(p.IDs)
	}
	return json.Marshal(p.Texts)
}

// ChatResponse is a chat completion.
type ChatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"` // "chat.completion"
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []ChatChoice `json:"choices"`
	Usage   *Usage       `json:"usage,omitempty"`
}

// ChatChoice is one generated message.
type ChatChoice struct {
	Index        int             `json:"index"`
	Message      ResponseMessage `json:"message"`
	Logprobs     *ChatLogprobs   `json:"logprobs"`
	FinishReason string          `json:"finish_reason"` // stop, length or tool_calls
}

// ResponseMessage is the assistant's message: reasoning (thinking mode),
// content and tool calls, each call with an id and its arguments as JSON text.
type ResponseMessage struct {
	Role             string          `json:"role"`
	Content          string          `json:"content"`
	ReasoningContent string          `json:"reasoning_content,omitempty"`
	ToolCalls        []chat.ToolCall `json:"tool_calls,omitempty"`
}

// ChatChunk is one server-sent event of a streamed chat completion.
type ChatChunk struct {
	ID      string        `json:"id"`
	Object  string        `json:"object"` // "chat.completion.chunk"
	Created int64         `json:"created"`
	Model   string        `json:"model"`
	Choices []ChunkChoice `json:"choices"`
	Usage   *Usage        `json:"usage,omitempty"`
}

// ChunkChoice is one choice's part of a chunk.
type ChunkChoice struct {
	Index        int           `json:"index"`
	Delta        ChunkDelta    `json:"delta"`
	Logprobs     *ChatLogprobs `json:"logprobs,omitempty"`
	FinishReason *string       `json:"finish_reason"`
}

// ChunkDelta extends the message: reasoning first, then content, then tool
// calls (each whole: index, id, name and arguments in one delta).
type ChunkDelta struct {
	Role             string          `json:"role,omitempty"`
	Content          *string         `json:"content,omitempty"`
	ReasoningContent *string         `json:"reasoning_content,omitempty"`
	ToolCalls        []ChunkToolCall `json:"tool_calls,omitempty"`
}

// ChunkToolCall is a tool call in a delta.
type ChunkToolCall struct {
	Index    int               `json:"index"`
	ID       string            `json:"id,omitempty"`
	Type     string            `json:"type,omitempty"`
	Function chat.FunctionCall `json:"function"`
}

// ChatLogprobs are the log-probabilities of the generated tokens.
type ChatLogprobs struct {
	Content []TokenLogprob `json:"content"`
}

// TokenLogprob is one token, its log-probability under the model (before
// temperature and truncation) and the most likely alternatives.
type TokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float64      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []TopLogprob `json:"top_logprobs"`
}

// TopLogprob is one alternative token.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// CompletionResponse is a text completion, or one chunk of a streamed one.
type CompletionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"` // "text_completion"
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
}

// CompletionChoice is one completion (or a piece of it, when streaming).
type CompletionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	Logprobs     *CompletionLogprobs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
}

// CompletionLogprobs is the legacy completions logprobs object.
type CompletionLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []map[string]float64 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// Usage counts tokens: the prompt once, the completions of all choices.
type Usage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// PromptTokensDetails splits the prompt tokens: CachedTokens were taken
// from the engine's cache (a shared prefix, a conversation's earlier turns)
// instead of prefilled; with n > 1, those no choice prefilled.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// CompletionTokensDetails splits the completion tokens.
type CompletionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// ModelList is GET /v1/models.
type ModelList struct {
	Object string      `json:"object"` // "list"
	Data   []ModelCard `json:"data"`
}

// ModelCard describes the served model.
type ModelCard struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // "model"
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// MaxModelLen is the engine's context in tokens (vLLM's field).
	MaxModelLen int `json:"max_model_len,omitempty"`
}

// Error is OpenAI's error object; it is sent as {"error": {...}} with the
// HTTP status in Status.
type Error struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%d %s", e.Status, e.Message)
	if e.Code != nil {
		s += " (" + *e.Code + ")"
	}
	return s
}

// errorf builds an Error; param and code may be "" for null.
func errorf(status int, code, param, format string, args ...any) *Error {
	e := &Error{Status: status, Message: fmt.Sprintf(format, args...), Type: errorType(status)}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return e
}

func errorType(status int) string {
	switch {
	case status == 404:
		return "invalid_request_error"
	case status == 401:
		return "authentication_error"
	case status == 429:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}
