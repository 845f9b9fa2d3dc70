package env

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Countdown is T3: reach a target with some given numbers and + − × ÷.
//
// Prompt "make 46 from 3 7 25", answer an expression such as "(25-7)*3-8"…
// any expression that evaluates to the target, using each given number at
// most once (as often as it is given), with exact integer arithmetic: a
// division must be exact. The answer may end in "= 46". Scoring is 1 / 0.1 / 0
// (TinyZero's scheme, FormatCredit 0.1): an expression that parses but misses
// the target, reuses a number, uses one not given or divides inexactly is
// wrong; text that does not parse is malformed.
//
// Generation is by construction, so every instance is solvable: draw the
// numbers, combine all of them in a random order with random operations
// (subtraction larger minus smaller, division only when exact and by more
// than 1), and keep the result as the target if it lies in [1, MaxTarget] and
// is not itself one of the numbers. That expression is the reference Answer.
//
// Canonical problem: the sorted numbers and the target.
type Countdown struct {
	Numbers   int // how many numbers, 2–6
	MaxNumber int // numbers are drawn from [1, MaxNumber]
	MaxTarget int // targets lie in [1, MaxTarget]
}

func (c Countdown) Name() string { return "countdown" }
func (c Countdown) Level() int   { return 3 }

func (c Countdown) Validate() error {
	switch {
	case c.Numbers < 2 || c.Numbers > 6:
		return fmt.Errorf("countdown: need 2–6 numbers, got %d", c.Numbers)
	case c.MaxNumber < 10 || c.MaxNumber > 1000:
		return fmt.Errorf("countdown: need 10 ≤ max number ≤ 1000, got %d", c.MaxNumber)
	case c.MaxTarget < 10 || c.MaxTarget > 1000000:
		return fmt.Errorf("countdown: need 10 ≤ max target ≤ 1000000, got %d", c.MaxTarget)
	}
	return nil
}

func (c Countdown) Generate(rng *rand.Rand, split Split) Example {
	mustValid(c)
	return draw(c.Name(), split, func() (Example, bool) {
		nums, target, expr, ok := c.construct(rng)
		if !ok {
			return Example{}, false
		}
		sorted := slices.Clone(nums)
		slices.Sort(sorted)
		numText := joinInts(nums, " ")
		t := strconv.FormatInt(target, 10)
		return Example{
			Task:         c.Name(),
			Level:        3,
			Key:          "countdown:" + joinInts(sorted, ",") + "=" + t,
			Prompt:       "make " + t + " from " + numText,
			Answer:       expr,
			Meta:         map[string]string{"numbers": numText, "target": t},
			Verifier:     countdownVerifier{numbers: nums, target: target},
			FormatCredit: 0.1,
		}, true
	})
}

// construct draws numbers and one way of combining them all; ok is false when
// the result is no usable target.
func (c Countdown) construct(rng *rand.Rand) (nums []int64, target int64, expr string, ok bool) {
	nums = make([]int64, c.Numbers)
	type item struct {
		v    int64
		text string
	}
	pool := make([]item, c.Numbers)
	for i := range nums {
		nums[i] = 1 + rng.Int64N(int64(c.MaxNumber))
		pool[i] = item{nums[i], strconv.FormatInt(nums[i], 10)}
	}
	for len(pool) > 1 {
		i := rng.IntN(len(pool))
		j := rng.IntN(len(pool) - 1)
		if j >= i {
			j++
		}
		a, b := pool[i], pool[j]
		var r item
		switch rng.IntN(4) {
		case 0:
			r = item{a.v + b.v, a.text + "+" + b.text}
		case 1:
			if a.v < b.v {
				a, b = b, a
			}
			if a.v == b.v {
				return nil, 0, "", false // a zero helps nothing
			}
			r = item{a.v - b.v, a.text + "-" + b.text}
		case 2:
			r = item{a.v * b.v, a.text + "*" + b.text}
		case 3:
			if a.v < b.v {
				a, b = b, a
			}
			if b.v <= 1 || a.v%b.v != 0 {
				return nil, 0, "", false
			}
			r = item{a.v / b.v, a.text + "/" + b.text}
		}
		if len(pool) > 2 {
			r.text = "(" + r.text + ")"
		}
		pool[i] = r
		pool = slices.Delete(pool, j, j+1)
	}
	target = pool[0].v
	if target < 1 || target > int64(c.MaxTarget) || slices.Contains(nums, target) {
		return nil, 0, "", false
	}
	return nums, target, pool[0].text, true
}

func joinInts(xs []int64, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatInt(x, 10)
	}
	return strings.Join(s, sep)
}

type countdownVerifier struct {
	numbers []int64
	target  int64
}

func (v countdownVerifier) Verify(answer string) Verdict {
	exprText, claim, hasClaim := strings.Cut(answer, "=")
	if hasClaim {
		if strings.Contains(claim, "=") {
			return Malformed
		}
		c, ok := NormalizeInt(claim)
		if !ok {
			return Malformed
		}
		if c != strconv.FormatInt(v.target, 10) {
			return Wrong
		}
	}
	e, err := parseExpr(exprText)
	if err != nil {
		return Malformed
	}
	val, err := e.eval()
	if err != nil || val != v.target {
		return Wrong
	}
	left := slices.Clone(v.numbers)
	for _, n := range e.numbers(nil) {
		i := slices.Index(left, n)
		if i < 0 {
			return Wrong
		}
		left = slices.Delete(left, i, i+1)
	}
	return Correct
}

