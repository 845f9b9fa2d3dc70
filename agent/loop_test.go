package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dsv32/dsv32/agent"
	"github.com/dsv32/dsv32/agent/agenttest"
)

// calc is a test tool with a schema that exercises the validator.
func calc() agent.Tool {
	return agent.Func(agent.ToolSpec{Name: "calc", Description: "add or multiply",
		Parameters: json.RawMessage(`{"type":"object","properties":{"op":{"type":"string","enum":["add","mul"]},` +
			`"a":{"type":"integer","minimum":0},"b":{"type":"integer","maximum":1000}},"required":["op","a","b"],` +
			`"additionalProperties":false}`)},
		func(_ context.Context, raw json.RawMessage) (string, error) {
			var a struct {
				Op   string
				A, B int
			}
			if err := json.Unmarshal(raw, &a); err != nil {
				return "", err
			}
			if a.Op == "add" {
				return fmt.Sprint(a.A + a.B), nil
			}
			return fmt.Sprint(a.A * a.B), nil
		})
}

func echo() agent.Tool {
	return agent.Func(agent.ToolSpec{Name: "echo", Parameters: json.RawMessage(
		`{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}`)},
		func(_ context.Context, raw json.RawMessage) (string, error) {
			var a struct{ Text string }
			json.Unmarshal(raw, &a)
			if a.Text == "panic" {
				panic("boom")
			}
			if a.Text == "fail" {
				return "", errors.New("echo refuses")
			}
			return a.Text, nil
		})
}

func toolbox(t *testing.T) *agent.Toolbox {
	t.Helper()
	b, err := agent.NewToolbox(calc(), echo())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func call(id, name, args string) agent.ToolCall {
	return agent.ToolCall{ID: id, Name: name, Arguments: args}
}

// roles summarises a wire message list as "role[:tool_call_id]" strings.
func roles(msgs []map[string]any) []string {
	var out []string
	for _, m := range msgs {
		s := m["role"].(string)
		if id, ok := m["tool_call_id"]; ok {
			s += ":" + id.(string)
		}
		out = append(out, s)
	}
	return out
}

func TestParallelToolCalls(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			srv := agenttest.NewServer(
				agenttest.Reply{Reasoning: "need two things", Content: "Working.", ToolCalls: []agent.ToolCall{
					call("c1", "calc", `{"op":"mul","a":6,"b":7}`), call("c2", "echo", `{"text":"héllo"}`)},
					Usage: agent.Usage{PromptTokens: 50, CompletionTokens: 20}},
				agenttest.Reply{Reasoning: "done", Content: "42 and héllo", Usage: agent.Usage{PromptTokens: 90, CompletionTokens: 5}},
			)
			defer srv.Close()
			var deltas strings.Builder
			a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: srv.URL, Stream: stream,
				OnDelta: func(d agent.Delta) { deltas.WriteString(d.Reasoning + d.Content) }},
				Model: "m", System: "sys", Tools: toolbox(t)}
			res, err := a.Run(context.Background(), "question")
			if err != nil {
				t.Fatal(err)
			}
			if res.Answer != "42 and héllo" || res.Stop != agent.StopAnswer || res.Steps != 2 {
				t.Errorf("result %+v", res)
			}
			if res.Usage != (agent.Usage{PromptTokens: 140, CompletionTokens: 25}) {
				t.Errorf("usage %+v", res.Usage)
			}
			reqs := srv.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests", len(reqs))
			}
			if got, want := roles(reqs[1].Messages), []string{"system", "user", "assistant", "tool:c1", "tool:c2"}; !reflect.DeepEqual(got, want) {
				t.Errorf("second request roles %v, want %v", got, want)
			}
			asst := reqs[1].Messages[2]
			if asst["reasoning_content"] != "need two things" || asst["content"] != "Working." {
				t.Errorf("assistant message sent back as %v", asst)
			}
			calls := asst["tool_calls"].([]any)
			if len(calls) != 2 || calls[1].(map[string]any)["function"].(map[string]any)["arguments"] != `{"text":"héllo"}` {
				t.Errorf("tool calls sent back as %v", calls)
			}
			if reqs[1].Messages[3]["content"] != "42" || reqs[1].Messages[4]["content"] != "héllo" {
				t.Errorf("tool results %v %v", reqs[1].Messages[3], reqs[1].Messages[4])
			}
			if len(reqs[0].Tools) != 2 || reqs[0].Stream != stream {
				t.Errorf("first request tools %v stream %v", reqs[0].Tools, reqs[0].Stream)
			}
			if stream && deltas.String() != "need two thingsWorking.doneWorking."[:0]+"need two thingsWorking.done42 and héllo" {
				t.Errorf("deltas %q", deltas.String())
			}
		})
	}
}

