package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/agent"
	"github.com/dsv32/dsv32/agent/agenttest"
)

// trajectory builds system, question, then n tool rounds; round i (from 1)
// has reasoning "r{i}" and, when i is even, two parallel calls.
func trajectory(n int) []agent.Message {
	msgs := []agent.Message{{Role: agent.RoleSystem, Content: "sys"}, {Role: agent.RoleUser, Content: "Q"}}
	for i := 1; i <= n; i++ {
		calls := []agent.ToolCall{call(fmt.Sprintf("c%da", i), "echo", `{"text":"x"}`)}
		if i%2 == 0 {
			calls = append(calls, call(fmt.Sprintf("c%db", i), "echo", `{"text":"y"}`))
		}
		msgs = append(msgs, agent.Message{Role: agent.RoleAssistant, ReasoningContent: fmt.Sprintf("r%d", i), ToolCalls: calls})
		for _, c := range calls {
			msgs = append(msgs, agent.Message{Role: agent.RoleTool, ToolCallID: c.ID, Content: "result " + c.ID})
		}
	}
	return msgs
}

// describe lists messages compactly: roles, with reasoning or call ids.
func describe(msgs []agent.Message) string {
	var parts []string
	for _, m := range msgs {
		switch m.Role {
		case agent.RoleAssistant:
			parts = append(parts, "A:"+m.ReasoningContent+m.Content)
		case agent.RoleTool:
			parts = append(parts, "T:"+m.ToolCallID)
		default:
			parts = append(parts, m.Role[:1]+":"+m.Content)
		}
	}
	return strings.Join(parts, " ")
}

func TestDiscardToolHistory(t *testing.T) {
	tests := []struct {
		rounds   int
		fraction float64
		want     string
	}{
		{0, 0.75, "s:sys u:Q"},
		{1, 0.75, "s:sys u:Q"},
		{2, 0.75, "s:sys u:Q"},
		{4, 0.75, "s:sys u:Q A:r4 T:c4a T:c4b"},
		{5, 0.75, "s:sys u:Q A:r5 T:c5a"},
		{8, 0.75, "s:sys u:Q A:r7 T:c7a A:r8 T:c8a T:c8b"},
		{4, 0.5, "s:sys u:Q A:r3 T:c3a A:r4 T:c4a T:c4b"},
		{4, 1, "s:sys u:Q"},
		{8, 1, "s:sys u:Q"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%d rounds %.2f", tc.rounds, tc.fraction), func(t *testing.T) {
			in := trajectory(tc.rounds)
			out, err := agent.Discard(tc.fraction).Rewrite(context.Background(), in)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(out); got != tc.want {
				t.Errorf("kept %q\nwant %q", got, tc.want)
			}
			if len(in) != 2+tc.rounds+tc.rounds+tc.rounds/2 {
				t.Error("input changed")
			}
		})
	}
	// Plain assistant messages and later user turns are not tool history.
	msgs := append(trajectory(2), agent.Message{Role: agent.RoleAssistant, Content: "answer"},
		agent.Message{Role: agent.RoleUser, Content: "Q2"})
	msgs = append(msgs, trajectory(1)[2:]...)
	out, _ := agent.Discard(0.5).Rewrite(context.Background(), msgs) // 3 rounds: drop 2
	if got, want := describe(out), "s:sys u:Q A:answer u:Q2 A:r1 T:c1a"; got != want {
		t.Errorf("multi-turn: kept %q, want %q", got, want)
	}
	if _, err := agent.Discard(0).Rewrite(context.Background(), msgs); err == nil {
		t.Error("fraction 0 accepted")
	}
}

func TestThreshold(t *testing.T) {
	tests := []struct {
		share        agent.Threshold
		used, window int
		fire         bool
	}{
		{0, 800, 1000, false}, {0, 801, 1000, true}, {0.5, 501, 1000, true}, {0.5, 500, 1000, false}, {0, 10, 0, false},
	}
	for _, tc := range tests {
		if got := tc.share.Fire(tc.used, tc.window); got != tc.fire {
			t.Errorf("Threshold(%v).Fire(%d, %d) = %v", tc.share, tc.used, tc.window, got)
		}
	}
}

