package chat

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

type parseCase struct {
	Name    string `json:"name"`
	Text    string `json:"text"`
	Options struct {
		ThinkingMode string `json:"thinking_mode"`
	} `json:"options"`
	Expected *struct {
		Role             Role       `json:"role"`
		Content          string     `json:"content"`
		ReasoningContent string     `json:"reasoning_content"`
		ToolCalls        []ToolCall `json:"tool_calls"`
	} `json:"expected"`
	ExpectedError *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"expected_error"`
}

func (c parseCase) thinking(t testing.TB) bool {
	thinking, err := thinkingMode(c.Options.ThinkingMode)
	if err != nil {
		t.Fatal(err)
	}
	return thinking
}

func (c parseCase) want() Message {
	e := c.Expected
	m := Message{Role: e.Role, Content: e.Content, ReasoningContent: e.ReasoningContent}
	if len(e.ToolCalls) > 0 {
		m.ToolCalls = e.ToolCalls
	}
	return m
}

func TestParseFixtures(t *testing.T) {
	cases := readJSONL[parseCase](t, "parse_cases.jsonl")
	if len(cases) != 31 {
		t.Errorf("got %d parse cases, want 31", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			got, err := Parse(c.Text, c.thinking(t))
			if c.ExpectedError != nil {
				if err == nil {
					t.Fatalf("want error %s(%q), got %+v", c.ExpectedError.Type, c.ExpectedError.Message, got)
				}
				var pe *ParseError
				if !errors.As(err, &pe) {
					t.Errorf("error %v is not a *ParseError", err)
				}
				t.Logf("rejected as expected: %v (reference: %q)", err, c.ExpectedError.Message)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := c.want(); !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestParseQuirks pins down what the reference accepts beyond the fixtures.
func TestParseQuirks(t *testing.T) {
	fc := "\n\n<｜DSML｜function_calls>\n"
	tests := []struct {
		name, text string
		thinking   bool
		want       *Message // nil: an error
	}{
		{"block ends after its tag", "Hi\n\n<｜DSML｜function_calls", false, &Message{Role: RoleAssistant, Content: "Hi"}},
		{"empty block", fc + "</｜DSML｜function_calls><｜end▁of▁sentence｜>", false, &Message{Role: RoleAssistant}},
		{"text ends inside an invoke head", fc + "<｜DSML｜invoke name=\"f\">\n", false,
			&Message{Role: RoleAssistant, ToolCalls: []ToolCall{newToolCall("f", nil)}}},
		{"text ends after a parameter", fc + "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">x</｜DSML｜parameter>\n", false,
			&Message{Role: RoleAssistant, ToolCalls: []ToolCall{newToolCall("f", []param{{"a", "x", true}})}}},
		{"text ends after an invoke close tag", fc + "<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke", false,
			&Message{Role: RoleAssistant, ToolCalls: []ToolCall{newToolCall("f", nil)}}},
		{"text ends after an invoke", fc + "<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n", false, nil},
		{"text ends inside a parameter", fc + "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">x<", false, nil},
		{"key with a quote", fc + "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"maybe\">\" string=\"true\">v</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", false,
			&Message{Role: RoleAssistant, ToolCalls: []ToolCall{newToolCall("f", []param{{`a" string="maybe">`, "v", true}})}}},
		{"newline before the parameter close", fc + "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"false\">1<\n/｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", false,
			&Message{Role: RoleAssistant, ToolCalls: []ToolCall{newToolCall("f", []param{{"a", "1", false}})}}},
		{"whitespace before the name", fc + "<｜DSML｜invoke\u3000 name=\"f\">\n</｜DSML｜invoke>\n</｜DSML｜function_calls>", false,
			&Message{Role: RoleAssistant, ToolCalls: []ToolCall{newToolCall("f", nil)}}},
		{"eos in reasoning", "a<｜end▁of▁sentence｜></think>b<｜end▁of▁sentence｜>", true, nil},
		{"bos in content", "<｜begin▁of▁sentence｜>b<｜end▁of▁sentence｜>", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.text, tt.thinking)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("want an error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, *tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, *tt.want)
			}
		})
	}
}

// TestEncodeParseRoundTrip renders assistant messages alone (with the rest of
// the conversation as context) and parses the text back.
func TestEncodeParseRoundTrip(t *testing.T) {
	for _, c := range readJSONL[encodeCase](t, "encode_cases.jsonl") {
		if c.ExpectedError != nil {
			continue
		}
		thinking, _ := thinkingMode(c.Options.ThinkingMode)
		all := append(append([]Message(nil), c.Context...), c.Messages...)
		last := -1
		for i, m := range all {
			if m.Role == RoleUser || m.Role == RoleDeveloper {
				last = i
			}
		}
		for i := last + 1; i < len(all); i++ {
			m := all[i]
			if m.Role != RoleAssistant {
				continue
			}
			text, err := Encode([]Message{m}, Options{Thinking: thinking, Context: all[:i]})
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			got, err := Parse(text, thinking)
			if err != nil {
				if strings.Contains(m.Content+m.ReasoningContent, "<") || strings.Contains(m.Content, DSML) {
					continue // content with special tokens cannot round-trip
				}
				t.Errorf("%s message %d: %v\n%q", c.Name, i, err, text)
				continue
			}
			if !thinking {
				m.ReasoningContent = ""
			}
			if got.Content != m.Content || got.ReasoningContent != m.ReasoningContent || len(got.ToolCalls) != len(m.ToolCalls) {
				t.Errorf("%s message %d: got %+v, want %+v", c.Name, i, got, m)
				continue
			}
			for k, call := range m.ToolCalls {
				want, _ := pyJSON(call.Function.Arguments)
				if g := got.ToolCalls[k].Function; g.Name != call.Function.Name || g.Arguments != want {
					t.Errorf("%s message %d call %d: got %+v, want %s %s", c.Name, i, k, g, call.Function.Name, want)
				}
			}
		}
	}
}
