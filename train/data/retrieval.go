package data

import (
	"fmt"
	"strings"
)

// Retrieval is the long-context retrieval task: a few facts "The secret
// number of the red fox is 482913." hidden in Tokens tokens of story filler,
// and at the end a question for one of them:
//
//	Some secret numbers are hidden in the story below. Remember them.
//	Once upon a time, … The secret number of the red fox is 482913. … Tim felt proud.
//	Question: What is the secret number of the red fox?
//	Answer: 482913
//
// Each fact sits at a uniformly random place in the filler, so the asked-for
// one is uniformly spread over the context (Example.Depth records where): to
// answer, a model's attention must reach anywhere in the document, far
// beyond a small top-k window of recent keys. The answer occurs exactly once
// in Prompt (values are distinct and the filler has no digits).
type Retrieval struct {
	Tokens int // the document's length in tokens, as Count measures it; 0: 4096
	// MaxTokens, when above Tokens, makes each document's length uniform in
	// [Tokens, MaxTokens].
	MaxTokens int
	Pairs     int // facts per document, one of them asked for; 0: 4 (at most 100)
	Digits    int // digits per secret number; 0: 6 (4–12)
	// Spaced writes each number's digits apart ("4 8 2 9"). A tokenizer with
	// DeepSeek's pre-tokenizer groups digits by three, so a plain number is a
	// few of a thousand rare digit-group tokens, each seen a handful of times
	// in training; spaced, every digit is one of ten frequent tokens, which a
	// small model learns to copy far sooner.
	Spaced bool
	// Letters makes each value Digits consonants, spaced ("k l o b"), a
	// "secret code": a letter after a space is one token in most
	// tokenizers, while a digit after a space is two (DeepSeek's
	// pre-tokenizer splits digits from the space before them), so every
	// value token follows a lone space and copying a value needs one more
	// step of attention per token. No vowels, so no value is a word.
	Letters bool
	// Words keeps the filler's word lists to that many words each (0: all),
	// as Stories.Words does: a nearly predictable filler leaves the facts
	// and answers as most of what a model must learn. The keys always come
	// from the full lists.
	Words int
	// Restate begins each answer by restating the fact up to its value
	// ("Answer: The secret number of the red fox is 482913"), as RULER's
	// needle tasks do: the value then follows the same words as in the fact,
	// so one induction step (find the earlier occurrence, copy what came
	// next) answers it. Without it the model must carry the key from the
	// question to the answer first, a longer chain that small models learn
	// far later.
	Restate bool
	// Questions, when above 1, asks that many of the facts (at most Pairs),
	// each question followed by its answer: Prompt and Answer are the first
	// one's, and Text continues after Prompt + " " + Answer with the others
	// ("\nQuestion: … \nAnswer: …"), asking facts ask+1, ask+2, … (mod
	// Pairs). More supervised answers per document, for training; no extra
	// random draws, so the first question and the context are those of
	// Questions 1 up to the filler's length. 0 or 1: one question.
	Questions int
	// Count measures tokens; nil: ApproxTokens. With a tokenizer's count the
	// document has at most Tokens tokens and at least Tokens minus a
	// sentence or two.
	Count func(string) int
}

const retrievalHeader = "Some secret numbers are hidden in the story below. Remember them.\n"

// codeLetters are the letters of Letters values.
const codeLetters = "bcdfghklmnprstwy"

