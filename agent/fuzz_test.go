package agent_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/agent"
)

// FuzzReadStream: no input makes the SSE reader panic or loop.
func FuzzReadStream(f *testing.F) {
	f.Add("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
	f.Add("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\"}}]}}]}\n\ndata: [DONE]")
	f.Add(": x\r\n\r\ndata:[DONE]\r\n")
	f.Add("data: {\"error\":{\"message\":\"e\"}}\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		resp, err := agent.ReadStream(strings.NewReader(in), func(agent.Delta) {})
		if err == nil && resp.Message.Role != agent.RoleAssistant {
			t.Errorf("role %q", resp.Message.Role)
		}
	})
}

// FuzzToolArguments: whatever a model writes as arguments becomes a result,
// never a panic, and invalid arguments are always error results.
func FuzzToolArguments(f *testing.F) {
	for _, s := range []string{`{"op":"add","a":1,"b":2}`, `{"op":"mul","a":1e400,"b":2}`, `{`, `[]`, `null`, ``,
		`{"op":"add","a":1,"b":2}{}`, `{"a":{"a":{"a":[]}}}`, `"\ud800"`} {
		f.Add(s)
	}
	box, err := agent.NewToolbox(calc(), echo())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, args string) {
		out, isErr := box.Call(context.Background(), agent.ToolCall{ID: "c", Name: "calc", Arguments: args})
		if !isErr {
			var v map[string]any
			if json.Unmarshal([]byte(args), &v) != nil && strings.TrimSpace(args) != "" {
				t.Errorf("invalid JSON %q accepted: %q", args, out)
			}
		} else if !strings.HasPrefix(out, "error: ") {
			t.Errorf("error result without prefix: %q", out)
		}
	})
}