// The expression language of Countdown answers:
//
//	expr   = term { ("+" | "-") term }
//	term   = factor { ("*" | "/") factor }
//	factor = number | "(" expr ")"
//
// Numbers are unsigned decimal integers; there is no unary minus. The
// operators may also be written − × ÷ · and x. Spaces are ignored. Evaluation
// is exact int64 arithmetic: overflow, division by zero and inexact division
// are errors.

// node is a parsed expression: a number (op 0) or a binary operation.
type node struct {
	op   byte // 0, '+', '-', '*', '/'
	val  int64
	l, r *node
}

const (
	maxExprLen   = 4096 // bytes of answer text the parser reads at most
	maxExprDepth = 64   // nesting of parentheses
	maxNumberLen = 12   // digits of one number
)

var (
	errExprSyntax = errors.New("not an arithmetic expression")
	errOverflow   = errors.New("integer overflow")
	errDivZero    = errors.New("division by zero")
	errInexact    = errors.New("inexact division")
)

type exprParser struct {
	toks  []token
	pos   int
	depth int
}

type token struct {
	op  byte // '+', '-', '*', '/', '(', ')', or 0 for a number
	val int64
}

// parseExpr parses s in the language above.
func parseExpr(s string) (*node, error) {
	if len(s) > maxExprLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", errExprSyntax, maxExprLen)
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	p := &exprParser{toks: toks}
	n, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected token at %d", errExprSyntax, p.pos)
	}
	return n, nil
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && s[j] >= '0' && s[j] <= '9' {
				j++
			}
			if j-i > maxNumberLen {
				return nil, fmt.Errorf("%w: number longer than %d digits", errExprSyntax, maxNumberLen)
			}
			v, _ := strconv.ParseInt(s[i:j], 10, 64) // ≤ 12 digits always fits
			toks = append(toks, token{val: v})
			i = j
		case strings.ContainsRune("+-*/()x", rune(c)):
			op := c
			if op == 'x' {
				op = '*'
			}
			toks = append(toks, token{op: op})
			i++
		default:
			ops := [...]struct {
				text string
				op   byte
			}{{"−", '-'}, {"×", '*'}, {"÷", '/'}, {"·", '*'}}
			found := false
			for _, o := range ops {
				if strings.HasPrefix(s[i:], o.text) {
					toks = append(toks, token{op: o.op})
					i += len(o.text)
					found = true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("%w: unexpected character at byte %d", errExprSyntax, i)
			}
		}
	}
	return toks, nil
}

func (p *exprParser) peek() (token, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return token{}, false
}

func (p *exprParser) expr() (*node, error) {
	l, err := p.term()
	if err != nil {
		return nil, err
	}
	for {
		t, ok := p.peek()
		if !ok || (t.op != '+' && t.op != '-') {
			return l, nil
		}
		p.pos++
		r, err := p.term()
		if err != nil {
			return nil, err
		}
		l = &node{op: t.op, l: l, r: r}
	}
}

func (p *exprParser) term() (*node, error) {
	l, err := p.factor()
	if err != nil {
		return nil, err
	}
	for {
		t, ok := p.peek()
		if !ok || (t.op != '*' && t.op != '/') {
			return l, nil
		}
		p.pos++
		r, err := p.factor()
		if err != nil {
			return nil, err
		}
		l = &node{op: t.op, l: l, r: r}
	}
}

func (p *exprParser) factor() (*node, error) {
	t, ok := p.peek()
	if !ok {
		return nil, fmt.Errorf("%w: unexpected end", errExprSyntax)
	}
	p.pos++
	switch t.op {
	case 0:
		return &node{val: t.val}, nil
	case '(':
		if p.depth++; p.depth > maxExprDepth {
			return nil, fmt.Errorf("%w: nested deeper than %d", errExprSyntax, maxExprDepth)
		}
		n, err := p.expr()
		if err != nil {
			return nil, err
		}
		if t, ok := p.peek(); !ok || t.op != ')' {
			return nil, fmt.Errorf("%w: missing )", errExprSyntax)
		}
		p.pos++
		p.depth--
		return n, nil
	}
	return nil, fmt.Errorf("%w: unexpected %q", errExprSyntax, t.op)
}

// eval computes the expression exactly.
func (n *node) eval() (int64, error) {
	if n.op == 0 {
		return n.val, nil
	}
	a, err := n.l.eval()
	if err != nil {
		return 0, err
	}
	b, err := n.r.eval()
	if err != nil {
		return 0, err
	}
	switch n.op {
	case '+':
		s := a + b
		if (b > 0 && s < a) || (b < 0 && s > a) {
			return 0, errOverflow
		}
		return s, nil
	case '-':
		d := a - b
		if (b > 0 && d > a) || (b < 0 && d < a) {
			return 0, errOverflow
		}
		return d, nil
	case '*':
		if a == 0 || b == 0 {
			return 0, nil
		}
		m := a * b
		if m/b != a || (a == -1 && b == minInt64) || (b == -1 && a == minInt64) {
			return 0, errOverflow
		}
		return m, nil
	case '/':
		switch {
		case b == 0:
			return 0, errDivZero
		case a == minInt64 && b == -1:
			return 0, errOverflow
		case a%b != 0:
			return 0, errInexact
		}
		return a / b, nil
	}
	return 0, errExprSyntax
}

const minInt64 = -1 << 63

// numbers appends the expression's numbers, left to right, to dst.
func (n *node) numbers(dst []int64) []int64 {
	if n.op == 0 {
		return append(dst, n.val)
	}
	return n.r.numbers(n.l.numbers(dst))
}

// String prints the expression fully parenthesised; it parses back to the
// same tree.
func (n *node) String() string {
	if n.op == 0 {
		return strconv.FormatInt(n.val, 10)
	}
	return "(" + n.l.String() + string(n.op) + n.r.String() + ")"
}
