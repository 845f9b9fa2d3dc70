package env

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/chat"
)

// thinking builds a well-formed thinking-mode completion.
func thinking(reasoning, content string) Completion {
	return Completion{Text: reasoning + chat.ThinkEnd + content + chat.EOS, Thinking: true}
}

const toolCall = "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"get_weather\">\n" +
	"<｜DSML｜parameter name=\"city\" string=\"true\">Paris</｜DSML｜parameter>\n" +
	"</｜DSML｜invoke>\n</｜DSML｜function_calls>" + chat.EOS

func addExample() Example {
	return Example{Task: "add", Prompt: "123+456", Answer: "579", Verifier: integerVerifier{want: "579"}, FormatCredit: 0.1}
}

func score(t *testing.T, r Reward, ex Example, c Completion) (float64, Details) {
	t.Helper()
	s, d, err := r.Score(context.Background(), ex, c)
	if err != nil {
		t.Fatalf("%s: %v", r.Name(), err)
	}
	return s, d
}

func TestOutcome(t *testing.T) {
	ex := addExample()
	cases := []struct {
		name string
		c    Completion
		want float64
	}{
		{"correct", thinking("4+6=10, carry", "579"), 1},
		{"correct boxed", thinking("…", `The sum is \boxed{579}.`), 1},
		{"correct answer line", thinking("…", "Answer: 579\n"), 1},
		{"correct, plain mode", Completion{Text: "579" + chat.EOS}, 1},
		{"correct, raw", Completion{Text: "579", Raw: true}, 1},
		{"correct, raw with EOS", Completion{Text: "579" + chat.EOS, Raw: true}, 1},
		{"wrong", thinking("…", "578"), 0.1},
		{"wrong, raw", Completion{Text: "1000", Raw: true}, 0.1},
		{"malformed answer", thinking("…", "five hundred"), 0},
		{"empty content", thinking("…", ""), 0},
		{"no EOS (truncated)", Completion{Text: "…</think>579", Thinking: true, Truncated: true}, 0},
		{"no </think>", Completion{Text: "579" + chat.EOS, Thinking: true}, 0},
		{"empty", Completion{}, 0},
		{"tool call only", Completion{Text: "…" + chat.ThinkEnd + toolCall, Thinking: true}, 0},
	}
	for _, c := range cases {
		got, d := score(t, Outcome{}, ex, c.c)
		if got != c.want {
			t.Errorf("%s: %v (%s), want %v", c.name, got, d.Note, c.want)
		}
	}
	// T1 tasks give no format credit.
	seq := Sample(mustLookup(t, "reverse"), Train, 1, 1)[0]
	if got, _ := score(t, Outcome{}, seq, Completion{Text: "1", Raw: true}); got != 0 {
		t.Errorf("wrong reverse scored %v, want 0", got)
	}
}

func TestPositional(t *testing.T) {
	ex := Example{Answer: "12345", Verifier: sequenceVerifier{want: "12345", alphabet: "0123456789"}}
	cases := map[string]float64{
		"12345": 1, "12395": 0.8, "1234": 0.8, "123456": 5.0 / 6, "54321": 0.2, "1 2 3 4 0": 0.8, "": 0, "abc": 0,
	}
	for text, want := range cases {
		got, d := score(t, Positional{}, ex, Completion{Text: text, Raw: true})
		if math.Abs(got-want) > 1e-12 {
			t.Errorf("%q: %v (%s), want %v", text, got, d.Note, want)
		}
	}
}