// TestPoliciesInLoop drives the loop over a scripted trajectory whose
// reported context grows 300, 500, 700, 900 tokens with a 1000-token window:
// the policy fires before the fifth call, and the fifth agent request shows
// exactly what it kept.
func TestPoliciesInLoop(t *testing.T) {
	tests := []struct {
		name   string
		policy func(agent.Client) agent.ContextPolicy
		want   string // the history sent after the reset
	}{
		{"discard75", func(agent.Client) agent.ContextPolicy { return agent.Discard(0.75) },
			"s:sys u:Q A:r4 T:c4a"},
		{"discard-all", func(agent.Client) agent.ContextPolicy { return agent.Discard(1) }, "s:sys u:Q"},
		{"summary", func(c agent.Client) agent.ContextPolicy { return &agent.Summary{Client: c} },
			"s:sys u:Q" + agent.SummaryHeader + "SUMMARY"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := agenttest.NewFuncServer(func(n int, req agenttest.Request) agenttest.Reply {
				last := req.Messages[len(req.Messages)-1]
				switch {
				case last["content"] == agent.DefaultSummaryPrompt:
					return agenttest.Reply{Content: "SUMMARY", Usage: agent.Usage{PromptTokens: 900, CompletionTokens: 5}}
				case n < 4:
					return agenttest.Reply{Reasoning: fmt.Sprintf("r%d", n+1),
						ToolCalls: []agent.ToolCall{call(fmt.Sprintf("c%da", n+1), "echo", `{"text":"x"}`)},
						Usage:     agent.Usage{PromptTokens: 280 + 200*n, CompletionTokens: 20}}
				default:
					return agenttest.Reply{Content: "final", Usage: agent.Usage{PromptTokens: 100, CompletionTokens: 5}}
				}
			})
			defer srv.Close()
			client := &agent.HTTPClient{BaseURL: srv.URL}
			var events []agent.Event
			a := &agent.Agent{Client: client, System: "sys", Tools: toolbox(t), Window: 1000, Policy: tc.policy(client),
				OnEvent: func(e agent.Event) { events = append(events, e) }}
			res, err := a.Run(context.Background(), "Q")
			if err != nil {
				t.Fatal(err)
			}
			if res.Answer != "final" || res.Resets != 1 || res.Steps != 5 {
				t.Errorf("result: answer %q resets %d steps %d", res.Answer, res.Resets, res.Steps)
			}
			reqs := srv.Requests()
			after := reqs[len(reqs)-1] // the agent's request after the reset
			var got []agent.Message
			for _, m := range after.Messages {
				msg := agent.Message{Role: m["role"].(string), Content: m["content"].(string)}
				if r, ok := m["reasoning_content"].(string); ok {
					msg.ReasoningContent = r
				}
				if id, ok := m["tool_call_id"].(string); ok {
					msg.ToolCallID = id
				}
				got = append(got, msg)
			}
			if d := describe(got); d != tc.want {
				t.Errorf("kept %q\nwant %q", d, tc.want)
			}
			if tc.name == "summary" {
				sumReq := reqs[4]
				if len(sumReq.Tools) != 0 || len(sumReq.Messages) != 11 {
					t.Errorf("summariser request: %d tools, %d messages", len(sumReq.Tools), len(sumReq.Messages))
				}
			}
			var reset *agent.Event
			for i := range events {
				if events[i].Type == agent.EventReset {
					reset = &events[i]
				}
			}
			if reset == nil || reset.Step != 4 || reset.TokensBefore <= 800 || reset.ContextTokens >= 800 ||
				describe(reset.Messages) != tc.want || reset.Policy != tc.name {
				t.Errorf("reset event %+v", reset)
			}
		})
	}
}

// TestParallel: the baseline picks the answered run with the fewest steps,
// or the fewest-step run a verifier accepts.
func TestParallel(t *testing.T) {
	steps := []int{4, 2, 3, 9} // run 3 exceeds MaxSteps
	answers := []string{"a0", "wrong", "a2", "a3"}
	run := func(ctx context.Context, i int) (agent.Result, error) {
		n := 0
		client := agent.ClientFunc(func(context.Context, agent.Request) (agent.Response, error) {
			n++
			if n < steps[i] {
				return agent.Response{Message: agent.Message{ToolCalls: []agent.ToolCall{call("c", "echo", `{"text":"x"}`)}}}, nil
			}
			return agent.Response{Message: agent.Message{Content: answers[i]}}, nil
		})
		a := &agent.Agent{Client: client, Tools: toolbox(t), MaxSteps: 5}
		return a.Run(ctx, "q")
	}
	pr := agent.Parallel(context.Background(), 4, run, agent.FewestSteps)
	if pr.Best != 1 || pr.Steps != 4+2+3+5 || pr.Runs[3].Stop != agent.StopMaxSteps {
		t.Errorf("fewest steps: best %d, steps %d, stops %v", pr.Best, pr.Steps, pr.Runs[3].Stop)
	}
	pr = agent.Parallel(context.Background(), 4, run, agent.Verified(func(r agent.Result) bool { return r.Answer != "wrong" }))
	if pr.Best != 2 {
		t.Errorf("verified: best %d", pr.Best)
	}
	pr = agent.Parallel(context.Background(), 4, run, agent.Verified(func(agent.Result) bool { return false }))
	if pr.Best != -1 {
		t.Errorf("nothing verified: best %d", pr.Best)
	}
}

