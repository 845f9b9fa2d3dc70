package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/dsv32/dsv32/agent"
	"github.com/dsv32/dsv32/agent/agenttest"
)

// An agent with one tool against an OpenAI-compatible endpoint (here a
// scripted one): the model calls the tool, sees the result, and answers.
func ExampleAgent_Run() {
	srv := agenttest.NewServer(
		agenttest.Reply{Reasoning: "I should look it up.", ToolCalls: []agent.ToolCall{
			{ID: "call_1", Name: "capital", Arguments: `{"country":"France"}`}}},
		agenttest.Reply{Reasoning: "The tool says Paris.", Content: "Paris."},
	)
	defer srv.Close()

	capital := agent.Func(agent.ToolSpec{Name: "capital", Description: "The capital of a country.",
		Parameters: json.RawMessage(`{"type":"object","properties":{"country":{"type":"string"}},"required":["country"]}`)},
		func(_ context.Context, args json.RawMessage) (string, error) {
			var a struct{ Country string }
			if err := json.Unmarshal(args, &a); err != nil {
				return "", err
			}
			return map[string]string{"France": "Paris"}[a.Country], nil
		})
	tools, err := agent.NewToolbox(capital)
	if err != nil {
		panic(err)
	}
	a := &agent.Agent{
		Client: &agent.HTTPClient{BaseURL: srv.URL},
		Model:  "deepseek-v3.2",
		Tools:  tools,
		Policy: agent.Discard(1), // Discard-all when the context passes 80% of the window
		OnEvent: func(e agent.Event) {
			if e.Type == agent.EventMessage && e.Message.Role == agent.RoleTool {
				fmt.Fprintf(os.Stdout, "tool %s -> %s\n", e.Message.Name, e.Message.Content)
			}
		},
	}
	res, err := a.Run(context.Background(), "What is the capital of France?")
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Answer, res.Stop, res.Steps)
	// Output:
	// tool capital -> Paris
	// Paris. answer 2
}