// TestMalformedArguments: every kind of bad call becomes an error result the
// model sees, and the run goes on.
func TestMalformedArguments(t *testing.T) {
	tests := []struct {
		name string
		call agent.ToolCall
		want string
	}{
		{"not json", call("c", "calc", `{"op":"add",`), "error: malformed arguments for calc: not valid JSON: unexpected EOF"},
		{"trailing", call("c", "calc", `{"op":"add","a":1,"b":2} {}`), "error: malformed arguments for calc: not valid JSON: trailing data after the object"},
		{"array", call("c", "calc", `[1,2]`), "error: malformed arguments for calc: arguments must be a JSON object, got array"},
		{"missing", call("c", "calc", `{"op":"add","a":1}`), `error: invalid arguments for calc: $: missing required property "b"`},
		{"enum", call("c", "calc", `{"op":"pow","a":1,"b":2}`), `error: invalid arguments for calc: $.op: "pow" is not one of ["add","mul"]`},
		{"type", call("c", "calc", `{"op":"add","a":"1","b":2}`), "error: invalid arguments for calc: $.a: expected integer, got string"},
		{"fraction", call("c", "calc", `{"op":"add","a":1.5,"b":2}`), "error: invalid arguments for calc: $.a: expected integer, got number"},
		{"minimum", call("c", "calc", `{"op":"add","a":-1,"b":2}`), "error: invalid arguments for calc: $.a: -1 is less than the minimum 0"},
		{"maximum", call("c", "calc", `{"op":"add","a":1,"b":2000}`), "error: invalid arguments for calc: $.b: 2000 is greater than the maximum 1000"},
		{"extra", call("c", "calc", `{"op":"add","a":1,"b":2,"c":3}`), `error: invalid arguments for calc: $: unknown property "c"`},
		{"unknown tool", call("c", "rm", `{}`), `error: unknown tool "rm" (available: calc, echo)`},
		{"tool error", call("c", "echo", `{"text":"fail"}`), "error: echo refuses"},
		{"tool panic", call("c", "echo", `{"text":"panic"}`), "error: tool echo failed internally: boom"},
		{"empty args", call("c", "echo", ``), `error: invalid arguments for echo: $: missing required property "text"`},
		// 2.0 is an integer to JSON schema; the tool sees the model's text as is.
		{"integer as 2.0", call("c", "calc", `{"op":"add","a":2.0,"b":3}`),
			"error: json: cannot unmarshal number 2.0 into Go struct field .A of type int"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := agenttest.NewServer(agenttest.Reply{ToolCalls: []agent.ToolCall{tc.call}}, agenttest.Reply{Content: "ok"})
			defer srv.Close()
			a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: srv.URL}, Tools: toolbox(t)}
			res, err := a.Run(context.Background(), "q")
			if err != nil || res.Answer != "ok" {
				t.Fatalf("run: %+v, %v", res, err)
			}
			got := res.Messages[2]
			if got.Role != agent.RoleTool || got.Content != tc.want || got.ToolCallID != "c" {
				t.Errorf("tool message %+v\nwant content %q", got, tc.want)
			}
		})
	}
}

// TestRetentionEndpoint: talking to an endpoint, the client sends
// reasoning_content on every assistant message, from earlier turns too; the
// server applies the drop rule.
func TestRetentionEndpoint(t *testing.T) {
	srv := agenttest.NewServer(
		agenttest.Reply{Reasoning: "R2a", ToolCalls: []agent.ToolCall{call("c1", "echo", `{"text":"x"}`)}},
		agenttest.Reply{Reasoning: "R2b", ToolCalls: []agent.ToolCall{call("c2", "echo", `{"text":"y"}`)}},
		agenttest.Reply{Reasoning: "R2c", Content: "A2"},
	)
	defer srv.Close()
	think := true
	a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: srv.URL}, Tools: toolbox(t), Thinking: &think}
	history := []agent.Message{
		{Role: agent.RoleUser, Content: "Q1"},
		{Role: agent.RoleAssistant, ReasoningContent: "R1", Content: "A1"},
		{Role: agent.RoleAssistant, Content: "no reasoning here"},
		{Role: agent.RoleUser, Content: "Q2"},
	}
	res, err := a.Continue(context.Background(), history)
	if err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	last := reqs[2].Messages
	want := map[int]string{1: "R1", 2: "", 4: "R2a", 6: "R2b"}
	for i, r := range want {
		got, present := last[i]["reasoning_content"]
		if !present || got != r {
			t.Errorf("message %d (%s): reasoning_content %v (present %v), want %q", i, last[i]["role"], got, present, r)
		}
	}
	if reqs[0].Thinking["type"] != "enabled" {
		t.Errorf("thinking %v", reqs[0].Thinking)
	}
	// The stored history keeps everything.
	if res.Messages[1].ReasoningContent != "R1" || res.Messages[8].ReasoningContent != "R2c" {
		t.Errorf("history lost reasoning: %+v", res.Messages)
	}
}

