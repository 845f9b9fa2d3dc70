package data

import (
	"fmt"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestRetrieval(t *testing.T) {
	byteCount := func(s string) int { return len(s) / 3 } // a different "tokenizer"
	tests := []struct {
		name string
		task Retrieval
	}{
		{"4K, one passkey", Retrieval{Tokens: 4096, Pairs: 1}},
		{"4K, default", Retrieval{}},
		{"8K, 16 pairs", Retrieval{Tokens: 8192, Pairs: 16}},
		{"6K, 8 digits, byte counter", Retrieval{Tokens: 6000, Pairs: 4, Digits: 8, Count: byteCount}},
		{"short", Retrieval{Tokens: 200, Pairs: 2}},
		{"2K, spaced digits", Retrieval{Tokens: 2048, Pairs: 3, Digits: 4, Spaced: true}},
		{"2K, 3-word filler", Retrieval{Tokens: 2048, Pairs: 8, Words: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			count := tc.task.Count
			if count == nil {
				count = ApproxTokens
			}
			tokens := cmp0(tc.task.Tokens, 4096)
			for i := range 5 {
				ex, err := tc.task.Generate(42, i)
				if err != nil {
					t.Fatal(err)
				}
				if ex.Text != ex.Prompt+" "+ex.Answer {
					t.Fatal("Text is not Prompt + \" \" + Answer")
				}
				if n := strings.Count(ex.Prompt, ex.Answer); n != 1 {
					t.Errorf("example %d: the answer %s occurs %d times in the prompt", i, ex.Answer, n)
				}
				digits := ex.Answer
				if tc.task.Spaced {
					digits = strings.ReplaceAll(digits, " ", "")
					if len(ex.Answer) != 2*len(digits)-1 {
						t.Errorf("spaced answer %q", ex.Answer)
					}
				}
				if _, err := strconv.Atoi(digits); err != nil || len(digits) != cmp0(tc.task.Digits, 6) {
					t.Errorf("answer %q", ex.Answer)
				}
				q := ex.Prompt[strings.LastIndex(ex.Prompt, "\nQuestion: What is the secret number of the ")+44:]
				key := strings.TrimSuffix(q, "?\nAnswer:")
				fact := "The secret number of the " + key + " is " + ex.Answer + "."
				if strings.Count(ex.Prompt, "secret number of the "+key+" ") != 1 || !strings.Contains(ex.Prompt, fact) {
					t.Errorf("example %d: the fact %q is not in the prompt exactly once", i, fact)
				}
				if n := strings.Count(ex.Prompt, "The secret number of the "); n != cmp0(tc.task.Pairs, 4) {
					t.Errorf("%d facts", n)
				}
				if n := count(ex.Text); n > tokens || (tokens >= 4096 && n < tokens*97/100) {
					t.Errorf("example %d: %d tokens, want %d", i, n, tokens)
				}
				if ex.Depth < 0 || ex.Depth > 1 {
					t.Errorf("depth %v", ex.Depth)
				}
				again, _ := tc.task.Generate(42, i)
				if !reflect.DeepEqual(ex, again) {
					t.Error("the same seed and index gave another example")
				}
				other, _ := tc.task.Generate(43, i)
				if other.Text == ex.Text {
					t.Error("another seed gave the same example")
				}
			}
		})
	}
}

func TestRetrievalLengthRange(t *testing.T) {
	exs, err := Generate(Retrieval{Tokens: 4096, MaxTokens: 8192}, 3, 40)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := 1<<30, 0
	for _, ex := range exs {
		n := ApproxTokens(ex.Text)
		lo, hi = min(lo, n), max(hi, n)
	}
	if lo < 4000 || hi > 8192 || hi-lo < 2000 {
		t.Errorf("lengths from %d to %d, want spread over [4096, 8192]", lo, hi)
	}
}

func TestRetrievalDepthUniform(t *testing.T) {
	exs, err := Generate(Retrieval{Tokens: 600, Pairs: 3}, 1, 400)
	if err != nil {
		t.Fatal(err)
	}
	var quarter [4]int
	for _, ex := range exs {
		quarter[min(3, int(ex.Depth*4))]++
	}
	for q, n := range quarter {
		if n < 70 || n > 130 { // 100 expected, σ ≈ 8.7
			t.Errorf("quarter %d of the context holds %d of 400 answers: %v", q, n, quarter)
		}
	}
}

func TestRetrievalErrors(t *testing.T) {
	for _, task := range []Retrieval{{Tokens: 20, Pairs: 4}, {Pairs: 101}, {Digits: 3}, {Digits: 13}} {
		if _, err := task.Generate(1, 0); err == nil {
			t.Errorf("%+v: no error", task)
		}
	}
}

func TestScore(t *testing.T) {
	exs, _ := Generate(Retrieval{Tokens: 300, Pairs: 2}, 7, 50)
	answers := make([]string, len(exs))
	for i, ex := range exs {
		answers[i] = " " + ex.Answer + ".\nThe end."
		if i%2 == 1 {
			answers[i] = "12"
		}
	}
	acc, err := Score(exs, answers)
	if err != nil {
		t.Fatal(err)
	}
	if acc.N != 50 || acc.Correct != 25 || acc.Rate() != 0.5 {
		t.Errorf("accuracy %v", acc)
	}
	n := 0
	for _, d := range acc.Depth {
		n += d.N
	}
	if n != 50 || !strings.HasPrefix(acc.String(), "25/50 = 0.500") {
		t.Errorf("by depth %v", acc)
	}
	if _, err := Score(exs, answers[:3]); err == nil {
		t.Error("too few answers: no error")
	}
	if _, err := Score([]Example{{Text: "x"}}, []string{"x"}); err == nil {
		t.Error("no answer to score: no error")
	}
}

func TestMatch(t *testing.T) {
	tests := []struct {
		got, want string
		ok        bool
	}{
		{"482913", "482913", true},
		{" 482913\nQuestion:", "482913", true},
		{"482913.", "482913", true},
		{"4829130", "482913", false},
		{"", "482913", false},
		{"the answer is 482913", "482913", false},
		{" c b a\ncopy", "c b a", true},
		{"c b", "c b a", false},
		{"c b a!", "c b a", true},
	}
	for _, tc := range tests {
		if Match(tc.got, tc.want) != tc.ok {
			t.Errorf("Match(%q, %q) = %v", tc.got, tc.want, !tc.ok)
		}
	}
}

func TestTasks(t *testing.T) {
	tests := []struct {
		name  string
		g     Generator
		check func(t *testing.T, ex Example)
	}{
		{"stories", Stories{}, func(t *testing.T, ex Example) {
			if ex.Prompt != "" || strings.ContainsAny(ex.Text, "0123456789") || strings.Count(ex.Text, ".") < 3 {
				t.Errorf("story %q", ex.Text)
			}
		}},
		{"stories told 3 times", Stories{Repeat: 3}, func(t *testing.T, ex Example) {
			parts := strings.Split(ex.Text, "\n\n")
			if len(parts) != 3 || parts[0] != parts[1] || parts[1] != parts[2] || strings.Count(parts[0], ".") < 3 {
				t.Errorf("story told 3 times: %q", ex.Text)
			}
			once, _ := Stories{}.Generate(1, 0)
			if again, _ := (Stories{Repeat: 3}).Generate(1, 0); !strings.HasPrefix(again.Text, once.Text+"\n\n") {
				t.Errorf("the repeated story is not the story: %q vs %q", again.Text, once.Text)
			}
		}},
		{"stories, 3 words a list", Stories{Words: 3, MinSentences: 4, MaxSentences: 4}, func(t *testing.T, ex Example) {
			for _, w := range strings.FieldsFunc(ex.Text, func(r rune) bool { return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z') }) {
				if contains(wordNames, w) && !contains(wordNames[:3], w) || contains(wordAnimals, w) && !contains(wordAnimals[:3], w) {
					t.Errorf("%q is outside the 3-word vocabulary", w)
				}
			}
		}},
		{"arith", Arith{Digits: 3}, func(t *testing.T, ex Example) {
			for _, line := range strings.Split(ex.Text, "\n") {
				var x, y, z int64
				var op string
				if _, err := fmt.Sscanf(line, "%d %s %d = %d", &x, &op, &y, &z); err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				want := map[string]int64{"+": x + y, "-": x - y, "*": x * y}[op]
				if z != want || z < 0 || x > 999 || y > 999 {
					t.Errorf("%q", line)
				}
			}
			if !strings.HasSuffix(ex.Prompt, "=") {
				t.Errorf("prompt %q", ex.Prompt)
			}
		}},
		{"copy", Copy{Lines: 3}, func(t *testing.T, ex Example) {
			for _, line := range strings.Split(ex.Text, "\n") {
				in, out, _ := strings.Cut(strings.TrimPrefix(line, "copy: "), " -> ")
				if in != out || len(in) < 5 {
					t.Errorf("%q", line)
				}
			}
		}},
		{"recall", Recall{Pairs: 6}, func(t *testing.T, ex Example) {
			head, asked, ok := strings.Cut(strings.TrimPrefix(ex.Text, "recall: "), " ; ")
			pairs, queries := strings.Fields(head), strings.Fields(asked)
			if !ok || len(pairs) != 12 || len(queries) != 12 {
				t.Fatalf("%q: want 6 pairs, then 6 queries", ex.Text)
			}
			value := map[string]string{}
			for k := 0; k < 12; k += 2 {
				if value[pairs[k]] != "" || len(pairs[k+1]) != 1 || !strings.Contains(codeLetters, pairs[k+1]) {
					t.Fatalf("%q: pair %q %q: want a new key and one of %q", ex.Text, pairs[k], pairs[k+1], codeLetters)
				}
				value[pairs[k]] = pairs[k+1]
			}
			seen := map[string]bool{}
			for k := 0; k < 12; k += 2 {
				if value[queries[k]] != queries[k+1] || seen[queries[k]] {
					t.Errorf("%q: query %q answered %q, want each key once with its value %q", ex.Text, queries[k], queries[k+1], value[queries[k]])
				}
				seen[queries[k]] = true
			}
			if ex.Prompt+" "+ex.Answer != ex.Text || ex.Answer != value[queries[10]] {
				t.Errorf("prompt %q and answer %q do not end the text with the last query", ex.Prompt, ex.Answer)
			}
		}},
		{"induction", Induction{Vocab: 12, MinLen: 40, MaxLen: 40}, func(t *testing.T, ex Example) {
			first, second, ok := strings.Cut(strings.TrimPrefix(ex.Text, "rep: "), " | ")
			words := strings.Fields(first)
			if !ok || first != second || len(words) != 40 {
				t.Fatalf("%q: want 40 words told twice", ex.Text)
			}
			distinct := map[string]bool{}
			for _, w := range words {
				distinct[w] = true
			}
			if len(distinct) > 12 || len(distinct) < 6 {
				t.Errorf("%d distinct words of a 12-word vocabulary in 40 draws", len(distinct))
			}
			if ex.Prompt+" "+ex.Answer != ex.Text || ex.Answer != first {
				t.Errorf("prompt %q and answer %q do not split the text at the bar", ex.Prompt, ex.Answer)
			}
		}},
		{"reverse", Copy{Reverse: true, Letters: 4}, func(t *testing.T, ex Example) {
			for _, line := range strings.Split(ex.Text, "\n") {
				in, out, _ := strings.Cut(strings.TrimPrefix(line, "reverse: "), " -> ")
				r := []rune(in)
				for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
					r[i], r[j] = r[j], r[i]
				}
				if string(r) != out || strings.ContainsAny(in, "efghxyz") {
					t.Errorf("%q", line)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			exs, err := Generate(tc.g, 5, 30)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := Generate(tc.g, 5, 30)
			if !reflect.DeepEqual(exs, again) {
				t.Error("not deterministic")
			}
			distinct := map[string]bool{}
			for _, ex := range exs {
				tc.check(t, ex)
				if ex.Answer != "" && ex.Text != ex.Prompt+" "+ex.Answer {
					t.Errorf("Text %q is not Prompt + Answer", ex.Text)
				}
				distinct[ex.Text] = true
			}
			if len(distinct) < 25 {
				t.Errorf("%d distinct examples of 30", len(distinct))
			}
		})
	}
	for _, g := range []Generator{Stories{MinSentences: 3, MaxSentences: 2}, Stories{Repeat: 17}, Arith{Digits: 10}, Arith{Ops: "/"}, Copy{Letters: 27}, Copy{MinLen: 5, MaxLen: 2}, Recall{Pairs: 21}, Induction{Vocab: 1}, Induction{Vocab: 2000}, Induction{MinLen: 9, MaxLen: 3}} {
		if _, err := g.Generate(1, 0); err == nil {
			t.Errorf("%+v: no error", g)
		}
	}
}

func contains(xs []string, w string) bool {
	for _, x := range xs {
		if x == w {
			return true
		}
	}
	return false
}

func TestJSONL(t *testing.T) {
	exs, _ := Generate(Arith{}, 1, 10)
	exs = append(exs, Example{Text: "a \"story\" <b>"})
	path := filepath.Join(t.TempDir(), "x.jsonl")
	if err := WriteJSONL(path, exs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJSONL(path)
	if err != nil || !reflect.DeepEqual(got, exs) {
		t.Fatalf("round trip: %v", err)
	}
	// A synthetic JSONL file tokenises as documents.
	var texts []string
	if err := ReadDocuments(path, JSONL, func(s string) error { texts = append(texts, s); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(texts) != len(exs) || texts[3] != exs[3].Text {
		t.Errorf("%d documents", len(texts))
	}
}

func TestApproxTokens(t *testing.T) {
	for s, want := range map[string]int{"": 0, "the cat": 2, "Hello, world!": 4, "1234567 x": 4, "a1b": 3} {
		if got := ApproxTokens(s); got != want {
			t.Errorf("ApproxTokens(%q) = %d, want %d", s, got, want)
		}
	}
}