func TestFormat(t *testing.T) {
	ex := addExample()
	withTools := ex
	withTools.Messages = []chat.Message{
		{Role: chat.RoleSystem, Tools: []chat.Tool{{Type: "function", Function: chat.Function{Name: "get_weather"}}}},
		{Role: chat.RoleUser, Content: "Weather?"},
	}
	otherTools := ex
	otherTools.Messages = []chat.Message{
		{Role: chat.RoleSystem, Tools: []chat.Tool{{Type: "function", Function: chat.Function{Name: "search"}}}},
		{Role: chat.RoleUser, Content: "Weather?"},
	}
	badArgs := strings.Replace(toolCall, `string="true">Paris`, `string="false">Paris`, 1)
	cases := []struct {
		name string
		ex   Example
		c    Completion
		want float64
	}{
		{"thinking and answer", ex, thinking("add the units", "579"), 1},
		{"thinking and tool call", ex, Completion{Text: "need weather" + chat.ThinkEnd + toolCall, Thinking: true}, 1},
		{"declared tool", withTools, Completion{Text: "need weather" + chat.ThinkEnd + toolCall, Thinking: true}, 1},
		{"undeclared tool", otherTools, Completion{Text: "need weather" + chat.ThinkEnd + toolCall, Thinking: true}, 0},
		{"arguments not JSON", ex, Completion{Text: "need weather" + chat.ThinkEnd + badArgs, Thinking: true}, 0},
		{"non-thinking mode", ex, Completion{Text: "579" + chat.EOS}, 1},
		{"blank reasoning", ex, thinking(" \n", "579"), 0},
		{"no </think>", ex, Completion{Text: "579" + chat.EOS, Thinking: true}, 0},
		{"no EOS", ex, Completion{Text: "r" + chat.ThinkEnd + "579", Thinking: true}, 0},
		{"text after EOS", ex, Completion{Text: "r" + chat.ThinkEnd + "579" + chat.EOS + "more", Thinking: true}, 0},
		{"second </think>", ex, thinking("r", "5"+chat.ThinkEnd+"79"), 0},
		{"stray DSML", ex, thinking("r", "<DSML invoke"), 0},
		{"stray role marker", ex, thinking("r", "579<｜User｜>"), 0},
		{"stray <think>", ex, thinking("hmm <think> again", "579"), 0},
		{"raw", ex, Completion{Text: "579", Raw: true}, 0},
		{"empty", ex, Completion{Thinking: true}, 0},
	}
	for _, c := range cases {
		got, d := score(t, Format{}, c.ex, c.c)
		if got != c.want {
			t.Errorf("%s: %v (%s), want %v", c.name, got, d.Note, c.want)
		}
	}
}

func TestLength(t *testing.T) {
	l := Length{Max: 400} // soft band 300–400
	cases := []struct {
		c    Completion
		want float64
	}{
		{Completion{Tokens: 1}, 0},
		{Completion{Tokens: 300}, 0},
		{Completion{Tokens: 301}, -0.01},
		{Completion{Tokens: 350}, -0.5},
		{Completion{Tokens: 400}, -1},
		{Completion{Tokens: 401}, -1},
		{Completion{Tokens: 10, Truncated: true}, -1},
		{Completion{Text: strings.Repeat("é", 350)}, -0.5}, // no token count: runes
		{Completion{}, 0},
	}
	for _, c := range cases {
		got, d := score(t, l, Example{}, c.c)
		if math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%+v: %v (%s), want %v", c.c, got, d.Note, c.want)
		}
	}
	if got, _ := score(t, Length{Max: 100, Cache: 50}, Example{}, Completion{Tokens: 75}); got != -0.5 {
		t.Errorf("explicit cache: %v, want -0.5", got)
	}
	if got, _ := score(t, Length{Max: 3}, Example{}, Completion{Tokens: 3}); got != -1 {
		t.Errorf("tiny max: %v, want -1", got)
	}
	if got, _ := score(t, Length{}, Example{}, Completion{Tokens: 1e6, Truncated: true}); got != 0 {
		t.Errorf("off: %v, want 0", got)
	}
}

func TestLanguage(t *testing.T) {
	en := Example{Prompt: "What is the capital of France?"}
	zh := Example{Prompt: "法国的首都是哪里？"}
	ru := Example{Prompt: "Какая столица Франции?"}
	cases := []struct {
		name string
		ex   Example
		c    Completion
		want float64
	}{
		{"english", en, thinking("The capital is Paris.", "Paris."), 1},
		{"chinese", zh, thinking("首都是巴黎。", "巴黎"), 1},
		{"chinese reasoning in english", zh, thinking("the capital is", "巴黎"), 2.0 / 5},
		{"russian", ru, thinking("Столица — Париж.", "Париж"), 1},
		{"russian prompt, english answer", ru, thinking("Paris", "Paris"), 0},
		{"mixed", en, thinking("Paris Париж", ""), 0.5},
		{"no words in response", en, thinking("42", "42"), 1},
		{"no words in prompt", Example{Prompt: "123+456"}, thinking("sum", "579"), 1},
		{"combining marks", Example{Prompt: "नमस्ते दुनिया"}, thinking("नमस्ते", "hello"), 0.5},
		{"unparsable falls back to text", en, Completion{Text: "Paris Париж" + chat.EOS, Thinking: true}, 0.5},
		{"raw", ru, Completion{Text: "Париж", Raw: true}, 1},
		{"user messages only", Example{Messages: []chat.Message{
			{Role: chat.RoleSystem, Content: "You are a helpful assistant who answers in English."},
			{Role: chat.RoleUser, Content: "Столица Франции?"},
		}}, thinking("Париж", "Париж"), 1},
	}
	for _, c := range cases {
		got, d := score(t, Language{}, c.ex, c.c)
		if math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: %v (%s), want %v", c.name, got, d.Note, c.want)
		}
	}
}