func (t Retrieval) Generate(seed uint64, i int) (Example, error) {
	tokens, pairs, digits := cmp0(t.Tokens, 4096), cmp0(t.Pairs, 4), cmp0(t.Digits, 6)
	count := t.Count
	if count == nil {
		count = ApproxTokens
	}
	questions := cmp0(t.Questions, 1)
	if pairs < 1 || pairs > 100 || digits < 4 || digits > 12 || questions < 1 || questions > pairs {
		return Example{}, fmt.Errorf("data: retrieval: pairs %d (1–100), digits %d (4–12), questions %d (1–pairs)", pairs, digits, questions)
	}
	r := newRNG(seed, uint64(i), 5)
	if t.MaxTokens > tokens {
		tokens = r.between(tokens, t.MaxTokens)
	}
	v, fv := newVocab(0), newVocab(t.Words) // keys, filler

	// The facts: distinct keys (colour + animal), distinct values.
	keys, values := make([]string, pairs), make([]string, pairs)
	seenK, seenV := map[string]bool{}, map[string]bool{}
	for k := range pairs {
		for keys[k] == "" || seenK[keys[k]] {
			keys[k] = pick(r, v.colors) + " " + pick(r, v.animals)
		}
		for values[k] == "" || seenV[values[k]] {
			var b []byte
			if t.Letters {
				for range digits {
					b = append(b, codeLetters[r.intn(len(codeLetters))])
				}
			} else {
				b = []byte{byte('1' + r.intn(9))}
				for range digits - 1 {
					b = append(b, byte('0'+r.intn(10)))
				}
			}
			values[k] = string(b)
			if t.Spaced || t.Letters {
				values[k] = strings.Join(strings.Split(values[k], ""), " ")
			}
		}
		seenK[keys[k]], seenV[values[k]] = true, true
	}
	noun, header := "number", retrievalHeader
	if t.Letters {
		noun, header = "code", strings.Replace(retrievalHeader, "numbers", "codes", 1)
	}
	needles := make([]string, pairs)
	for k := range pairs {
		needles[k] = fmt.Sprintf("The secret %s of the %s is %s.", noun, keys[k], values[k])
	}
	ask := r.intn(pairs)
	questionOf := func(k int) string {
		q := fmt.Sprintf("\nQuestion: What is the secret %s of the %s?\nAnswer:", noun, keys[k])
		if t.Restate {
			q += fmt.Sprintf(" The secret %s of the %s is", noun, keys[k])
		}
		return q
	}
	question, answer := questionOf(ask), values[ask]
	var more strings.Builder // the other questions, each with its answer
	for j := 1; j < questions; j++ {
		k := (ask + j) % pairs
		fmt.Fprintf(&more, "%s %s", questionOf(k), values[k])
	}

	// Filler sentences to fill the budget (pieces are counted one by one,
	// then the whole is measured and trimmed below).
	budget := tokens - count(header) - count(question+" "+answer+more.String())
	for _, n := range needles {
		budget -= count(" " + n)
	}
	if budget < 0 {
		return Example{}, fmt.Errorf("data: retrieval: %d tokens cannot hold %d facts and the question", tokens, pairs)
	}
	var filler []string
	for used := 0; ; {
		story := fv.story(r, 2, 6)
		for _, s := range story {
			used += count(" " + s)
			if used > budget {
				break
			}
			filler = append(filler, s)
		}
		if used > budget {
			break
		}
	}
	// Each fact goes before filler sentence slot[k] (slot len(filler): at the end).
	slots := make([]float64, pairs)
	for k := range slots {
		slots[k] = r.float64()
	}
	build := func() Example {
		var b strings.Builder
		b.WriteString(header)
		start, at := b.Len(), 0
		sep := func() {
			if b.Len() > start {
				b.WriteByte(' ')
			}
		}
		for j := 0; j <= len(filler); j++ {
			for k, u := range slots {
				if int(u*float64(len(filler)+1)) == j {
					sep()
					if k == ask {
						at = b.Len() - start
					}
					b.WriteString(needles[k])
				}
			}
			if j < len(filler) {
				sep()
				b.WriteString(filler[j])
			}
		}
		context := b.Len() - start
		prompt := b.String() + question
		return Example{Text: prompt + " " + answer + more.String(), Prompt: prompt, Answer: answer, Depth: float64(at) / float64(context)}
	}
	ex := build()
	// Trim to the exact count: drop filler sentences from the end.
	for n := count(ex.Text); n > tokens; n = count(ex.Text) {
		if len(filler) == 0 {
			return Example{}, fmt.Errorf("data: retrieval: %d tokens cannot hold %d facts and the question", tokens, pairs)
		}
		per := max(1, (count(strings.Join(filler, " "))+len(filler)-1)/len(filler))
		drop := min(len(filler), max(1, (n-tokens+per-1)/per))
		filler = filler[:len(filler)-drop]
		ex = build()
	}
	return ex, nil
}

// Accuracy is exact-match accuracy, overall and by where the answer sat
// in the context (ten depth buckets, [0, 0.1) … [0.9, 1]).
type Accuracy struct {
	N, Correct int
	Depth      [10]struct{ N, Correct int }
}

// Rate is Correct/N (0 when N is 0).
func (a Accuracy) Rate() float64 {
	if a.N == 0 {
		return 0
	}
	return float64(a.Correct) / float64(a.N)
}

func (a Accuracy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d/%d = %.3f; by depth:", a.Correct, a.N, a.Rate())
	for _, d := range a.Depth {
		if d.N == 0 {
			b.WriteString(" -")
		} else {
			fmt.Fprintf(&b, " %.2f", float64(d.Correct)/float64(d.N))
		}
	}
	return b.String()
}

// Match reports whether a model's continuation answers want: the first
// whitespace-separated field of got, without trailing sentence punctuation,
// equals want. Models keep generating after the answer; only its first word
// counts. For answers of several words (the copy tasks) the same number of
// fields is compared.
func Match(got, want string) bool {
	wf := strings.Fields(want)
	gf := strings.Fields(got)
	if len(wf) == 0 || len(gf) < len(wf) {
		return false
	}
	gf = gf[:len(wf)]
	gf[len(gf)-1] = strings.TrimRight(gf[len(gf)-1], ".,;:!?")
	return strings.Join(gf, " ") == strings.Join(wf, " ")
}

// Score scores answers[i], a model's continuation of examples[i].Prompt,
// against examples[i].Answer by Match.
func Score(examples []Example, answers []string) (Accuracy, error) {
	var a Accuracy
	if len(answers) != len(examples) {
		return a, fmt.Errorf("data: %d answers for %d examples", len(answers), len(examples))
	}
	for i, ex := range examples {
		if ex.Answer == "" {
			return a, fmt.Errorf("data: example %d has no answer to score against", i)
		}
		b := min(9, max(0, int(ex.Depth*10)))
		ok := Match(answers[i], ex.Answer)
		a.N++
		a.Depth[b].N++
		if ok {
			a.Correct++
			a.Depth[b].Correct++
		}
	}
	return a, nil
}
