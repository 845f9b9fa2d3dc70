package env

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Bandit is T0: one fixed prompt, one correct digit of ten. It checks the sign
// of the policy gradient; the reward should reach 1 within tens of steps.
//
// Prompt "pick a digit", answer Answer. There is only one problem, so it has
// no held-out split: Generate returns it for either split, marked as asked.
type Bandit struct {
	Answer int // the rewarded digit, 0–9
}

func (b Bandit) Name() string { return "bandit" }
func (b Bandit) Level() int   { return 0 }

func (b Bandit) Validate() error {
	if b.Answer < 0 || b.Answer > 9 {
		return fmt.Errorf("bandit: answer must be a digit 0–9, got %d", b.Answer)
	}
	return nil
}

func (b Bandit) Generate(rng *rand.Rand, split Split) Example {
	mustValid(b)
	a := strconv.Itoa(b.Answer)
	return Example{
		Task: "bandit", Level: 0, Split: split, Key: "bandit",
		Prompt: "pick a digit", Answer: a,
		Verifier: integerVerifier{want: a},
	}
}

// Mix is T4: each example comes from one of Tasks, chosen uniformly. Its
// examples keep their member's Task name, level, key and verifier, so each is
// graded by its own verifier and held out by its own split.
type Mix struct {
	Tasks []Task
}

func (m Mix) Name() string { return "mix" }
func (m Mix) Level() int   { return 4 }

func (m Mix) Validate() error {
	if len(m.Tasks) == 0 {
		return fmt.Errorf("mix: no tasks")
	}
	for _, t := range m.Tasks {
		if t == nil {
			return fmt.Errorf("mix: nil task")
		}
		if err := t.Validate(); err != nil {
			return fmt.Errorf("mix: %w", err)
		}
	}
	return nil
}

func (m Mix) Generate(rng *rand.Rand, split Split) Example {
	mustValid(m)
	return m.Tasks[rng.IntN(len(m.Tasks))].Generate(rng, split)
}

// Entry is one rung of the ladder as the CLI sees it.
type Entry struct {
	Name  string
	Level int    // rl.md §11: T0 … T4
	Knobs string // the knobs Lookup accepts, with their defaults
	Doc   string
	make  func(k *knobs) (Task, error)
}

// Ladder lists the tasks Lookup knows, in rl.md §11's order, with the
// defaults §11 names: T1 at lengths 4–12, T2 at 2–3-digit operands
// (multiplication 2×2), T3 as Countdown-3 with targets ≤ 100. (A function,
// not a package variable, because the mix entry looks up its members.)
func Ladder() []Entry {
	return []Entry{
		{Name: "bandit", Level: 0, Knobs: "answer=7", Doc: "one prompt, one right digit of ten",
			make: func(k *knobs) (Task, error) { return Bandit{Answer: k.int("answer", 7)}, nil }},
		{Name: "copy", Level: 1, Knobs: "min=4 max=12 letters=0", Doc: "repeat a string",
			make: sequence(Copy)},
		{Name: "reverse", Level: 1, Knobs: "min=4 max=12 letters=0", Doc: "reverse a string",
			make: sequence(Reverse)},
		{Name: "sort", Level: 1, Knobs: "min=4 max=12 letters=0", Doc: "sort a string's symbols",
			make: sequence(Sort)},
		{Name: "add", Level: 2, Knobs: "min=2 max=3 (or digits=N)", Doc: "a+b",
			make: arithmetic('+', 2, 3)},
		{Name: "sub", Level: 2, Knobs: "min=2 max=3 (or digits=N)", Doc: "a−b, a ≥ b",
			make: arithmetic('-', 2, 3)},
		{Name: "mul", Level: 2, Knobs: "min=2 max=2 (or digits=N)", Doc: "a×b",
			make: arithmetic('*', 2, 2)},
		{Name: "countdown", Level: 3, Knobs: "numbers=3 max=50 target=100", Doc: "reach the target with + − × ÷, each number at most once",
			make: func(k *knobs) (Task, error) {
				return Countdown{Numbers: k.int("numbers", 3), MaxNumber: k.int("max", 50), MaxTarget: k.int("target", 100)}, nil
			}},
		{Name: "mix", Level: 4, Knobs: "tasks=copy+reverse+sort+add+mul+countdown", Doc: "T1–T3 in one run, each at its defaults",
			make: func(k *knobs) (Task, error) {
				var m Mix
				for name := range strings.SplitSeq(k.str("tasks", "copy+reverse+sort+add+mul+countdown"), "+") {
					if name == "mix" {
						return nil, fmt.Errorf("a mix cannot contain a mix")
					}
					t, err := Lookup(name)
					if err != nil {
						return nil, err
					}
					m.Tasks = append(m.Tasks, t)
				}
				return m, nil
			}},
	}
}

