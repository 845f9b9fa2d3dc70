package agent_test

import (
	"strings"
	"testing"

	"github.com/dsv32/dsv32/agent"
)

func TestReadStream(t *testing.T) {
	tests := []struct {
		name, in string
		want     agent.Message
		finish   string
		err      string
	}{
		{"reasoning content calls",
			"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"th\"}}]}\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"ink\"}}]}\n\n" +
				": ping\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\r\n\r\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"b\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}}]}\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\"\"}}]}}]}\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":1}\"}}]}}]}\n\n" +
				"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n" +
				"data: [DONE]\n\n",
			agent.Message{Role: "assistant", ReasoningContent: "think", Content: "hi",
				ToolCalls: []agent.ToolCall{{ID: "a", Name: "f", Arguments: `{"x":1}`}, {ID: "b", Name: "g", Arguments: "{}"}}},
			"tool_calls", ""},
		{"multi-line data and no final blank line",
			"event: x\ndata: {\"choices\":[{\"index\":0,\n" + "data: \"delta\":{\"content\":\"a\"}}]}\n\ndata: [DONE]",
			agent.Message{Role: "assistant", Content: "a"}, "", ""},
		{"no done", "data: {\"choices\":[]}\n\n", agent.Message{}, "", "stream ended without [DONE]"},
		{"bad json", "data: {nope\n\ndata: [DONE]\n\n", agent.Message{}, "", "stream event 1: decode chunk"},
		{"error chunk", "data: {\"error\":{\"message\":\"overloaded\"}}\n\n", agent.Message{}, "", "stream event 1: endpoint error: overloaded"},
		{"bad index", "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":99999}]}}]}\n\n", agent.Message{}, "", "out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := agent.ReadStream(strings.NewReader(tc.in), nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.FinishReason != tc.finish || resp.Message.Content != tc.want.Content ||
				resp.Message.ReasoningContent != tc.want.ReasoningContent || len(resp.Message.ToolCalls) != len(tc.want.ToolCalls) {
				t.Fatalf("got %+v", resp)
			}
			for i := range tc.want.ToolCalls {
				if resp.Message.ToolCalls[i] != tc.want.ToolCalls[i] {
					t.Errorf("call %d: %+v, want %+v", i, resp.Message.ToolCalls[i], tc.want.ToolCalls[i])
				}
			}
		})
	}
}
