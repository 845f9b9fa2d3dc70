package env

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// SequenceOp is what a Sequence task asks for.
type SequenceOp int

const (
	Copy SequenceOp = iota
	Reverse
	Sort
)

var sequenceNames = [...]string{Copy: "copy", Reverse: "reverse", Sort: "sort"}

// Sequence is T1: copy, reverse or sort a string of digits (or lowercase
// letters) whose length is drawn uniformly from [MinLen, MaxLen].
//
// Prompt "reverse 38291", answer "19283". The verifier ignores whitespace in
// the answer (so "1 9 2 8 3" is correct) and, for letters, case; anything
// outside the alphabet is malformed. Scoring is exact 1/0 (FormatCredit 0).
//
// Canonical problem: the string itself for copy and reverse; its sorted form
// for sort, so no multiset of symbols is seen in both splits.
type Sequence struct {
	Op             SequenceOp
	MinLen, MaxLen int  // string length range, 1–64
	Letters        bool // a–z instead of 0–9
}

func (s Sequence) Name() string {
	if s.Op < 0 || int(s.Op) >= len(sequenceNames) {
		return fmt.Sprintf("sequence(%d)", int(s.Op))
	}
	return sequenceNames[s.Op]
}

func (s Sequence) Level() int { return 1 }

func (s Sequence) alphabet() string {
	if s.Letters {
		return "abcdefghijklmnopqrstuvwxyz"
	}
	return "0123456789"
}

func (s Sequence) Validate() error {
	if s.Op < 0 || int(s.Op) >= len(sequenceNames) {
		return fmt.Errorf("sequence: unknown op %d", int(s.Op))
	}
	if s.MinLen < 1 || s.MaxLen < s.MinLen || s.MaxLen > 64 {
		return fmt.Errorf("%s: need 1 ≤ min ≤ max ≤ 64 for the length, got min=%d max=%d", s.Name(), s.MinLen, s.MaxLen)
	}
	// Count canonical problems (strings, or multisets for sort) up to minSpace.
	k := len(s.alphabet())
	space := 0
	for n := s.MinLen; n <= s.MaxLen && space < minSpace; n++ {
		if s.Op == Sort {
			space += binomialCapped(n+k-1, k-1, minSpace)
		} else {
			space += powCapped(k, n, minSpace)
		}
	}
	if space < minSpace {
		return fmt.Errorf("%s: lengths %d–%d give fewer than %d problems; raise max", s.Name(), s.MinLen, s.MaxLen, minSpace)
	}
	return nil
}

func (s Sequence) Generate(rng *rand.Rand, split Split) Example {
	mustValid(s)
	alpha := s.alphabet()
	return draw(s.Name(), split, func() (Example, bool) {
		n := s.MinLen + rng.IntN(s.MaxLen-s.MinLen+1)
		b := make([]byte, n)
		for i := range b {
			b[i] = alpha[rng.IntN(len(alpha))]
		}
		in := string(b)
		sorted := slices.Clone(b)
		slices.Sort(sorted)
		var answer, key string
		switch s.Op {
		case Copy:
			answer, key = in, in
		case Reverse:
			slices.Reverse(b)
			answer, key = string(b), in
		case Sort:
			answer, key = string(sorted), string(sorted)
		}
		return Example{
			Task:     s.Name(),
			Level:    1,
			Key:      s.Name() + ":" + key,
			Prompt:   s.Name() + " " + in,
			Answer:   answer,
			Meta:     map[string]string{"length": strconv.Itoa(n)},
			Verifier: sequenceVerifier{want: answer, alphabet: alpha},
		}, true
	})
}

// sequenceVerifier accepts exactly want, with whitespace removed and letters
// lowercased.
type sequenceVerifier struct{ want, alphabet string }

func (v sequenceVerifier) Verify(answer string) Verdict {
	var b strings.Builder
	for _, r := range answer {
		if unicode.IsSpace(r) {
			continue
		}
		r = unicode.ToLower(r)
		if r >= 0x80 || !strings.ContainsRune(v.alphabet, r) {
			return Malformed
		}
		b.WriteRune(r)
	}
	switch b.String() {
	case "":
		return Malformed
	case v.want:
		return Correct
	}
	return Wrong
}

// powCapped is k**n, or limit if that is larger.
func powCapped(k, n, limit int) int {
	p := 1
	for range n {
		if p *= k; p >= limit {
			return limit
		}
	}
	return p
}

// binomialCapped is C(n, r), or limit if that is larger.
func binomialCapped(n, r, limit int) int {
	c := 1
	for i := 1; i <= r; i++ {
		c = c * (n - r + i) / i // exact: c is C(n-r+i, i) after the step
		if c >= limit {
			return limit
		}
	}
	return c
}
