package chat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// readJSONL decodes testdata/chat/<name>, one record per line.
func readJSONL[T any](t testing.TB, name string) []T {
	t.Helper()
	f, err := os.Open("../testdata/chat/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for line := 1; sc.Scan(); line++ {
		var rec T
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s line %d: %v", name, line, err)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

type encodeCase struct {
	Name     string    `json:"name"`
	Messages []Message `json:"messages"`
	Context  []Message `json:"context"`
	Options  struct {
		ThinkingMode string `json:"thinking_mode"`
		DropThinking bool   `json:"drop_thinking"`
		AddBOS       bool   `json:"add_default_bos_token"`
	} `json:"options"`
	ExpectedPrompt *string `json:"expected_prompt"`
	ExpectedError  *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"expected_error"`
}

// thinkingMode maps the official thinking_mode string onto Options.Thinking.
// Any other mode cannot be expressed in Options, so it is rejected here.
func thinkingMode(mode string) (bool, error) {
	switch mode {
	case "thinking":
		return true, nil
	case "chat":
		return false, nil
	}
	return false, fmt.Errorf("invalid thinking_mode %q", mode)
}

func TestEncodeFixtures(t *testing.T) {
	cases := readJSONL[encodeCase](t, "encode_cases.jsonl")
	if len(cases) != 61 {
		t.Errorf("got %d encode cases, want 61", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			thinking, err := thinkingMode(c.Options.ThinkingMode)
			var got string
			if err == nil {
				got, err = Encode(c.Messages, Options{
					Thinking:     thinking,
					DropThinking: c.Options.DropThinking,
					AddBOS:       c.Options.AddBOS,
					Context:      c.Context,
				})
			}
			if c.ExpectedError != nil {
				if err == nil {
					t.Fatalf("want error %s(%q), got prompt %q", c.ExpectedError.Type, c.ExpectedError.Message, got)
				}
				t.Logf("rejected as expected: %v (reference: %s %q)", err, c.ExpectedError.Type, c.ExpectedError.Message)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := *c.ExpectedPrompt; got != want {
				i := firstDiff(got, want)
				t.Errorf("prompt differs at byte %d of %d:\n got  …%q\n want …%q", i, len(want), around(got, i), around(want, i))
			}
		})
	}
}

func firstDiff(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

func around(s string, i int) string {
	lo, hi := max(0, i-40), min(len(s), i+60)
	return s[lo:hi]
}

func TestEncodeErrors(t *testing.T) {
	user := Message{Role: RoleUser, Content: "hi"}
	call := func(args string) Message {
		return Message{Role: RoleAssistant, ToolCalls: []ToolCall{{Type: "function", Function: FunctionCall{Name: "f", Arguments: args}}}}
	}
	tests := []struct {
		name     string
		messages []Message
		opts     Options
		want     string // substring of the error
	}{
		{"unknown role", []Message{{Role: "robot"}}, Options{}, `unknown role "robot"`},
		{"empty role", []Message{user, {Content: "x"}}, Options{}, "messages[1]: unknown role"},
		{"unknown role in context", []Message{user}, Options{Context: []Message{{Role: "x"}}}, "context[0]"},
		{"orphan tool", []Message{{Role: RoleTool, Content: "r"}}, Options{}, "without a preceding assistant"},
		{"tool after user", []Message{user, {Role: RoleTool}}, Options{}, "without a preceding assistant"},
		{"too many results", []Message{user, call("{}"), {Role: RoleTool}, {Role: RoleTool}}, Options{}, "tool result 2 for messages[1], which has 1 tool calls"},
		{"bad arguments", []Message{user, call("{")}, Options{}, `function "f" arguments: invalid JSON`},
		{"arguments not an object", []Message{user, call("[1]")}, Options{}, "want a JSON object"},
		{"empty arguments", []Message{user, call("")}, Options{}, "invalid JSON"},
		{"developer empty", []Message{{Role: RoleDeveloper}}, Options{}, "developer message has empty content"},
		{"thinking without reasoning", []Message{user, {Role: RoleAssistant, Content: "a"}}, Options{Thinking: true}, "needs reasoning_content or tool_calls"},
		{"bad tool schema", []Message{{Role: RoleSystem, Tools: []Tool{{Function: Function{Name: "f", Parameters: json.RawMessage("{x")}}}}}, Options{}, "tools[0] (f)"},
		{"tool without function", []Message{{Role: RoleSystem, Tools: []Tool{{Type: "function"}}}}, Options{}, "tools[0] has no function"},
		{"bad response format", []Message{{Role: RoleSystem, ResponseFormat: json.RawMessage("nope")}}, Options{}, "response_format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Encode(tt.messages, tt.opts)
			if err == nil {
				t.Fatalf("want error containing %q, got prompt %q", tt.want, got)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestEncodeFalsyResponseFormat(t *testing.T) {
	// Python's `if response_format:` skips empty and false-like values.
	for _, rf := range []string{`{}`, `null`, `[]`, `""`, `0`, `false`} {
		got, err := Encode([]Message{{Role: RoleSystem, Content: "s", ResponseFormat: json.RawMessage(rf)}}, Options{})
		if err != nil || got != "s" {
			t.Errorf("response_format %s: got %q, %v; want \"s\"", rf, got, err)
		}
	}
}

func TestMessageContentParts(t *testing.T) {
	tests := []struct {
		json, want, err string
	}{
		{`{"role":"user","content":"hi"}`, "hi", ""},
		{`{"role":"user","content":null}`, "", ""},
		{`{"role":"user"}`, "", ""},
		{`{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}`, "a\nb", ""},
		{`{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}`, "", `type "image_url"`},
		{`{"role":"user","content":5}`, "", "want a string or an array"},
	}
	for _, tt := range tests {
		var m Message
		err := json.Unmarshal([]byte(tt.json), &m)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want one containing %q", tt.json, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.json, err)
		case tt.err == "" && m.Content != tt.want:
			t.Errorf("%s: content %q, want %q", tt.json, m.Content, tt.want)
		}
	}
}

func TestFunctionKeyOrder(t *testing.T) {
	in := `{"parameters":{"type":"object","properties":{"b":{},"a":{}}},"strict":true,"name":"f","description":"d <&>"}`
	var f Function
	if err := json.Unmarshal([]byte(in), &f); err != nil {
		t.Fatal(err)
	}
	if f.Name != "f" || f.Description != "d <&>" {
		t.Fatalf("fields %+v", f)
	}
	got, err := f.pyJSON()
	want := `{"parameters": {"type": "object", "properties": {"b": {}, "a": {}}}, "strict": true, "name": "f", "description": "d <&>"}`
	if err != nil || got != want {
		t.Errorf("pyJSON = %s, %v\nwant %s", got, err, want)
	}
	out, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back Function
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if got2, _ := back.pyJSON(); got2 != want {
		t.Errorf("after a JSON round trip: %s", got2)
	}
	built := Function{Name: "g", Parameters: json.RawMessage(`{"type":"object"}`)}
	if got, _ := built.pyJSON(); got != `{"name": "g", "parameters": {"type": "object"}}` {
		t.Errorf("built in Go: %s", got)
	}
}

func TestAttachTools(t *testing.T) {
	tools := []Tool{{Type: "function", Function: Function{Name: "f"}}}
	user := Message{Role: RoleUser, Content: "q"}
	sys := Message{Role: RoleSystem, Content: "s"}

	got, err := AttachTools([]Message{user}, tools, nil)
	if err != nil || len(got) != 2 || got[0].Role != RoleSystem || len(got[0].Tools) != 1 {
		t.Errorf("no system message: %+v, %v", got, err)
	}
	in := []Message{sys, user}
	got, err = AttachTools(in, tools, json.RawMessage(`{"type":"json_object"}`))
	if err != nil || len(got) != 2 || len(got[0].Tools) != 1 || got[0].ResponseFormat == nil {
		t.Errorf("system message: %+v, %v", got, err)
	}
	if len(in[0].Tools) != 0 {
		t.Error("AttachTools modified its input")
	}
	if _, err := AttachTools(got, tools, nil); err == nil {
		t.Error("want an error for tools given twice")
	}
}
