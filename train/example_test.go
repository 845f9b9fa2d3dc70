package train_test

import (
	"fmt"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/train"
)

// The assistant spans of a two-turn thinking conversation: the first
// turn's reasoning is dropped by the render (a user message follows it), so
// only its content is trained; the last turn trains reasoning and content.
func ExampleConversation_Render() {
	yes := true
	c := train.Conversation{Thinking: &yes, Messages: []chat.Message{
		{Role: chat.RoleUser, Content: "2+2?"},
		{Role: chat.RoleAssistant, ReasoningContent: "Easy.", Content: "4"},
		{Role: chat.RoleUser, Content: "3+3?"},
		{Role: chat.RoleAssistant, ReasoningContent: "Also easy.", Content: "6"},
	}}
	text, spans, err := c.Render()
	if err != nil {
		panic(err)
	}
	for _, s := range spans {
		fmt.Printf("%q\n", text[s.Start:s.End])
	}
	// Output:
	// "4<｜end▁of▁sentence｜>"
	// "Also easy.</think>6<｜end▁of▁sentence｜>"
}
