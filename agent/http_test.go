package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/agent"
)

// TestLenientResponses: arguments sent as an object instead of a string, and
// missing or repeated call ids, still make a usable history.
func TestLenientResponses(t *testing.T) {
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if len(bodies) == 1 {
			io.WriteString(w, `{"choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":null,`+
				`"tool_calls":[{"type":"function","function":{"name":"echo","arguments":{"text":"a"}}},`+
				`{"id":"x","type":"function","function":{"name":"echo","arguments":"{\"text\":\"b\"}"}},`+
				`{"id":"x","type":"function","function":{"name":"echo","arguments":null}}]}}]}`)
			return
		}
		io.WriteString(w, `{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"done"}}],`+
			`"usage":{"prompt_tokens":3,"completion_tokens":1}}`)
	}))
	defer srv.Close()
	a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: srv.URL}, Tools: toolbox(t)}
	res, err := a.Run(context.Background(), "q")
	if err != nil || res.Answer != "done" {
		t.Fatalf("%+v %v", res, err)
	}
	calls := res.Messages[1].ToolCalls
	if calls[0].ID != "call_1_0" || calls[0].Arguments != `{"text":"a"}` || calls[1].ID != "x" || calls[2].ID != "call_1_2" {
		t.Errorf("calls %+v", calls)
	}
	var sent struct {
		Messages []struct {
			Role       string  `json:"role"`
			Content    *string `json:"content"`
			ToolCallID string  `json:"tool_call_id"`
			ToolCalls  []struct {
				ID       string
				Function struct{ Arguments string }
			} `json:"tool_calls"`
		}
	}
	if err := json.Unmarshal([]byte(bodies[1]), &sent); err != nil {
		t.Fatal(err)
	}
	m := sent.Messages
	if m[1].Content == nil || m[1].ToolCalls[2].Function.Arguments != "{}" || m[2].ToolCallID != "call_1_0" ||
		m[4].ToolCallID != "call_1_2" || !strings.HasPrefix(*m[4].Content, "error: invalid arguments for echo") {
		t.Errorf("sent back %s", bodies[1])
	}
}
