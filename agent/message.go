package agent

import (
	"context"
	"encoding/json"
)

// Roles of a chat message.
const (
	RoleSystem    = "system"
	RoleUser      = "user"
	RoleDeveloper = "developer"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Message is one chat message as the agent stores it. Assistant messages keep
// their ReasoningContent for the whole run; the retention rule (agent.md §2) is
// applied when a prompt is rendered, never by deleting it from the history.
type Message struct {
	Role             string     `json:"role"`
	Content          string     `json:"content"`
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID       string     `json:"tool_call_id,omitempty"` // role tool only
	Name             string     `json:"name,omitempty"`         // role tool: the tool that produced it
}

// ToolCall is one function call requested by the model. Arguments is the raw
// JSON text the model produced; it may be malformed.
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ToolSpec is the OpenAI function declaration of a tool: its name, a
// description for the model and a JSON schema of its parameters.
type ToolSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

// Usage counts tokens as reported by the endpoint.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// Total is prompt plus completion tokens.
func (u Usage) Total() int { return u.PromptTokens + u.CompletionTokens }

// Add returns u plus v.
func (u Usage) Add(v Usage) Usage {
	return Usage{u.PromptTokens + v.PromptTokens, u.CompletionTokens + v.CompletionTokens}
}

// Request is one chat completion request.
type Request struct {
	Model       string
	Messages    []Message
	Tools       []ToolSpec
	MaxTokens   int      // 0: endpoint default
	Temperature *float64 // nil: endpoint default
	TopP        *float64
	Thinking    *bool // nil: not sent; DeepSeek's thinking toggle
}

// Response is the assistant's reply to a Request.
type Response struct {
	Message      Message // role assistant
	FinishReason string  // stop, length or tool_calls
	Usage        Usage
}

// Client is the one thing the agent needs from a model: a chat completion.
// HTTPClient speaks it to any OpenAI-compatible endpoint; PromptClient renders
// prompts itself; tests script it.
type Client interface {
	Complete(ctx context.Context, req Request) (Response, error)
}

// ClientFunc adapts a function to Client.
type ClientFunc func(ctx context.Context, req Request) (Response, error)

// Complete calls f.
func (f ClientFunc) Complete(ctx context.Context, req Request) (Response, error) { return f(ctx, req) }

// lastUser is the index of the last user or developer message, or -1.
func lastUser(msgs []Message) int {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == RoleUser || msgs[i].Role == RoleDeveloper {
			return i
		}
	}
	return -1
}

// cloneMessages copies msgs and their tool-call slices.
func cloneMessages(msgs []Message) []Message {
	out := make([]Message, len(msgs))
	for i, m := range msgs {
		out[i] = m
		if m.ToolCalls != nil {
			out[i].ToolCalls = append([]ToolCall(nil), m.ToolCalls...)
		}
	}
	return out
}
