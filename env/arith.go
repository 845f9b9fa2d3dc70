package env

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Arithmetic is T2: a+b, a−b or a×b of two integers, each with a digit count
// drawn uniformly from [MinDigits, MaxDigits] (no leading zeros; a one-digit
// operand may be 0). Subtraction puts the larger operand first, so answers are
// never negative.
//
// Prompt "123+456", answer "579". Any integer spelling is accepted (NormalizeInt:
// "+579", "0579", "579.0", "1,234"); a non-number is malformed. Scoring is
// 1 / 0.1 / 0 (FormatCredit 0.1).
//
// Canonical problem: the operands in order for subtraction, sorted for the
// commutative + and ×, so 12+34 and 34+12 fall in the same split.
type Arithmetic struct {
	Op                   byte // '+', '-' or '*'
	MinDigits, MaxDigits int  // operand length range, 1–40
}

func (a Arithmetic) Name() string {
	switch a.Op {
	case '+':
		return "add"
	case '-':
		return "sub"
	case '*':
		return "mul"
	}
	return fmt.Sprintf("arithmetic(%q)", a.Op)
}

func (a Arithmetic) Level() int { return 2 }

func (a Arithmetic) Validate() error {
	if a.Op != '+' && a.Op != '-' && a.Op != '*' {
		return fmt.Errorf("arithmetic: op %q is not one of + - *", a.Op)
	}
	if a.MinDigits < 1 || a.MaxDigits < a.MinDigits || a.MaxDigits > 40 {
		return fmt.Errorf("%s: need 1 ≤ min ≤ max ≤ 40 digits, got min=%d max=%d", a.Name(), a.MinDigits, a.MaxDigits)
	}
	if a.MaxDigits < 2 {
		return fmt.Errorf("%s: one-digit operands give fewer than %d problems; raise max digits", a.Name(), minSpace)
	}
	return nil
}

func (a Arithmetic) Generate(rng *rand.Rand, split Split) Example {
	mustValid(a)
	return draw(a.Name(), split, func() (Example, bool) {
		x, y := a.operand(rng), a.operand(rng)
		var bx, by, z big.Int
		bx.SetString(x, 10)
		by.SetString(y, 10)
		switch a.Op {
		case '+':
			z.Add(&bx, &by)
		case '-':
			if bx.Cmp(&by) < 0 {
				x, y = y, x
				bx, by = by, bx
			}
			z.Sub(&bx, &by)
		case '*':
			z.Mul(&bx, &by)
		}
		kx, ky := x, y
		if a.Op != '-' && (len(ky) < len(kx) || len(ky) == len(kx) && ky < kx) {
			kx, ky = ky, kx
		}
		op := string(a.Op)
		return Example{
			Task:         a.Name(),
			Level:        2,
			Key:          a.Name() + ":" + kx + op + ky,
			Prompt:       x + op + y,
			Answer:       z.String(),
			Meta:         map[string]string{"digits": strconv.Itoa(max(len(x), len(y)))},
			Verifier:     integerVerifier{want: z.String()},
			FormatCredit: 0.1,
		}, true
	})
}

// operand draws a number with a digit count in [MinDigits, MaxDigits].
func (a Arithmetic) operand(rng *rand.Rand) string {
	n := a.MinDigits + rng.IntN(a.MaxDigits-a.MinDigits+1)
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rng.IntN(10))
	}
	if n > 1 {
		b[0] = byte('1' + rng.IntN(9))
	}
	return string(b)
}

// integerVerifier accepts any spelling of one integer.
type integerVerifier struct{ want string }

func (v integerVerifier) Verify(answer string) Verdict {
	got, ok := NormalizeInt(answer)
	switch {
	case !ok:
		return Malformed
	case got == v.want:
		return Correct
	}
	return Wrong
}

// maxIntLen bounds the text NormalizeInt reads, so a pathological completion
// costs no big-number work.
const maxIntLen = 1000

// NormalizeInt reads s as an integer and returns it in canonical decimal form
// (no sign for ≥ 0, no leading zeros), or false if s is not one integer.
//
// It accepts surrounding space, a leading '+' or '-' (also U+2212 '−'), digit
// groups separated by ',', '_', ' ' or a thin space ("1,234", "1 234"), a
// trailing '.', and a fraction of zeros ("579.0"). It rejects anything else:
// "5e2", "0x1f", "1/2", "12.5", "twelve".
func NormalizeInt(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) > maxIntLen {
		return "", false
	}
	s = strings.TrimSuffix(s, ".")
	neg := false
	switch {
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	case strings.HasPrefix(s, "-"):
		s, neg = s[1:], true
	case strings.HasPrefix(s, "−"):
		s, neg = s[len("−"):], true
	}
	if whole, frac, ok := strings.Cut(s, "."); ok {
		if frac == "" || strings.Trim(frac, "0") != "" {
			return "", false
		}
		s = whole
	}
	var b strings.Builder
	prevDigit := false
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
			prevDigit = true
		case (r == ',' || r == '_' || r == ' ' || r == '\u2009' || r == '\u202f') && prevDigit:
			prevDigit = false // a separator must sit between digits
		default:
			return "", false
		}
	}
	digits := strings.TrimLeft(b.String(), "0")
	if b.Len() == 0 || !prevDigit {
		return "", false
	}
	if digits == "" {
		return "0", true
	}
	if neg {
		return "-" + digits, true
	}
	return digits, true
}