func TestTrajectoryRoundTrip(t *testing.T) {
	srv := agenttest.NewServer(
		agenttest.Reply{Reasoning: "think", ToolCalls: []agent.ToolCall{call("c1", "calc", `{"op":"add","a":1,"b":2}`),
			call("c2", "calc", `{"op":"pow"}`)}, Usage: agent.Usage{PromptTokens: 900, CompletionTokens: 10}},
		agenttest.Reply{Content: "3", Usage: agent.Usage{PromptTokens: 30, CompletionTokens: 1}},
	)
	defer srv.Close()
	var buf bytes.Buffer
	traj := agent.NewTrajectory(&buf)
	a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: srv.URL}, Model: "m", System: "sys", Tools: toolbox(t),
		Window: 1000, Policy: agent.Discard(1), OnEvent: traj.Record}
	if _, err := a.Run(context.Background(), "1+2?"); err != nil {
		t.Fatal(err)
	}
	if traj.Err() != nil {
		t.Fatal(traj.Err())
	}
	evs, err := agent.ReadTrajectory(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		k := e.Type
		if e.Message != nil {
			k += ":" + e.Message.Role
		}
		kinds = append(kinds, k)
	}
	want := []string{"start", "message:system", "message:user", "message:assistant", "message:tool", "message:tool",
		"context_reset", "message:assistant", "end"}
	if !reflect.DeepEqual(kinds, want) {
		t.Errorf("events %v\nwant %v", kinds, want)
	}
	if e := evs[5]; !e.IsError || !strings.HasPrefix(e.Message.Content, "error: invalid arguments") {
		t.Errorf("error result event %+v", e)
	}
	if e := evs[3]; e.Usage == nil || e.Usage.PromptTokens != 900 || e.Message.ReasoningContent != "think" || e.Step != 1 {
		t.Errorf("assistant event %+v", e)
	}
	if e := evs[8]; e.Stop != agent.StopAnswer || e.Usage.Total() != 941 || e.Step != 2 {
		t.Errorf("end event %+v", e)
	}
	var out bytes.Buffer
	p := &agent.Printer{W: &out}
	for _, e := range evs {
		p.Print(e)
	}
	for _, s := range []string{"== start model=m tools=calc,echo policy=discard-all window=1000", "[thinking] think",
		`→ calc({"op":"add","a":1,"b":2}) [c1]`, "← calc [c1]", "← ERROR calc [c2]", "== context reset (discard-all) at step 1",
		"== end: answer after 2 steps, 930 prompt + 11 completion tokens"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("replay lacks %q:\n%s", s, out.String())
		}
	}
	if _, err := agent.ReadTrajectory(strings.NewReader("{\"type\":\"start\"}\nnot json\n")); err == nil ||
		!strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v", err)
	}
}

// TestNothingToDiscard: a policy that cannot free anything does not count
// as a reset, and a full window then stops the run.
func TestNothingToDiscard(t *testing.T) {
	srv := agenttest.NewServer(
		agenttest.Reply{Content: "fine", Usage: agent.Usage{PromptTokens: 900, CompletionTokens: 10}},
	)
	defer srv.Close()
	a := &agent.Agent{Client: &agent.HTTPClient{BaseURL: srv.URL}, Window: 100, Policy: agent.Discard(1)}
	res, err := a.Run(context.Background(), strings.Repeat("long question ", 30)) // ~110 estimated tokens
	if err != nil || res.Stop != agent.StopContext || res.Resets != 0 || len(srv.Requests()) != 0 {
		t.Errorf("got %+v, %v, %d requests", res, err, len(srv.Requests()))
	}
	a.Window = 130 // over 80% but not full: the run goes on
	res, err = a.Run(context.Background(), strings.Repeat("long question ", 30))
	if err != nil || res.Stop != agent.StopAnswer || res.Resets != 0 {
		t.Errorf("got %+v, %v", res, err)
	}
}
