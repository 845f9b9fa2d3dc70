package env

import (
	"errors"
	"strconv"
	"testing"
)

func TestParseExpr(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  error // nil: parses and evaluates to want
	}{
		{"1", 1, nil},
		{"1+2*3", 7, nil},
		{"(1+2)*3", 9, nil},
		{"10-4-3", 3, nil}, // left associative
		{"48/4/2", 6, nil},
		{"2*(3+(4-1))", 12, nil},
		{" ( 25 - 7 ) * 3 - 8 ", 46, nil},
		{"25−7", 18, nil},
		{"6×7", 42, nil},
		{"42÷6", 7, nil},
		{"6·7", 42, nil},
		{"6x7", 42, nil},
		{"3-5", -2, nil},
		{"7/2", 0, errInexact},
		{"7/(3-3)", 0, errDivZero},
		{"999999999999*999999999999", 0, errOverflow},
		{"999999*999999*999999*999999", 0, errOverflow},
		{"", 0, errExprSyntax},
		{"1+", 0, errExprSyntax},
		{"-1", 0, errExprSyntax}, // no unary minus
		{"+1", 0, errExprSyntax},
		{"(1", 0, errExprSyntax},
		{"1)", 0, errExprSyntax},
		{"()", 0, errExprSyntax},
		{"1 2", 0, errExprSyntax},
		{"2**3", 0, errExprSyntax},
		{"2^3", 0, errExprSyntax},
		{"1.5", 0, errExprSyntax},
		{"abs(1)", 0, errExprSyntax},
		{"__import__('os')", 0, errExprSyntax},
		{"1234567890123", 0, errExprSyntax}, // 13 digits
		{"((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))", 0, errExprSyntax},
	}
	for _, c := range cases {
		n, err := parseExpr(c.in)
		var v int64
		if err == nil {
			v, err = n.eval()
		}
		switch {
		case c.err == nil && (err != nil || v != c.want):
			t.Errorf("%q = %d, %v; want %d", c.in, v, err, c.want)
		case c.err != nil && !errors.Is(err, c.err):
			t.Errorf("%q: error %v, want %v", c.in, err, c.err)
		}
	}
}

func TestCountdownVerifier(t *testing.T) {
	v := countdownVerifier{numbers: []int64{3, 7, 25, 8}, target: 46}
	twice := countdownVerifier{numbers: []int64{5, 5, 2}, target: 50}
	cases := []struct {
		v      countdownVerifier
		answer string
		want   Verdict
	}{
		{v, "(25-7)*3-8", Correct},
		{v, "3*(25-7)-8", Correct},
		{v, "(25-7)*3-8 = 46", Correct},
		{v, "(25−7)×3−8=46", Correct},
		{v, "25+21", Wrong},           // 21 not given
		{v, "25+7+3+8+3", Wrong},      // 3 used twice
		{v, "(25-7)*3-8 = 45", Wrong}, // claim not the target
		{v, "25+7+3", Wrong},          // misses the target
		{v, "(25-7)*3-8 = x", Malformed},
		{v, "(25-7)*3-8 = 46 = 46", Malformed},
		{v, "25 + seven", Malformed},
		{v, "", Malformed},
		{v, "(7-25)/(3-8)", Wrong}, // inexact: -18/-5
		{v, "7/(8-8)", Wrong},      // division by zero; also reuses 8
		{twice, "5*5*2", Correct},  // a number given twice may be used twice
		{twice, "5*5*2*1", Wrong},
		{twice, "5*2*5", Correct},
		{twice, "(5+5)*5", Wrong},
	}
	for _, c := range cases {
		if got := c.v.Verify(c.answer); got != c.want {
			t.Errorf("%v → %d: %q is %s, want %s", c.v.numbers, c.v.target, c.answer, got, c.want)
		}
	}
}

// solve searches every way of combining some of nums with + − × ÷ (exact
// integer arithmetic, as the verifier allows) for target, and returns one
// expression, or "" if there is none. It is independent of the generator.
func solve(nums []int64, exprs []string, target int64) string {
	for i, n := range nums {
		if n == target {
			return exprs[i]
		}
	}
	for i := range nums {
		for j := range nums {
			if i == j {
				continue
			}
			a, b := nums[i], nums[j]
			ea, eb := "("+exprs[i]+")", "("+exprs[j]+")"
			var rest []int64
			var restE []string
			for k := range nums {
				if k != i && k != j {
					rest = append(rest, nums[k])
					restE = append(restE, exprs[k])
				}
			}
			try := func(v int64, e string) string {
				return solve(append(rest[:len(rest):len(rest)], v), append(restE[:len(restE):len(restE)], e), target)
			}
			cands := []struct {
				v  int64
				e  string
				ok bool
			}{
				{a + b, ea + "+" + eb, i < j},
				{a - b, ea + "-" + eb, true},
				{a * b, ea + "*" + eb, i < j},
				{0, ea + "/" + eb, b != 0 && a%b == 0},
			}
			if b != 0 && a%b == 0 {
				cands[3].v = a / b
			}
			for _, c := range cands {
				if !c.ok {
					continue
				}
				if s := try(c.v, c.e); s != "" {
					return s
				}
			}
		}
	}
	return ""
}

// TestCountdownSolvable checks, with an independent solver, that every
// generated instance has a solution, and that the verifier accepts both the
// solver's and the generator's.
func TestCountdownSolvable(t *testing.T) {
	for _, spec := range []string{"countdown", "countdown:numbers=4", "countdown:numbers=2,max=10,target=10"} {
		task := mustLookup(t, spec)
		for _, split := range []Split{Train, Test} {
			for _, ex := range Sample(task, split, 11, 150) {
				v := ex.Verifier.(countdownVerifier)
				if len(v.numbers) != task.(Countdown).Numbers || v.target < 1 || v.target > int64(task.(Countdown).MaxTarget) {
					t.Fatalf("%s: bad instance %+v", spec, ex)
				}
				exprs := make([]string, len(v.numbers))
				for i, n := range v.numbers {
					exprs[i] = strconv.FormatInt(n, 10)
				}
				sol := solve(v.numbers, exprs, v.target)
				if sol == "" {
					t.Fatalf("%s: %q has no solution", spec, ex.Prompt)
				}
				if got := ex.Verify(sol); got != Correct {
					t.Fatalf("%s: solver's %q for %q is %s", spec, sol, ex.Prompt, got)
				}
				if got := ex.Verify(ex.Answer); got != Correct {
					t.Fatalf("%s: reference %q for %q is %s", spec, ex.Answer, ex.Prompt, got)
				}
			}
		}
	}
}

func TestCountdownPrompt(t *testing.T) {
	ex := Sample(mustLookup(t, "countdown"), Train, 5, 1)[0]
	want := "make " + ex.Meta["target"] + " from " + ex.Meta["numbers"]
	if ex.Prompt != want {
		t.Errorf("prompt %q, want %q", ex.Prompt, want)
	}
}

// TestCountdownHardKnobs draws from the knobs where construction succeeds
// least often (six numbers up to 1000 for a target ≤ 10: about 3 in 10⁴).
func TestCountdownHardKnobs(t *testing.T) {
	task := mustLookup(t, "countdown:numbers=6,max=1000,target=10")
	for _, split := range []Split{Train, Test} {
		for _, ex := range Sample(task, split, 1, 10) {
			if ex.Verify(ex.Answer) != Correct || SplitOf(ex.Key) != split {
				t.Fatalf("bad example %+v", ex)
			}
		}
	}
}