type failing struct{}

func (failing) Name() string { return "judge" }
func (failing) Score(context.Context, Example, Completion) (float64, Details, error) {
	return 0, Details{}, errors.New("unreachable")
}

func TestSum(t *testing.T) {
	ex := addExample()
	c := thinking("add", "579")
	c.Tokens = 350
	s := Sum{{Outcome{}, 1}, {Length{Max: 400}, 1}, {Format{}, 0.5}}
	got, d := score(t, s, ex, c)
	if want := 1 - 0.5 + 0.5; math.Abs(got-want) > 1e-12 {
		t.Errorf("sum %v, want %v", got, want)
	}
	if len(d.Parts) != 3 || d.Parts[1].Name != "length" || d.Parts[1].Score != -0.5 || d.Parts[2].Weight != 0.5 {
		t.Errorf("parts %+v", d.Parts)
	}
	if got, _ := score(t, Sum{}, ex, c); got != 0 {
		t.Errorf("empty sum %v", got)
	}
	if _, _, err := (Sum{{Outcome{}, 1}, {failing{}, 1}}).Score(context.Background(), ex, c); err == nil || !strings.Contains(err.Error(), "judge") {
		t.Errorf("error %v, want the judge's", err)
	}
	// Details marshal for JSON-lines logs.
	if _, err := json.Marshal(d); err != nil {
		t.Error(err)
	}
}

func TestDefaultReward(t *testing.T) {
	if s := DefaultReward(64); len(s) != 1 || s[0].Reward.Name() != "outcome" {
		t.Errorf("ladder default %+v", s)
	}
	s := DefaultReward(1024)
	if len(s) != 2 || s[1].Reward != (Length{Max: 1024}) || s[1].Weight != 1 {
		t.Errorf("chat default %+v", s)
	}
}

// TestRewardsLargeInput scores pathological 256 KiB completions with every
// reward: each must come back (in linear time; a quadratic step here would
// take minutes) with a score in range.
func TestRewardsLargeInput(t *testing.T) {
	all := Sum{{Outcome{}, 1}, {Positional{}, 1}, {Format{}, 1}, {Length{Max: 64}, 1}, {Language{}, 1}}
	for _, unit := range []string{`\boxed{`, "{", "}", "(", "Answer:", "<answer>", "\n", "Paris 巴黎 ", "9", chat.ThinkEnd} {
		text := strings.Repeat(unit, 1<<18/len(unit))
		for _, ex := range rewardExamples(t)[1:3] {
			for _, c := range []Completion{{Text: text, Thinking: true}, {Text: text + chat.EOS}, {Text: text, Raw: true}} {
				if _, _, err := all.Score(context.Background(), ex, c); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func TestGrade(t *testing.T) {
	ex := addExample()
	cases := []struct {
		c      Completion
		want   Verdict
		answer string
	}{
		{thinking("r", "Answer: 579"), Correct, "579"},
		{thinking("r", "Answer: 57"), Wrong, "57"},
		{thinking("r", "Answer: fifty"), Malformed, "fifty"},
		{thinking("r", ""), Malformed, ""},
		{Completion{Text: "579", Thinking: true}, Malformed, ""},
	}
	for _, c := range cases {
		if v, a := Grade(ex, c.c); v != c.want || a != c.answer {
			t.Errorf("%q: %s %q, want %s %q", c.c.Text, v, a, c.want, c.answer)
		}
	}
}
