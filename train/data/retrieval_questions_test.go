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

// TestRetrievalRestateAndLetters: Restate ends every question with the fact's
// own words up to its value, and Letters writes values as spaced consonants
// that occur once in the prompt; the plain document is unchanged by either.
func TestRetrievalRestateAndLetters(t *testing.T) {
	for i := range 5 {
		plain, err := Retrieval{Tokens: 1024, Pairs: 4, Questions: 4}.Generate(3, i)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			task Retrieval
			noun string
		}{
			{"restate", Retrieval{Tokens: 1024, Pairs: 4, Questions: 4, Restate: true}, "number"},
			{"letters", Retrieval{Tokens: 1024, Pairs: 4, Questions: 4, Restate: true, Letters: true}, "code"},
		} {
			ex, err := tc.task.Generate(3, i)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if n := ApproxTokens(ex.Text); n > 1024 {
				t.Errorf("%s %d: %d tokens", tc.name, i, n)
			}
			key := plain.Prompt[strings.LastIndex(plain.Prompt, "of the ")+len("of the ") : len(plain.Prompt)-len("?\nAnswer:")]
			if want := "?\nAnswer: The secret " + tc.noun + " of the " + key + " is"; !strings.HasSuffix(ex.Prompt, want) {
				t.Errorf("%s %d: prompt ends %q, want %q", tc.name, i, ex.Prompt[len(ex.Prompt)-60:], want)
			}
			if !strings.Contains(ex.Prompt, "The secret "+tc.noun+" of the "+key+" is "+ex.Answer+".") {
				t.Errorf("%s %d: the answer %q is not the asked fact's value", tc.name, i, ex.Answer)
			}
			if c := strings.Count(ex.Prompt, ex.Answer); c != 1 {
				t.Errorf("%s %d: answer %q occurs %d times in the prompt, want once (in its fact)", tc.name, i, ex.Answer, c)
			}
			if tc.task.Letters {
				if tc.task.Restate && plain.Answer == ex.Answer {
					t.Errorf("%s %d: letter values equal the digit values", tc.name, i)
				}
				for _, f := range strings.Fields(ex.Answer) {
					if len(f) != 1 || !strings.Contains(codeLetters, f) {
						t.Errorf("%s %d: value %q has %q, want spaced letters of %q", tc.name, i, ex.Answer, f, codeLetters)
					}
				}
			} else if ex.Answer != plain.Answer {
				t.Errorf("%s %d: restating changed the value: %q, want %q", tc.name, i, ex.Answer, plain.Answer)
			}
		}
	}
}
