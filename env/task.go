package env

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"

	"github.com/dsv32/dsv32/chat"
)

// Split names one side of a task's problems. Every problem belongs to exactly
// one split, decided by a hash of its canonical form (SplitOf), so a test
// problem is never generated for training, whatever the seed.
type Split int

const (
	Train Split = iota
	Test
)

func (s Split) String() string {
	switch s {
	case Train:
		return "train"
	case Test:
		return "test"
	}
	return fmt.Sprintf("Split(%d)", int(s))
}

// MarshalText spells the split "train" or "test", in JSON too.
func (s Split) MarshalText() ([]byte, error) {
	if s != Train && s != Test {
		return nil, fmt.Errorf("env: invalid split %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText reads "train" or "test".
func (s *Split) UnmarshalText(b []byte) error {
	switch string(b) {
	case "train":
		*s = Train
	case "test":
		*s = Test
	default:
		return fmt.Errorf("env: split %q is neither train nor test", b)
	}
	return nil
}

// testShare is the share of canonical problems held out for Test: a problem is
// a test problem when the hash of its key is 0 modulo testShare.
const testShare = 10

// SplitOf is the split a problem with canonical key belongs to: Test for about
// one key in ten (FNV-1a 64 of the key, modulo 10), Train otherwise.
func SplitOf(key string) Split {
	h := fnv.New64a()
	h.Write([]byte("dsv32/env/split\x00"))
	h.Write([]byte(key))
	if h.Sum64()%testShare == 0 {
		return Test
	}
	return Train
}

// Verdict is what a verifier says about an extracted answer.
type Verdict int

const (
	Malformed Verdict = iota // not an answer of the task's form (no number, not an expression, …)
	Wrong                    // well formed, but not a solution
	Correct
)

func (v Verdict) String() string {
	switch v {
	case Malformed:
		return "malformed"
	case Wrong:
		return "wrong"
	case Correct:
		return "correct"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Verifier checks a final answer, already extracted from the completion
// (ExtractAnswer), against one problem. Implementations are small values
// that carry the problem; they never panic.
type Verifier interface {
	Verify(answer string) Verdict
}

// Example is one generated problem: the prompt, a reference answer and the
// verifier that grades any answer. Its JSON form (for dumping an evaluation
// set) has everything but the verifier.
type Example struct {
	Task  string `json:"task"`  // the name of the task that generated it (a Mix's member, not "mix")
	Level int    `json:"level"` // its rung on the ladder, rl.md §11: 0–3
	Split Split  `json:"split"`
	Key   string `json:"key"` // the canonical problem, e.g. "add:12+34"; SplitOf(Key) == Split

	// Prompt is the user message's text. Messages, when set, is the whole
	// conversation to encode instead (a system prompt, tools, earlier turns);
	// Chat returns whichever applies.
	Prompt   string         `json:"prompt"`
	Messages []chat.Message `json:"messages,omitempty"`

	Answer string            `json:"answer"`         // a reference answer (for Countdown, one solution of many)
	Meta   map[string]string `json:"meta,omitempty"` // task parameters, for logs: "length", "digits", "numbers", "target", …

	// Verifier grades answers; nil means an exact match with Answer.
	Verifier Verifier `json:"-"`
	// FormatCredit is the outcome score of a well-formed wrong answer: 0.1 for
	// tasks with a fixed answer format (T2, T3: TinyZero's scheme), 0 for exact
	// 1/0 tasks (T0, T1). rl.md §9.
	FormatCredit float64 `json:"format_credit,omitempty"`
}

// Chat is the conversation to encode as the prompt: Messages if set, else
// one user message with Prompt.
func (e Example) Chat() []chat.Message {
	if len(e.Messages) > 0 {
		return e.Messages
	}
	return []chat.Message{{Role: chat.RoleUser, Content: e.Prompt}}
}

// Verify grades an extracted answer with the example's verifier, or by exact
// match (surrounding space ignored) with Answer when it has none.
func (e Example) Verify(answer string) Verdict {
	if e.Verifier != nil {
		return e.Verifier.Verify(answer)
	}
	a := strings.TrimSpace(answer)
	switch {
	case a == "":
		return Malformed
	case a == strings.TrimSpace(e.Answer):
		return Correct
	}
	return Wrong
}

// Task generates problems of one kind.
//
// Level is the task's rung on rl.md §11's ladder (0–4). Validate reports
// knobs that are out of range or give too few problems to hold some out.
// Generate draws one problem of the given split from rng: the same rng state
// gives the same Example. It panics only if Validate would fail (Lookup
// validates; a task built by hand should be validated once by its builder).
type Task interface {
	Name() string
	Level() int
	Validate() error
	Generate(rng *rand.Rand, split Split) Example
}

// Sample draws n examples of one split with a generator seeded from seed.
// The same arguments give the same examples; Train and Test streams are
// drawn from different generator streams as well as from disjoint problems.
func Sample(t Task, split Split, seed uint64, n int) []Example {
	rng := rand.New(rand.NewPCG(seed, 0x656e76+uint64(split)))
	out := make([]Example, n)
	for i := range out {
		out[i] = t.Generate(rng, split)
	}
	return out
}

// maxDraws bounds the rejection loop that finds a problem of the wanted split.
// Validate insists on at least minSpace problems, so with one in ten held out
// the loop ends after ten draws on average (Countdown's hardest knobs need a
// few thousand attempts per problem; see its test).
const (
	maxDraws = 1000000
	minSpace = 100
)

// draw calls gen until it returns a problem (ok) of the wanted split.
func draw(name string, split Split, gen func() (ex Example, ok bool)) Example {
	for range maxDraws {
		ex, ok := gen()
		if ok && SplitOf(ex.Key) == split {
			ex.Split = split
			return ex
		}
	}
	panic(fmt.Sprintf("env: %s: no %s problem in %d draws; widen the task's knobs", name, split, maxDraws))
}

// mustValid panics with Validate's error: Generate's contract for bad knobs.
func mustValid(t Task) {
	if err := t.Validate(); err != nil {
		panic("env: " + err.Error())
	}
}