func sequence(op SequenceOp) func(*knobs) (Task, error) {
	return func(k *knobs) (Task, error) {
		return Sequence{Op: op, MinLen: k.int("min", 4), MaxLen: k.int("max", 12), Letters: k.int("letters", 0) != 0}, nil
	}
}

func arithmetic(op byte, lo, hi int) func(*knobs) (Task, error) {
	return func(k *knobs) (Task, error) {
		minD, maxD := lo, hi
		if d := k.int("digits", 0); d != 0 {
			minD, maxD = d, d
		}
		return Arithmetic{Op: op, MinDigits: k.int("min", minD), MaxDigits: k.int("max", maxD)}, nil
	}
}

// Lookup makes a task from a spec: a name from Ladder, optionally followed by
// ':' and comma-separated knobs, e.g. "sort", "reverse:min=8,max=16",
// "add:digits=5", "countdown:numbers=4", "mix:tasks=copy+add". The task is
// validated; an unknown name or knob, or a bad value, is an error that names it.
func Lookup(spec string) (Task, error) {
	name, args, _ := strings.Cut(strings.TrimSpace(spec), ":")
	ladder := Ladder()
	for _, e := range ladder {
		if e.Name != name {
			continue
		}
		k, err := parseKnobs(args)
		if err != nil {
			return nil, fmt.Errorf("env: task %q: %w", spec, err)
		}
		t, err := e.make(&k)
		if err == nil {
			err = k.err
		}
		if err == nil {
			err = k.unused()
		}
		if err == nil {
			err = t.Validate()
		}
		if err != nil {
			return nil, fmt.Errorf("env: task %q: %w", spec, err)
		}
		return t, nil
	}
	names := make([]string, len(ladder))
	for i, e := range ladder {
		names[i] = e.Name
	}
	return nil, fmt.Errorf("env: unknown task %q (known: %s)", name, strings.Join(names, ", "))
}

// knobs are a spec's key=value pairs; reading one marks it used.
type knobs struct {
	vals map[string]string
	used map[string]bool
	err  error
}

func parseKnobs(s string) (knobs, error) {
	k := knobs{vals: map[string]string{}, used: map[string]bool{}}
	if s == "" {
		return k, nil
	}
	for kv := range strings.SplitSeq(s, ",") {
		key, val, ok := strings.Cut(kv, "=")
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		if !ok || key == "" {
			return k, fmt.Errorf("knob %q is not key=value", kv)
		}
		if _, dup := k.vals[key]; dup {
			return k, fmt.Errorf("knob %q given twice", key)
		}
		k.vals[key] = val
	}
	return k, nil
}

func (k *knobs) str(key, def string) string {
	k.used[key] = true
	if v, ok := k.vals[key]; ok {
		return v
	}
	return def
}

func (k *knobs) int(key string, def int) int {
	v, ok := k.vals[key]
	k.used[key] = true
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil && k.err == nil {
		k.err = fmt.Errorf("knob %s=%q is not an integer", key, v)
	}
	return n
}

func (k *knobs) unused() error {
	for _, key := range slices.Sorted(maps.Keys(k.vals)) {
		if !k.used[key] {
			return fmt.Errorf("unknown knob %q", key)
		}
	}
	return nil
}
