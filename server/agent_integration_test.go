package server

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/dsv32/dsv32/agent"
)

// TestAgentAgainstServe runs the agent runtime (issue 7) against a real
// `dsv32 serve` process on loopback, plain and streamed, with a tool
// offered: the run ends with an answer or at its step budget, usage is
// reported, every tool call the model makes gets its result in position,
// and the trajectory reads back. The tiny model's weights are random, so
// what it says is not checked; the scripted-endpoint tests in agent pin the
// loop's exact behaviour.
func TestAgentAgainstServe(t *testing.T) {
	url := dsv32Serve(t)
	calc := agent.Func(agent.ToolSpec{Name: "calc", Description: "Multiply two integers.",
		Parameters: json.RawMessage(`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}`)},
		func(_ context.Context, args json.RawMessage) (string, error) {
			var in struct{ A, B int }
			if err := json.Unmarshal(args, &in); err != nil {
				return "", err
			}
			return string(rune('0' + in.A*in.B%10)), nil
		})
	tools, err := agent.NewToolbox(calc)
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []bool{false, true} {
		var buf bytes.Buffer
		traj := agent.NewTrajectory(&buf)
		think := stream // both thinking modes
		a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: url, Stream: stream, Timeout: 2 * time.Minute},
			Model: testModel, Tools: tools, MaxSteps: 3, MaxTokens: 24, Thinking: &think,
			Policy: agent.Discard(1), OnEvent: traj.Record}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		res, err := a.Run(ctx, "Use the calc tool to multiply 6 by 7, then answer.")
		cancel()
		if err != nil {
			t.Fatalf("stream=%v: %v", stream, err)
		}
		if res.Steps == 0 || res.Usage.PromptTokens == 0 || res.Usage.CompletionTokens == 0 {
			t.Errorf("stream=%v: %d steps, usage %+v", stream, res.Steps, res.Usage)
		}
		for i, m := range res.Messages {
			for j, tc := range m.ToolCalls {
				if k := i + 1 + j; k >= len(res.Messages) || res.Messages[k].ToolCallID != tc.ID {
					t.Errorf("stream=%v: tool call %s has no result in position", stream, tc.ID)
				}
			}
		}
		events, err := agent.ReadTrajectory(&buf)
		if err != nil || len(events) == 0 {
			t.Errorf("stream=%v: trajectory: %d events, %v", stream, len(events), err)
		}
		t.Logf("stream=%v: %d steps, stop %q, usage %+v, %d trajectory events", stream, res.Steps, res.Stop, res.Usage, len(events))
	}
}
