package chat_test

import (
	"fmt"

	"github.com/dsv32/dsv32/chat"
)

func ExampleEncode() {
	messages := []chat.Message{
		{Role: chat.RoleSystem, Content: "You are terse."},
		{Role: chat.RoleUser, Content: "Weather in Paris?"},
		{Role: chat.RoleAssistant, ReasoningContent: "Need the tool.", ToolCalls: []chat.ToolCall{{
			Type:     "function",
			Function: chat.FunctionCall{Name: "get_weather", Arguments: `{"city":"Paris","days":2}`},
		}}},
		{Role: chat.RoleTool, Content: "sunny"},
	}
	prompt, err := chat.Encode(messages, chat.Options{Thinking: true, DropThinking: true, AddBOS: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(prompt)
	// Output:
	// <｜begin▁of▁sentence｜>You are terse.<｜User｜>Weather in Paris?<｜Assistant｜><think>Need the tool.</think>
	//
	// <｜DSML｜function_calls>
	// <｜DSML｜invoke name="get_weather">
	// <｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>
	// <｜DSML｜parameter name="days" string="false">2</｜DSML｜parameter>
	// </｜DSML｜invoke>
	// </｜DSML｜function_calls><｜end▁of▁sentence｜>
	//
	// <function_results>
	// <result>sunny</result>
	// </function_results>
	//
	// <think>
}

func ExampleParse() {
	completion := "Paris is sunny.</think>It will be sunny.<｜end▁of▁sentence｜>"
	msg, err := chat.Parse(completion, true)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("reasoning: %q\ncontent: %q\n", msg.ReasoningContent, msg.Content)

	call := "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n" +
		"<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n" +
		"<｜DSML｜parameter name=\"days\" string=\"false\">2</｜DSML｜parameter>\n" +
		"</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>"
	msg, err = chat.Parse(call, false)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(msg.ToolCalls[0].Function.Name, msg.ToolCalls[0].Function.Arguments)

	_, err = chat.Parse("Hello", false)
	fmt.Println(err)
	// Output:
	// reasoning: "Paris is sunny."
	// content: "It will be sunny."
	// get_weather {"city": "Paris", "days": 2}
	// chat: parse completion at byte 5: no <｜end▁of▁sentence｜> and no tool calls at the end of the content
}

func ExampleStreamParser() {
	p := chat.NewStreamParser(true)
	for _, piece := range []string{"Think", "ing.</th", "ink>Hel", "lo", "<｜end▁of", "▁sentence｜>"} {
		deltas, err := p.Push(piece)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, d := range deltas {
			fmt.Printf("%s %q\n", d.Kind, d.Text)
		}
	}
	_, msg, err := p.Finish()
	fmt.Printf("%q %q %v\n", msg.ReasoningContent, msg.Content, err)
	// Output:
	// reasoning "Think"
	// reasoning "ing."
	// content "Hel"
	// content "lo"
	// "Thinking." "Hello" <nil>
}