// dsFormat renders a DeepSeek-V3.2-like prompt (agent.md §1.2, simplified)
// and parses "reasoning</think>content" or "call:NAME:ARGS" completions.
type dsFormat struct{ prompts []string }

func (f *dsFormat) Render(msgs []agent.Message, _ []agent.ToolSpec) (string, error) {
	var b strings.Builder
	for _, m := range msgs {
		switch m.Role {
		case agent.RoleUser:
			b.WriteString("<User>" + m.Content + "<Assistant>")
		case agent.RoleAssistant:
			if m.ReasoningContent != "" {
				b.WriteString("<think>" + m.ReasoningContent + "</think>")
			}
			b.WriteString(m.Content)
			for _, tc := range m.ToolCalls {
				b.WriteString("[call " + tc.Name + "]")
			}
			b.WriteString("<EOS>")
		case agent.RoleTool:
			b.WriteString("<result>" + m.Content + "</result>")
		}
	}
	f.prompts = append(f.prompts, b.String())
	return b.String(), nil
}

func (f *dsFormat) Parse(s string) (agent.Message, error) {
	reasoning, rest, _ := strings.Cut(s, "</think>")
	m := agent.Message{ReasoningContent: reasoning}
	if name, args, ok := strings.Cut(strings.TrimPrefix(rest, "call:"), ":"); ok && strings.HasPrefix(rest, "call:") {
		m.ToolCalls = []agent.ToolCall{{ID: "c" + name, Name: name, Arguments: args}}
	} else {
		m.Content = rest
	}
	return m, nil
}

type scriptGen []string

func (g *scriptGen) Generate(_ context.Context, _ string, _ int) (string, agent.Usage, error) {
	if len(*g) == 0 {
		return "", agent.Usage{}, errors.New("script exhausted")
	}
	s := (*g)[0]
	*g = (*g)[1:]
	return s, agent.Usage{PromptTokens: 10, CompletionTokens: 1}, nil
}

// TestRetentionRendered: rendering its own prompts, the runtime keeps
// reasoning across tool rounds and drops it only when a new user message
// arrives.
func TestRetentionRendered(t *testing.T) {
	f := &dsFormat{}
	gen := &scriptGen{"R1</think>call:echo:{\"text\":\"t1\"}", "R2</think>call:echo:{\"text\":\"t2\"}", "R3</think>A1",
		"R4</think>A2"}
	a := &agent.Agent{Client: agent.PromptClient{Format: f, Generator: gen}, Tools: toolbox(t)}
	res, err := a.Run(context.Background(), "Q1")
	if err != nil || res.Answer != "A1" {
		t.Fatalf("run: %+v %v", res, err)
	}
	want := []string{
		"<User>Q1<Assistant>",
		"<User>Q1<Assistant><think>R1</think>[call echo]<EOS><result>t1</result>",
		"<User>Q1<Assistant><think>R1</think>[call echo]<EOS><result>t1</result><think>R2</think>[call echo]<EOS><result>t2</result>",
	}
	if !reflect.DeepEqual(f.prompts, want) {
		t.Errorf("prompts within one turn:\n%q\nwant\n%q", f.prompts, want)
	}
	// A new user message: all earlier reasoning goes, tool calls and results stay.
	res, err = a.Continue(context.Background(), append(res.Messages, agent.Message{Role: agent.RoleUser, Content: "Q2"}))
	if err != nil || res.Answer != "A2" {
		t.Fatalf("second turn: %+v %v", res, err)
	}
	got := f.prompts[len(f.prompts)-1]
	wantNext := "<User>Q1<Assistant>[call echo]<EOS><result>t1</result>[call echo]<EOS><result>t2</result>A1<EOS><User>Q2<Assistant>"
	if got != wantNext {
		t.Errorf("prompt after a new user message:\n%q\nwant\n%q", got, wantNext)
	}
	if res.Messages[1].ReasoningContent != "R1" {
		t.Error("stored history lost reasoning")
	}
}

