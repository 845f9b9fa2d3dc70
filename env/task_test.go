package env

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func mustLookup(t testing.TB, spec string) Task {
	t.Helper()
	task, err := Lookup(spec)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func TestLookup(t *testing.T) {
	for _, e := range Ladder() {
		task := mustLookup(t, e.Name)
		if task.Name() != e.Name || task.Level() != e.Level {
			t.Errorf("%s: got task %s at level %d, want level %d", e.Name, task.Name(), task.Level(), e.Level)
		}
	}
	good := map[string]Task{
		"reverse:min=8,max=16":       Sequence{Op: Reverse, MinLen: 8, MaxLen: 16},
		"sort:letters=1":             Sequence{Op: Sort, MinLen: 4, MaxLen: 12, Letters: true},
		"add:digits=5":               Arithmetic{Op: '+', MinDigits: 5, MaxDigits: 5},
		"mul:min=1, max=3":           Arithmetic{Op: '*', MinDigits: 1, MaxDigits: 3},
		"countdown:numbers=4":        Countdown{Numbers: 4, MaxNumber: 50, MaxTarget: 100},
		" bandit:answer=3 ":          Bandit{Answer: 3},
		"mix:tasks=copy+sub":         Mix{Tasks: []Task{Sequence{Op: Copy, MinLen: 4, MaxLen: 12}, Arithmetic{Op: '-', MinDigits: 2, MaxDigits: 3}}},
		"add:digits=2,min=1":         Arithmetic{Op: '+', MinDigits: 1, MaxDigits: 2},
		"countdown:target=1000":      Countdown{Numbers: 3, MaxNumber: 50, MaxTarget: 1000},
		"copy:min=2,max=2":           Sequence{Op: Copy, MinLen: 2, MaxLen: 2},
		"sort:min=1,max=3,letters=0": Sequence{Op: Sort, MinLen: 1, MaxLen: 3},
	}
	for spec, want := range good {
		got, err := Lookup(spec)
		if err != nil {
			t.Errorf("Lookup(%q): %v", spec, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Lookup(%q) = %#v, want %#v", spec, got, want)
		}
	}
	bad := map[string]string{
		"nope":                "unknown task",
		"copy:len=3":          `unknown knob "len"`,
		"copy:min":            "not key=value",
		"copy:min=x":          "not an integer",
		"copy:min=5,min=6":    "given twice",
		"copy:min=9,max=3":    "min ≤ max",
		"copy:min=1,max=1":    "fewer than 100",
		"sort:min=2,max=2":    "fewer than 100", // 55 multisets of two digits
		"add:digits=1":        "one-digit",
		"mul:digits=41":       "≤ 40",
		"countdown:numbers=9": "2–6 numbers",
		"countdown:max=5":     "max number",
		"bandit:answer=10":    "digit",
		"mix:tasks=copy+mix":  "mix cannot contain",
		"mix:tasks=copy+nope": "unknown task",
		"mix:tasks=":          "unknown task",
	}
	for spec, want := range bad {
		_, err := Lookup(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Lookup(%q) error %v, want one containing %q", spec, err, want)
		}
	}
}

func TestGenerateDeterministic(t *testing.T) {
	for _, e := range Ladder() {
		task := mustLookup(t, e.Name)
		for _, split := range []Split{Train, Test} {
			a := Sample(task, split, 7, 40)
			b := Sample(task, split, 7, 40)
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s/%s: same seed, different examples", e.Name, split)
			}
			if e.Name == "bandit" {
				continue
			}
			c := Sample(task, split, 8, 40)
			if reflect.DeepEqual(a, c) {
				t.Errorf("%s/%s: seeds 7 and 8 gave the same examples", e.Name, split)
			}
		}
	}
}

// TestSplitDisjoint samples many problems of each split and checks that every
// one is on its side of the hash and that no canonical problem is in both.
func TestSplitDisjoint(t *testing.T) {
	specs := []string{"copy", "reverse", "sort", "add", "sub", "mul", "countdown",
		"copy:min=2,max=3", "sort:min=2,max=4", "add:digits=2", "mul:min=1,max=2", "countdown:numbers=2,max=10,target=10"}
	for _, spec := range specs {
		task := mustLookup(t, spec)
		train := map[string]bool{}
		for i, ex := range Sample(task, Train, 1, 3000) {
			if ex.Split != Train || SplitOf(ex.Key) != Train {
				t.Fatalf("%s: train example %d %+v is not a train problem", spec, i, ex)
			}
			train[ex.Key] = true
		}
		test := map[string]bool{}
		for i, ex := range Sample(task, Test, 2, 1000) {
			if ex.Split != Test || SplitOf(ex.Key) != Test {
				t.Fatalf("%s: test example %d %+v is not a test problem", spec, i, ex)
			}
			if train[ex.Key] {
				t.Fatalf("%s: problem %s is in both splits", spec, ex.Key)
			}
			test[ex.Key] = true
		}
		if len(test) < 2 {
			t.Errorf("%s: only %d distinct test problems", spec, len(test))
		}
	}
}

func TestSplitShare(t *testing.T) {
	n := 0
	for i := range 100000 {
		if SplitOf("k"+strconv.Itoa(i)) == Test {
			n++
		}
	}
	if n < 9500 || n > 10500 {
		t.Errorf("%d of 100000 keys in Test, want about 10000", n)
	}
}

// TestReferenceAnswers checks that every example's own answer verifies, and
// that its prompt and metadata look as documented.
func TestReferenceAnswers(t *testing.T) {
	for _, e := range Ladder() {
		task := mustLookup(t, e.Name)
		for _, ex := range Sample(task, Train, 3, 300) {
			if v := ex.Verify(ex.Answer); v != Correct {
				t.Fatalf("%s: reference answer %q of %q is %s", e.Name, ex.Answer, ex.Prompt, v)
			}
			if ex.Prompt == "" || ex.Key == "" || ex.Task == "" {
				t.Fatalf("%s: incomplete example %+v", e.Name, ex)
			}
			if c := ex.Chat(); len(c) != 1 || c[0].Content != ex.Prompt {
				t.Fatalf("%s: Chat() = %+v", e.Name, c)
			}
		}
	}
}

func TestSequenceLengths(t *testing.T) {
	task := Sequence{Op: Reverse, MinLen: 3, MaxLen: 5, Letters: true}
	seen := map[int]bool{}
	for _, ex := range Sample(task, Train, 1, 500) {
		in := strings.TrimPrefix(ex.Prompt, "reverse ")
		if len(in) < 3 || len(in) > 5 || strings.Trim(in, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("bad input %q", in)
		}
		seen[len(in)] = true
	}
	if len(seen) != 3 {
		t.Errorf("lengths seen %v, want 3, 4 and 5", seen)
	}
}

func TestArithmeticDigits(t *testing.T) {
	for _, ex := range Sample(Arithmetic{Op: '-', MinDigits: 3, MaxDigits: 3}, Train, 1, 300) {
		x, y, _ := strings.Cut(ex.Prompt, "-")
		if len(x) != 3 || len(y) != 3 || x < y || x[0] == '0' || y[0] == '0' {
			t.Fatalf("bad operands in %q", ex.Prompt)
		}
	}
}

func TestSequenceVerifier(t *testing.T) {
	digits := sequenceVerifier{want: "19283", alphabet: "0123456789"}
	letters := sequenceVerifier{want: "abc", alphabet: "abcdefghijklmnopqrstuvwxyz"}
	cases := []struct {
		v      sequenceVerifier
		answer string
		want   Verdict
	}{
		{digits, "19283", Correct},
		{digits, " 1 9 2 8 3 ", Correct},
		{digits, "19284", Wrong},
		{digits, "1928", Wrong},
		{digits, "192830", Wrong},
		{digits, "", Malformed},
		{digits, "   ", Malformed},
		{digits, "19a83", Malformed},
		{digits, "１9283", Malformed}, // fullwidth digit
		{digits, "19283.", Malformed},
		{letters, "ABC", Correct},
		{letters, "a b c", Correct},
		{letters, "abd", Wrong},
		{letters, "ab1", Malformed},
		{letters, "äbc", Malformed},
	}
	for _, c := range cases {
		if got := c.v.Verify(c.answer); got != c.want {
			t.Errorf("%q against %q: %s, want %s", c.answer, c.v.want, got, c.want)
		}
	}
}

func TestNormalizeInt(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		{"579", "579", true},
		{" 579 ", "579", true},
		{"+579", "579", true},
		{"0579", "579", true},
		{"579.", "579", true},
		{"579.00", "579", true},
		{"-12", "-12", true},
		{"−12", "-12", true},
		{"-0", "0", true},
		{"000", "0", true},
		{"1,234", "1234", true},
		{"1 234 567", "1234567", true},
		{"1_000", "1000", true},
		{"1\u202f000", "1000", true},
		{"123456789012345678901234567890", "123456789012345678901234567890", true},
		{"", "", false},
		{"-", "", false},
		{"+-1", "", false},
		{"12.5", "", false},
		{"12.", "12", true},
		{"1.", "1", true},
		{".5", "", false},
		{"5e2", "", false},
		{"0x1f", "", false},
		{"1/2", "", false},
		{",123", "", false},
		{"123,", "", false},
		{"1,,2", "", false},
		{"twelve", "", false},
		{"١٢", "", false}, // Arabic-Indic digits are not accepted
		{strings.Repeat("9", 2000), "", false},
	}
	for _, c := range cases {
		got, ok := NormalizeInt(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("NormalizeInt(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestArithmeticVerifier(t *testing.T) {
	v := integerVerifier{want: "579"}
	cases := map[string]Verdict{
		"579": Correct, "+579": Correct, "579.0": Correct, "0579": Correct,
		"578": Wrong, "-579": Wrong, "5790": Wrong,
		"": Malformed, "five hundred": Malformed, "579 apples": Malformed, "57.9": Malformed,
	}
	for answer, want := range cases {
		if got := v.Verify(answer); got != want {
			t.Errorf("%q: %s, want %s", answer, got, want)
		}
	}
}

func TestExampleVerifyWithoutVerifier(t *testing.T) {
	ex := Example{Answer: " Paris "}
	for answer, want := range map[string]Verdict{"Paris": Correct, " Paris\n": Correct, "paris": Wrong, "": Malformed} {
		if got := ex.Verify(answer); got != want {
			t.Errorf("%q: %s, want %s", answer, got, want)
		}
	}
}

func TestExtractAnswer(t *testing.T) {
	cases := []struct {
		content, want string
		ok            bool
	}{
		{"579", "579", true},
		{"let me add\n579\n", "579", true},
		{"Answer: 579", "579", true},
		{"answer:579.", "579", true},
		{"The ANSWER: 12\nsome chatter", "12", true},
		{"first Answer: 1\nthen Answer: 2\nbye", "2", true},
		{`so \boxed{42}.`, "42", true},
		{`\boxed{1} and \boxed{\frac{1}{2}}`, `\frac{1}{2}`, true},
		{`\boxed{7} then \boxed{oops`, "7", true},
		{"Answer: 3\n\\boxed{4}", "4", true},
		{"<answer>(25-7)*3</answer>", "(25-7)*3", true},
		{"<answer>1</answer><answer> 2 </answer>", "2", true},
		{"Answer: <answer>5</answer>", "5", true},
		{"**579**", "579", true},
		{"$579$", "579", true},
		{"Answer: **$12$**.", "12", true},
		{"", "", false},
		{"  \n \n", "", false},
		{"Answer:", "", false},
		{`\boxed{}`, "", false},
		{"$$", "", false},
		{"**", "**", true}, // junk, left for the verifier
		{"\xff\xfe", "\uFFFD", true},
	}
	for _, c := range cases {
		got, ok := ExtractAnswer(c.content)
		if got != c.want || ok != c.ok {
			t.Errorf("ExtractAnswer(%q) = %q, %v; want %q, %v", c.content, got, ok, c.want, c.ok)
		}
	}
}

// TestMixUsesMembers checks that a mix's examples keep their member's name
// and verifier, and that every member shows up.
func TestMixUsesMembers(t *testing.T) {
	seen := map[string]bool{}
	for _, ex := range Sample(mustLookup(t, "mix"), Test, 1, 300) {
		seen[ex.Task] = true
		if ex.Verify(ex.Answer) != Correct || SplitOf(ex.Key) != Test {
			t.Fatalf("bad mixed example %+v", ex)
		}
	}
	if len(seen) != 6 {
		t.Errorf("members seen: %v", seen)
	}
}

func TestGenerateInvalidPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Generate with invalid knobs did not panic")
		}
	}()
	Sequence{Op: Copy}.Generate(rand.New(rand.NewPCG(1, 2)), Train)
}

func TestExampleJSON(t *testing.T) {
	ex := Sample(mustLookup(t, "add"), Test, 1, 1)[0]
	b, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	var back Example
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	back.Verifier = ex.Verifier
	if !reflect.DeepEqual(back, ex) || !strings.Contains(string(b), `"split":"test"`) {
		t.Errorf("round trip of %s gave %+v", b, back)
	}
	if err := json.Unmarshal([]byte(`{"split":"dev"}`), &back); err == nil {
		t.Error("split dev accepted")
	}
	if _, err := json.Marshal(Example{Split: 7}); err == nil {
		t.Error("split 7 marshalled")
	}
}
