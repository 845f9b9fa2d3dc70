package agent_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/agent"
	"github.com/dsv32/dsv32/chat"
)

// scriptedGenerator returns canned completions and records every prompt.
type scriptedGenerator struct {
	replies []string
	prompts []string
}

func (g *scriptedGenerator) Generate(_ context.Context, prompt string, _ int) (string, agent.Usage, error) {
	g.prompts = append(g.prompts, prompt)
	r := g.replies[0]
	g.replies = g.replies[1:]
	return r, agent.Usage{PromptTokens: len(prompt), CompletionTokens: len(r)}, nil
}

// TestChatFormatRetention runs the loop with the runtime rendering
// DeepSeek-V3.2 prompts itself: reasoning stays in the prompt across tool
// rounds of a turn and is gone once a new user message follows.
func TestChatFormatRetention(t *testing.T) {
	call := "\n\n<" + chat.DSML + "function_calls>\n<" + chat.DSML + `invoke name="echo">` + "\n<" + chat.DSML +
		`parameter name="text" string="true">ping</` + chat.DSML + "parameter>\n</" + chat.DSML + "invoke>\n</" + chat.DSML + "function_calls>"
	gen := &scriptedGenerator{replies: []string{
		"first I will echo</think>" + call + chat.EOS,
		"the echo came back</think>It said ping." + chat.EOS,
		"a new question</think>Fine." + chat.EOS,
	}}
	think := true
	a := &agent.Agent{Client: agent.PromptClient{Format: agent.ChatFormat{Thinking: true}, Generator: gen},
		Tools: toolbox(t), Thinking: &think, MaxSteps: 4}
	res, err := a.Run(context.Background(), "Echo ping.")
	if err != nil {
		t.Fatal(err)
	}
	if res.Answer != "It said ping." || len(gen.prompts) != 2 {
		t.Fatalf("answer %q after %d prompts", res.Answer, len(gen.prompts))
	}
	if !strings.Contains(gen.prompts[1], "first I will echo</think>") {
		t.Errorf("second prompt (a tool round of the same turn) lost the reasoning:\n%s", gen.prompts[1])
	}
	res, err = a.Continue(context.Background(), append(res.Messages, agent.Message{Role: agent.RoleUser, Content: "And now?"}))
	if err != nil {
		t.Fatal(err)
	}
	last := gen.prompts[2]
	if strings.Contains(last, "first I will echo") || strings.Contains(last, "the echo came back") {
		t.Errorf("after a new user message the earlier reasoning is still rendered:\n%s", last)
	}
	if !strings.Contains(last, "It said ping.") || !strings.HasSuffix(last, chat.Assistant+chat.ThinkStart) {
		t.Errorf("third prompt lacks the earlier answer or the thinking opener:\n%s", last)
	}
}
