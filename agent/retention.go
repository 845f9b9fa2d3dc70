package agent

import (
	"context"
	"fmt"
)

// DropStaleReasoning applies the reasoning-retention rule (agent.md §2) to a
// copy of msgs: reasoning_content is cleared on assistant messages that come
// before the last user (or developer) message and kept on all later ones, so
// it survives any number of tool rounds within the current turn. Tool calls
// and tool results are never dropped. The stored history is not changed.
func DropStaleReasoning(msgs []Message) []Message {
	out := cloneMessages(msgs)
	l := lastUser(out)
	for i := 0; i < l; i++ {
		if out[i].Role == RoleAssistant {
			out[i].ReasoningContent = ""
		}
	}
	return out
}

// Format renders a history and tools into prompt text and parses the model's
// completion back into an assistant message. The chat package's DeepSeek-V3.2
// encoder is one; agent declares the interface so that it does not import it.
type Format interface {
	Render(msgs []Message, tools []ToolSpec) (string, error)
	Parse(completion string) (Message, error)
}

// Generator continues a prompt: a local engine, or a text-completions
// endpoint.
type Generator interface {
	Generate(ctx context.Context, prompt string, maxTokens int) (string, Usage, error)
}

// PromptClient is a Client that renders the prompt itself: it applies the
// retention rule (DropStaleReasoning), renders with Format, generates and
// parses. It is how the agent runs a model with no chat endpoint in front.
type PromptClient struct {
	Format    Format
	Generator Generator
}

// Complete renders req, generates and parses the reply.
func (c PromptClient) Complete(ctx context.Context, req Request) (Response, error) {
	prompt, err := c.Format.Render(DropStaleReasoning(req.Messages), req.Tools)
	if err != nil {
		return Response{}, fmt.Errorf("render prompt: %w", err)
	}
	text, usage, err := c.Generator.Generate(ctx, prompt, req.MaxTokens)
	if err != nil {
		return Response{}, fmt.Errorf("generate: %w", err)
	}
	m, err := c.Format.Parse(text)
	if err != nil {
		return Response{}, fmt.Errorf("parse completion: %w", err)
	}
	m.Role = RoleAssistant
	finish := "stop"
	if len(m.ToolCalls) > 0 {
		finish = "tool_calls"
	}
	return Response{Message: m, FinishReason: finish, Usage: usage}, nil
}
