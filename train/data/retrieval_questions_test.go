package data

import (
	"strings"
	"testing"
)

// TestRetrievalQuestions: Questions > 1 appends the other facts' questions
// and answers after the first, within the token budget; 0 and 1 are the same.
func TestRetrievalQuestions(t *testing.T) {
	for i := range 5 {
		one, err := Retrieval{Tokens: 1024, Pairs: 4}.Generate(7, i)
		if err != nil {
			t.Fatal(err)
		}
		same, err := Retrieval{Tokens: 1024, Pairs: 4, Questions: 1}.Generate(7, i)
		if err != nil || same != one {
			t.Fatalf("Questions 1 differs from the default: %v", err)
		}
		ex, err := Retrieval{Tokens: 1024, Pairs: 4, Questions: 4}.Generate(7, i)
		if err != nil {
			t.Fatal(err)
		}
		if n := ApproxTokens(ex.Text); n > 1024 || n < 900 {
			t.Errorf("example %d: %d tokens", i, n)
		}
		if !strings.HasPrefix(ex.Text, ex.Prompt+" "+ex.Answer+"\nQuestion: ") || ex.Answer != one.Answer {
			t.Errorf("example %d: text does not start with prompt + answer + the next question", i)
		}
		qa := strings.Split(ex.Text[strings.Index(ex.Text, "\nQuestion: "):], "\nQuestion: What is the secret number of the ")[1:]
		if len(qa) != 4 {
			t.Fatalf("example %d: %d questions, want 4", i, len(qa))
		}
		seen := map[string]bool{}
		for _, q := range qa {
			key, ans, ok := strings.Cut(q, "?\nAnswer: ")
			if !ok || seen[key] || !strings.Contains(ex.Prompt, "The secret number of the "+key+" is "+ans+".") {
				t.Errorf("example %d: question %q is not a distinct fact of the context", i, q)
			}
			seen[key] = true
		}
	}
	if _, err := (Retrieval{Pairs: 2, Questions: 3}).Generate(1, 0); err == nil {
		t.Error("more questions than facts accepted")
	}
}
