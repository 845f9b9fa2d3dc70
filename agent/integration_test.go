package agent_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/dsv32/dsv32/agent"
)

// TestServeIntegration runs the agent against a real endpoint, normally a
// `dsv32 serve` on loopback with a small model:
//
//	dsv32 serve --model testdata/tiny-dsa --addr 127.0.0.1:8000 &
//	DSV32_AGENT_ENDPOINT=http://127.0.0.1:8000 go test ./agent -run TestServeIntegration
//
// A tiny model answers nonsense, so the test asserts the protocol, not the
// answer: the run ends (answer, length or max_steps) without an endpoint
// error, in both streaming and plain modes; every tool call gets exactly one
// result, in call order; usage is reported; and the trajectory reads back.
// It is skipped unless DSV32_AGENT_ENDPOINT is set.
func TestServeIntegration(t *testing.T) {
	endpoint := os.Getenv("DSV32_AGENT_ENDPOINT")
	if endpoint == "" {
		t.Skip("DSV32_AGENT_ENDPOINT not set; start `dsv32 serve` and point it there")
	}
	for _, stream := range []bool{false, true} {
		var buf bytes.Buffer
		traj := agent.NewTrajectory(&buf)
		think := true
		a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: endpoint, Stream: stream, Timeout: 2 * time.Minute},
			Model: os.Getenv("DSV32_AGENT_MODEL"), Tools: toolbox(t), MaxSteps: 4, MaxTokens: 64, Thinking: &think,
			Policy: agent.Discard(1), OnEvent: traj.Record}
		res, err := a.Run(context.Background(), "Use the calc tool to multiply 6 by 7, then answer.")
		if err != nil {
			t.Fatalf("stream=%v: %v", stream, err)
		}
		if res.Usage.PromptTokens == 0 || res.Usage.CompletionTokens == 0 {
			t.Errorf("stream=%v: no usage reported: %+v", stream, res.Usage)
		}
		for i, m := range res.Messages {
			if m.Role != agent.RoleAssistant {
				continue
			}
			for j, tc := range m.ToolCalls {
				if k := i + 1 + j; k >= len(res.Messages) || res.Messages[k].ToolCallID != tc.ID {
					t.Errorf("stream=%v: call %s has no result in position", stream, tc.ID)
				}
			}
		}
		if _, err := agent.ReadTrajectory(&buf); err != nil {
			t.Error(err)
		}
	}
}
