package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode"
)

// Example is one synthetic document. Text is the whole document, what
// pre-training reads. Tasks with a question also give Prompt and Answer,
// with Text == Prompt + " " + Answer: a model is shown Prompt and scored on
// whether it continues with Answer (Score).
type Example struct {
	Text   string `json:"text"`
	Prompt string `json:"prompt,omitempty"`
	Answer string `json:"answer,omitempty"`
	// Depth is, for the retrieval task, where the asked-for fact sits in the
	// context: 0 at its start, 1 at its end (a fraction of the bytes).
	Depth float64 `json:"depth,omitempty"`
}

// Generator makes synthetic examples. Example i of seed s is always the
// same, whatever else is generated, so sets can be made in pieces.
type Generator interface {
	Generate(seed uint64, i int) (Example, error)
}

// Generate returns examples 0..n-1 of g for seed, made on GOMAXPROCS
// goroutines (so a Retrieval.Count must be safe for concurrent use;
// tokenizer.BPE's Encode is). The result does not depend on the number of
// goroutines.
func Generate(g Generator, seed uint64, n int) ([]Example, error) {
	out := make([]Example, n)
	errs := make([]error, n)
	workers := min(n, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < n; i += workers {
				out[i], errs[i] = g.Generate(seed, i)
				if errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Stories are tiny children's stories: a character, a few events, an ending,
// over the built-in word lists.
type Stories struct {
	Words        int // words kept per list (names, animals, objects, …); 0: all (10–24 per list)
	MinSentences int // events between the opening and the ending; 0: 2
	MaxSentences int // 0: 6
	// Repeat tells each story that many times (0 or 1: once), separated by a
	// blank line. Every telling after the first is predictable only by
	// looking back at the first, so the text trains copying (induction)
	// attention densely: every token supervises it, not just an answer's few.
	Repeat int
}

func (s Stories) Generate(seed uint64, i int) (Example, error) {
	lo, hi := cmp0(s.MinSentences, 2), cmp0(s.MaxSentences, 6)
	if lo < 0 || hi < lo {
		return Example{}, fmt.Errorf("data: stories: sentences [%d, %d] is not a range", lo, hi)
	}
	if s.Repeat < 0 || s.Repeat > 16 {
		return Example{}, fmt.Errorf("data: stories: repeat %d, want 0–16", s.Repeat)
	}
	r := newRNG(seed, uint64(i), 1)
	v := newVocab(s.Words)
	text := strings.Join(v.story(r, lo, hi), " ")
	if s.Repeat > 1 {
		text = strings.TrimSuffix(strings.Repeat(text+"\n\n", s.Repeat), "\n\n")
	}
	return Example{Text: text}, nil
}

func cmp0(x, def int) int {
	if x == 0 {
		return def
	}
	return x
}

// story returns the sentences of one story.
func (v vocab) story(r *rng, lo, hi int) []string {
	name := pick(r, v.names)
	friend := pick(r, v.names)
	for friend == name {
		friend = pick(r, v.names)
	}
	animal := pick(r, v.animals)
	var out []string
	if r.intn(2) == 0 {
		out = append(out, fmt.Sprintf("Once upon a time, there was %s %s named %s.", a(pick(r, v.adjectives)), animal, name))
	} else {
		out = append(out, fmt.Sprintf("%s was %s %s who lived near the %s.", name, a(pick(r, v.adjectives)), animal, pick(r, v.places)))
	}
	for range r.between(lo, hi) {
		out = append(out, v.event(r, name, friend))
	}
	switch r.intn(3) {
	case 0:
		out = append(out, fmt.Sprintf("At the end of the day, %s felt %s.", name, pick(r, v.feelings)))
	case 1:
		out = append(out, fmt.Sprintf("%s and %s were good friends after that.", name, friend))
	default:
		out = append(out, fmt.Sprintf("From then on, %s always %s in the %s.", name, pick(r, v.verbs)[1], pick(r, v.places)))
	}
	return out
}

// a puts "a" or "an" before a word.
func a(word string) string {
	if strings.ContainsRune("aeiou", rune(word[0])) {
		return "an " + word
	}
	return "a " + word
}

// event is one middle sentence of a story about name and friend.
func (v vocab) event(r *rng, name, friend string) string {
	switch r.intn(9) {
	case 0:
		return fmt.Sprintf("%s liked to %s in the %s.", name, pick(r, v.verbs)[0], pick(r, v.places))
	case 1:
		return fmt.Sprintf("One day, %s found %s %s near the %s.", name, a(pick(r, v.colors)), pick(r, v.objects), pick(r, v.places))
	case 2:
		return fmt.Sprintf("%s saw %s %s by the %s.", name, a(pick(r, v.adjectives)), pick(r, v.animals), pick(r, v.places))
	case 3:
		return fmt.Sprintf("%s said, \"%s\"", friend, pick(r, v.quotes))
	case 4:
		return fmt.Sprintf("%s and %s %s in the %s all day.", name, friend, pick(r, v.verbs)[1], pick(r, v.places))
	case 5:
		return fmt.Sprintf("%s gave the %s to %s.", name, pick(r, v.objects), friend)
	case 6:
		return fmt.Sprintf("%s was very %s.", friend, pick(r, v.feelings))
	case 7:
		return fmt.Sprintf("%s wanted to %s with the %s %s.", name, pick(r, v.verbs)[0], pick(r, v.colors), pick(r, v.objects))
	default:
		return fmt.Sprintf("Then it started to rain, so they ran to the %s.", pick(r, v.places))
	}
}

// Arith are lines of arithmetic facts, "12 + 35 = 47"; the last line is the
// question: Prompt ends with "=", Answer is the result.
type Arith struct {
	Digits int    // operands have 1..Digits digits; 0: 2
	Lines  int    // facts per document; 0: 8
	Ops    string // a subset of "+-*"; "": all three. Subtraction never goes below 0.
}

func (a Arith) Generate(seed uint64, i int) (Example, error) {
	digits, lines, ops := cmp0(a.Digits, 2), cmp0(a.Lines, 8), a.Ops
	if ops == "" {
		ops = "+-*"
	}
	if digits < 1 || digits > 9 || lines < 1 || strings.Trim(ops, "+-*") != "" {
		return Example{}, fmt.Errorf("data: arith: digits %d (1–9), lines %d (≥ 1), ops %q (of +-*)", digits, lines, ops)
	}
	r := newRNG(seed, uint64(i), 2)
	operand := func() int64 {
		n := r.between(1, digits)
		lo, hi := int64(1), int64(10)
		for range n - 1 {
			lo, hi = lo*10, hi*10
		}
		if n == 1 {
			lo = 0
		}
		return lo + int64(r.intn(int(hi-lo)))
	}
	var b strings.Builder
	var prompt, answer string
	for l := range lines {
		x, y, op := operand(), operand(), ops[r.intn(len(ops))]
		var z int64
		switch op {
		case '+':
			z = x + y
		case '-':
			if x < y {
				x, y = y, x
			}
			z = x - y
		default:
			z = x * y
		}
		q := fmt.Sprintf("%d %c %d =", x, op, y)
		if l == lines-1 {
			prompt, answer = b.String()+q, strconv.FormatInt(z, 10)
		}
		fmt.Fprintf(&b, "%s %d\n", q, z)
	}
	return Example{Text: prompt + " " + answer, Prompt: prompt, Answer: answer}, nil
}

// Copy are lines "copy: q w e -> q w e" (or "reverse: q w e -> e w q"), of
// letters from a-z; the last line is the question: Prompt ends with "->".
type Copy struct {
	Reverse bool
	MinLen  int // letters per string; 0: 3
	MaxLen  int // 0: 10
	Lines   int // 0: 4
	Letters int // alphabet size, the first Letters of a-z; 0: 26
}

func (c Copy) Generate(seed uint64, i int) (Example, error) {
	lo, hi, lines, letters := cmp0(c.MinLen, 3), cmp0(c.MaxLen, 10), cmp0(c.Lines, 4), cmp0(c.Letters, 26)
	if lo < 1 || hi < lo || lines < 1 || letters < 1 || letters > 26 {
		return Example{}, fmt.Errorf("data: copy: length [%d, %d], lines %d, letters %d (1–26)", lo, hi, lines, letters)
	}
	word, salt := "copy", uint64(3)
	if c.Reverse {
		word, salt = "reverse", 4
	}
	r := newRNG(seed, uint64(i), salt)
	var b strings.Builder
	var prompt, answer string
	for l := range lines {
		s := make([]string, r.between(lo, hi))
		for k := range s {
			s[k] = string(rune('a' + r.intn(letters)))
		}
		out := append([]string(nil), s...)
		if c.Reverse {
			for x, y := 0, len(out)-1; x < y; x, y = x+1, y-1 {
				out[x], out[y] = out[y], out[x]
			}
		}
		q := word + ": " + strings.Join(s, " ") + " ->"
		if l == lines-1 {
			prompt, answer = b.String()+q, strings.Join(out, " ")
		}
		b.WriteString(q + " " + strings.Join(out, " ") + "\n")
	}
	return Example{Text: prompt + " " + answer, Prompt: prompt, Answer: answer}, nil
}

// Recall is multi-query associative recall (Zoology's MQAR) in words:
//
//	recall: fox k owl m cat b ; owl m cat b fox k
//
// key-value pairs (distinct animals, consonants), then every key asked again
// in a random order, each followed by its value. Every asked value needs the
// lookup a retrieval answer needs (find the key's earlier occurrence, copy
// what followed it) at short range, and the asked values are a quarter of
// the document's tokens. The last query is the question: Prompt ends with its key.
type Recall struct {
	Pairs int // key-value pairs per document; 0: 8 (1–20)
}

func (c Recall) Generate(seed uint64, i int) (Example, error) {
	pairs := cmp0(c.Pairs, 8)
	if pairs < 1 || pairs > len(wordAnimals) {
		return Example{}, fmt.Errorf("data: recall: %d pairs, want 1–%d", pairs, len(wordAnimals))
	}
	r := newRNG(seed, uint64(i), 6)
	keys := r.permutation(len(wordAnimals))[:pairs]
	vals := make([]byte, pairs)
	for k := range vals {
		vals[k] = codeLetters[r.intn(len(codeLetters))]
	}
	var b strings.Builder
	b.WriteString("recall:")
	for k, key := range keys {
		fmt.Fprintf(&b, " %s %c", wordAnimals[key], vals[k])
	}
	b.WriteString(" ;")
	order := r.permutation(pairs)
	var prompt string
	for j, k := range order {
		fmt.Fprintf(&b, " %s", wordAnimals[keys[k]])
		if j == pairs-1 {
			prompt = b.String()
		}
		fmt.Fprintf(&b, " %c", vals[k])
	}
	last := order[pairs-1]
	return Example{Text: b.String(), Prompt: prompt, Answer: string(vals[last])}, nil
}

// Induction is the classic test for copying attention ("induction heads"):
// a random sequence of pseudo-words, then the same sequence again,
//
//	rep: miv sic moh … | miv sic moh …
//
// Each word of the second telling is predictable only by finding the same
// word in the first telling and copying the one after it; a model without
// that lookup stays at ln Vocab on both halves. Prompt ends with "|".
type Induction struct {
	Vocab  int // distinct pseudo-words; 0: 256 (2–1280)
	MinLen int // words per sequence; 0: 30
	MaxLen int // 0: 60
}

func (c Induction) Generate(seed uint64, i int) (Example, error) {
	vocab, lo, hi := cmp0(c.Vocab, 256), cmp0(c.MinLen, 30), cmp0(c.MaxLen, 60)
	words := pseudoWords()
	if vocab < 2 || vocab > len(words) || lo < 1 || hi < lo {
		return Example{}, fmt.Errorf("data: induction: vocab %d (2–%d), length [%d, %d]", vocab, len(words), lo, hi)
	}
	r := newRNG(seed, uint64(i), 7)
	seq := make([]string, r.between(lo, hi))
	for k := range seq {
		seq[k] = words[r.intn(vocab)]
	}
	s := strings.Join(seq, " ")
	return Example{Text: "rep: " + s + " | " + s, Prompt: "rep: " + s + " |", Answer: s}, nil
}

// pseudoWords are the consonant-vowel-consonant syllables of 16 consonants
// and 5 vowels (1280), in a fixed shuffled order so that any prefix mixes
// all letters.
func pseudoWords() []string {
	const cons, vows = "bcdfghklmnprstvz", "aeiou"
	var w []string
	for _, a := range cons {
		for _, b := range vows {
			for _, c := range cons {
				w = append(w, string([]rune{a, b, c}))
			}
		}
	}
	r := newRNG(0, 0, 8)
	for k := len(w) - 1; k > 0; k-- {
		j := r.intn(k + 1)
		w[k], w[j] = w[j], w[k]
	}
	return w
}

// WriteJSONL writes examples one JSON object a line, atomically.
func WriteJSONL(path string, examples []Example) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for _, ex := range examples {
		if err := enc.Encode(ex); err != nil {
			return fmt.Errorf("data: %w", err)
		}
	}
	return writeFileAtomic(path, buf.Bytes())
}

// ReadJSONL reads examples written by WriteJSONL (blank lines skipped).
func ReadJSONL(path string) ([]Example, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	var out []Example
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var ex Example
		if err := json.Unmarshal(sc.Bytes(), &ex); err != nil {
			return nil, fmt.Errorf("data: %s:%d: %w", path, line, err)
		}
		out = append(out, ex)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("data: %s: %w", path, err)
	}
	return out, nil
}

// ApproxTokens estimates a token count without a tokenizer: one per word,
// one per punctuation mark, one per three digits. A small BPE trained on
// these tasks lands near it; pass a real tokenizer's count for exact lengths.
func ApproxTokens(s string) int {
	n, digits := 0, 0
	inWord := false
	for _, c := range s {
		switch {
		case unicode.IsDigit(c):
			if digits%3 == 0 {
				n++
			}
			digits++
			inWord = false
			continue
		case unicode.IsLetter(c):
			if !inWord {
				n++
			}
			inWord = true
		case unicode.IsSpace(c):
			inWord = false
		default:
			n++
			inWord = false
		}
		digits = 0
	}
	return n
}