func TestDropStaleReasoning(t *testing.T) {
	msgs := []agent.Message{
		{Role: agent.RoleSystem, Content: "s"},
		{Role: agent.RoleUser, Content: "q1"},
		{Role: agent.RoleAssistant, ReasoningContent: "r1", ToolCalls: []agent.ToolCall{call("a", "echo", "{}")}},
		{Role: agent.RoleTool, ToolCallID: "a", Content: "x"},
		{Role: agent.RoleAssistant, ReasoningContent: "r2", Content: "a1"},
		{Role: agent.RoleDeveloper, Content: "q2"},
		{Role: agent.RoleAssistant, ReasoningContent: "r3", ToolCalls: []agent.ToolCall{call("b", "echo", "{}")}},
		{Role: agent.RoleTool, ToolCallID: "b", Content: "y"},
	}
	out := agent.DropStaleReasoning(msgs)
	var got []string
	for _, m := range out {
		got = append(got, m.ReasoningContent)
	}
	if want := []string{"", "", "", "", "", "", "r3", ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("reasoning kept %q, want %q", got, want)
	}
	if msgs[2].ReasoningContent != "r1" || len(out[2].ToolCalls) != 1 || out[3].Content != "x" {
		t.Error("input changed, or a tool call or result dropped")
	}
}

func TestBudgets(t *testing.T) {
	loopCall := agenttest.Reply{ToolCalls: []agent.ToolCall{call("c", "echo", `{"text":"again"}`)},
		Usage: agent.Usage{PromptTokens: 80, CompletionTokens: 20}}
	tests := []struct {
		name  string
		agent agent.Agent
		stop  string
		steps int
	}{
		{"max steps", agent.Agent{MaxSteps: 3}, agent.StopMaxSteps, 3},
		{"token budget", agent.Agent{TokenBudget: 350}, agent.StopTokenBudget, 3},
		{"window without policy", agent.Agent{Window: 300}, agent.StopContext, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := agenttest.NewFuncServer(func(n int, _ agenttest.Request) agenttest.Reply {
				r := loopCall
				r.Usage.PromptTokens = 80 + 100*n // the context grows each step
				return r
			})
			defer srv.Close()
			a := tc.agent
			a.Client = &agent.HTTPClient{BaseURL: srv.URL}
			a.Tools = toolbox(t)
			res, err := a.Run(context.Background(), "q")
			if err != nil {
				t.Fatal(err)
			}
			if res.Stop != tc.stop || res.Steps != tc.steps || len(srv.Requests()) != tc.steps {
				t.Errorf("stop %s after %d steps (%d requests), want %s after %d", res.Stop, res.Steps,
					len(srv.Requests()), tc.stop, tc.steps)
			}
		})
	}
}

func TestEndpointErrors(t *testing.T) {
	srv := agenttest.NewServer(agenttest.Reply{Status: 400, Content: "Missing `reasoning_content` field"})
	defer srv.Close()
	a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: srv.URL + "/v1"}}
	res, err := a.Run(context.Background(), "q")
	if err == nil || !strings.Contains(err.Error(), "HTTP 400: Missing `reasoning_content` field") || res.Stop != agent.StopError {
		t.Errorf("got %v, %+v", err, res)
	}
	// 5xx is retried.
	srv2 := agenttest.NewServer(agenttest.Reply{Status: 503, Content: "busy"}, agenttest.Reply{Content: "fine"})
	defer srv2.Close()
	a = &agent.Agent{Client: &agent.HTTPClient{BaseURL: srv2.URL, Retries: 2, Backoff: 1}}
	if res, err := a.Run(context.Background(), "q"); err != nil || res.Answer != "fine" {
		t.Errorf("retry: %+v %v", res, err)
	}
}

func TestHTTPTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := agenttest.NewFuncServer(func(n int, _ agenttest.Request) agenttest.Reply {
		if n == 0 {
			<-block
		}
		return agenttest.Reply{Content: "late but fine"}
	})
	defer srv.Close()
	defer close(block)
	c := &agent.HTTPClient{BaseURL: srv.URL, Timeout: 50 * time.Millisecond}
	if _, err := c.Complete(context.Background(), agent.Request{}); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("timeout: %v", err)
	}
}
