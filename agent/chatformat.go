package agent

import (
	"fmt"

	"github.com/dsv32/dsv32/chat"
)

// ChatFormat is DeepSeek-V3.2's own chat format as a Format, for running a
// model through PromptClient (the runtime renders prompts itself): messages
// and tools are rendered by chat.Encode — which applies the reasoning
// retention rule again, as the official encoder does — and completions are
// parsed by chat.Parse.
type ChatFormat struct {
	Thinking bool
}

// Render renders the conversation as the prompt the model continues.
func (f ChatFormat) Render(msgs []Message, tools []ToolSpec) (string, error) {
	cm := make([]chat.Message, 0, len(msgs))
	for _, m := range msgs {
		c := chat.Message{Role: chat.Role(m.Role), Content: m.Content, ReasoningContent: m.ReasoningContent,
			ToolCallID: m.ToolCallID, Name: m.Name}
		for _, tc := range m.ToolCalls {
			c.ToolCalls = append(c.ToolCalls, chat.ToolCall{ID: tc.ID, Type: "function",
				Function: chat.FunctionCall{Name: tc.Name, Arguments: tc.Arguments}})
		}
		cm = append(cm, c)
	}
	if len(tools) > 0 {
		ct := make([]chat.Tool, len(tools))
		for i, t := range tools {
			ct[i] = chat.Tool{Type: "function", Function: chat.Function{Name: t.Name, Description: t.Description, Parameters: t.Parameters}}
		}
		var err error
		if cm, err = chat.AttachTools(cm, ct, nil); err != nil {
			return "", fmt.Errorf("chat format: %w", err)
		}
	}
	return chat.Encode(cm, chat.Options{Thinking: f.Thinking, DropThinking: true, AddBOS: true})
}

// Parse turns a completion into an assistant message.
func (f ChatFormat) Parse(completion string) (Message, error) {
	cm, err := chat.Parse(completion, f.Thinking)
	if err != nil {
		return Message{}, fmt.Errorf("chat format: %w", err)
	}
	m := Message{Role: RoleAssistant, Content: cm.Content, ReasoningContent: cm.ReasoningContent}
	for _, tc := range cm.ToolCalls {
		m.ToolCalls = append(m.ToolCalls, ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	return m, nil
}
