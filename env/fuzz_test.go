package env

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/chat"
)

// FuzzParseExpr checks that the Countdown parser never panics, that what it
// accepts prints and parses back to the same value and numbers, and that
// the verifier agrees with it.
func FuzzParseExpr(f *testing.F) {
	for _, s := range []string{"1", "(25-7)*3-8", "48/4/2", "7/(3-3)", "2*(3+(4-1))", "6×7÷2−1",
		"999999999999*999999999999", "((1)", "-1", "1 2", "", "(((((((1)))))))", "1+2+3+4+5+6+7+8+9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseExpr(s)
		if err != nil {
			if !errors.Is(err, errExprSyntax) {
				t.Fatalf("%q: parse error %v is not a syntax error", s, err)
			}
			return
		}
		v, err := n.eval()
		if err != nil && !errors.Is(err, errOverflow) && !errors.Is(err, errDivZero) && !errors.Is(err, errInexact) {
			t.Fatalf("%q: eval error %v", s, err)
		}
		back, perr := parseExpr(n.String())
		if perr != nil {
			if strings.Contains(perr.Error(), "nested deeper") || strings.Contains(perr.Error(), "longer than") {
				return // full parenthesisation can exceed the limits the input met
			}
			t.Fatalf("%q printed as %q does not parse: %v", s, n.String(), perr)
		}
		v2, err2 := back.eval()
		if v2 != v || (err == nil) != (err2 == nil) {
			t.Fatalf("%q = %d, %v but its print %q = %d, %v", s, v, err, n.String(), v2, err2)
		}
		nums := n.numbers(nil)
		if err == nil {
			got := countdownVerifier{numbers: nums, target: v}.Verify(s)
			if got != Correct && !strings.Contains(s, "=") {
				t.Fatalf("%q with its own numbers %v and value %d is %s", s, nums, v, got)
			}
		}
	})
}

// rewardExamples are the examples the reward fuzzer scores completions of.
func rewardExamples(tb testing.TB) []Example {
	var exs []Example
	for _, spec := range []string{"reverse", "add", "countdown", "bandit"} {
		exs = append(exs, Sample(mustLookup(tb, spec), Train, 1, 1)[0])
	}
	return append(exs,
		Example{Prompt: "法国的首都是哪里？", Answer: "巴黎"},
		Example{Messages: []chat.Message{
			{Role: chat.RoleSystem, Tools: []chat.Tool{{Type: "function", Function: chat.Function{Name: "get_weather"}}}},
			{Role: chat.RoleUser, Content: "Weather in Paris?"},
		}},
	)
}

// FuzzRewards checks that no reward panics or fails on any completion text,
// and that every score is finite and in its documented range.
func FuzzRewards(f *testing.F) {
	for _, s := range []string{"", "579", "r" + chat.ThinkEnd + "579" + chat.EOS, `\boxed{`, "Answer:",
		"<answer></answer>", "r" + chat.ThinkEnd + toolCall, chat.EOS + chat.EOS, "\xff\xfe" + chat.ThinkEnd,
		"(25-7)*3-8=46", "Париж 巴黎 नमस्ते", strings.Repeat("(", 200) + "1"} {
		f.Add(s, true, false, 10, false)
		f.Add(s, false, true, 0, true)
	}
	exs := rewardExamples(f)
	all := Sum{{Outcome{}, 1}, {Positional{}, 1}, {Format{}, 1}, {Length{Max: 64}, 1}, {Language{}, 1}}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, text string, thinking, raw bool, tokens int, truncated bool) {
		c := Completion{Text: text, Thinking: thinking, Raw: raw, Tokens: tokens, Truncated: truncated}
		for _, ex := range exs {
			total, d, err := all.Score(ctx, ex, c)
			if err != nil || math.IsNaN(total) || math.IsInf(total, 0) {
				t.Fatalf("%q: %v, %v", text, total, err)
			}
			for _, p := range d.Parts {
				lo, hi := 0.0, 1.0
				if p.Name == "length" {
					lo, hi = -1, 0
				}
				if !(p.Score >= lo && p.Score <= hi) {
					t.Fatalf("%q: %s scored %v, outside [%v, %v]", text, p.Name, p.Score, lo, hi)
				}
			}
		}
	})
}

// FuzzExtractAnswer checks extraction and normalisation on any text.
func FuzzExtractAnswer(f *testing.F) {
	for _, s := range []string{"579", "Answer: 1,234.", `\boxed{\boxed{1}}`, "<answer>x</answer>", "$$", "-0", "−1 000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, ok := ExtractAnswer(s)
		if ok != (a != "") || a != strings.TrimSpace(a) {
			t.Fatalf("ExtractAnswer(%q) = %q, %v", s, a, ok)
		}
		if n, ok := NormalizeInt(s); ok {
			if m, ok2 := NormalizeInt(n); !ok2 || m != n {
				t.Fatalf("NormalizeInt(%q) = %q, not a fixed point (%q)", s, n, m)
			}
		}
	})
}
