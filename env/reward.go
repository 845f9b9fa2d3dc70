package env

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dsv32/dsv32/chat"
)

// Completion is one sampled response, as the RL loop hands it to rewards.
type Completion struct {
	// Text is what the model generated after the prompt, special tokens
	// spelled as text (the tokenizer's decoding), ending in EOS when the model
	// stopped by itself.
	Text string
	// Thinking says the prompt opened <think> (thinking mode): Text then
	// starts with the reasoning and must close it with </think>.
	Thinking bool
	// Raw says the model was prompted without the chat format (a tiny ladder
	// model): Text, less a final EOS, is the content; there is no reasoning
	// and no tool call, and Format scores 0.
	Raw bool
	// Tokens is the number of generated tokens, for Length. Zero means
	// unknown, and Length counts the runes of Text instead.
	Tokens int
	// Truncated says generation stopped at the token limit, not by itself.
	Truncated bool
}

// Message parses the completion into an assistant message: chat.Parse in
// the completion's mode, or for a Raw completion its text as the content.
func (c Completion) Message() (chat.Message, error) {
	if c.Raw {
		return chat.Message{Role: chat.RoleAssistant, Content: strings.TrimSuffix(c.Text, chat.EOS)}, nil
	}
	return chat.Parse(c.Text, c.Thinking)
}

// Reward scores one completion of one example.
//
// The score is a float64 whose range each reward documents. Details explain it
// for logs. Whatever the completion's text, a Reward returns a score and
// never panics: a malformed or truncated completion is a low score, not an
// error. The error is for failures of the scorer itself (a judge endpoint
// that cannot be reached, a cancelled ctx), where a made-up score would
// mislead training; of the rewards here only Rubric (the judge) returns one.
// Score may be called from several goroutines at once: the RL loop scores a
// rollout batch concurrently.
type Reward interface {
	Name() string
	Score(ctx context.Context, ex Example, c Completion) (float64, Details, error)
}

// Details explain a score. A leaf reward sets Note; Sum lists its terms in
// Parts, so the RL loop can log each component separately (rl.md §9).
type Details struct {
	Note  string
	Parts []Part
}

// Part is one term of a Sum: its reward's name, weight, unweighted score and note.
type Part struct {
	Name   string
	Weight float64
	Score  float64
	Note   string
}

// Outcome is the rule-based outcome reward: extract the final answer from the
// content (ExtractAnswer) and grade it with the example's verifier. Score: 1
// correct, ex.FormatCredit well formed but wrong, 0 malformed, including a
// completion that does not parse (so a truncated one usually scores 0).
type Outcome struct{}

func (Outcome) Name() string { return "outcome" }

func (Outcome) Score(_ context.Context, ex Example, c Completion) (float64, Details, error) {
	v, _, note := grade(ex, c)
	switch v {
	case Correct:
		return 1, Details{Note: note}, nil
	case Wrong:
		return ex.FormatCredit, Details{Note: note}, nil
	}
	return 0, Details{Note: note}, nil
}

// Grade is the verdict on a completion, as Outcome reads it: parse it
// (Completion.Message), extract the final answer from the content
// (ExtractAnswer) and verify it. A completion that does not parse, or has no
// answer, is Malformed. Accuracy on a held-out split is the share of Correct.
func Grade(ex Example, c Completion) (v Verdict, answer string) {
	v, answer, _ = grade(ex, c)
	return v, answer
}

// grade is Grade with a note for Details.
func grade(ex Example, c Completion) (v Verdict, answer, note string) {
	msg, err := c.Message()
	if err != nil {
		return Malformed, "", "malformed: " + err.Error()
	}
	answer, ok := ExtractAnswer(msg.Content)
	if !ok {
		return Malformed, "", "malformed: no answer in the content"
	}
	v = ex.Verify(answer)
	return v, answer, fmt.Sprintf("%s: answer %q", v, shorten(answer, 48))
}

// Positional is per-position credit for answers that are strings (T1, rl.md
// §11's option): 1 if correct, 0 if malformed, otherwise the share of
// positions where the answer (whitespace removed) has the reference's
// symbol, over the longer of the two.
type Positional struct{}

func (Positional) Name() string { return "positional" }

func (Positional) Score(_ context.Context, ex Example, c Completion) (float64, Details, error) {
	v, answer, note := grade(ex, c)
	switch v {
	case Correct:
		return 1, Details{Note: note}, nil
	case Malformed:
		return 0, Details{Note: note}, nil
	}
	got := []rune(strings.Join(strings.Fields(answer), ""))
	want := []rune(ex.Answer)
	n := max(len(got), len(want))
	if n == 0 {
		return 0, Details{Note: note}, nil
	}
	same := 0
	for i := range min(len(got), len(want)) {
		if got[i] == want[i] {
			same++
		}
	}
	return float64(same) / float64(n), Details{Note: note}, nil
}

// Format rewards a well-formed completion with 1, anything else with 0. Well
// formed means: chat.Parse accepts it in its mode; in thinking mode the
// reasoning is not blank; neither reasoning nor content holds a stray piece
// of the format (strayMarkers); every tool call names a function, declared in
// the example's conversation if it declares tools, and its arguments are a
// JSON object. A Raw completion scores 0.
type Format struct{}

func (Format) Name() string { return "format" }

// strayMarkers are pieces of the chat format that have no business in
// reasoning or content (chat.Parse already rejects the full special tokens).
var strayMarkers = []string{"DSML", "<｜", "｜>", "<think>", "</think>", "function_calls", "function_results"}

func (Format) Score(_ context.Context, ex Example, c Completion) (float64, Details, error) {
	if c.Raw {
		return 0, Details{Note: "raw completion: no chat format"}, nil
	}
	msg, err := chat.Parse(c.Text, c.Thinking)
	if err != nil {
		return 0, Details{Note: err.Error()}, nil
	}
	if c.Thinking && strings.TrimSpace(msg.ReasoningContent) == "" {
		return 0, Details{Note: "no reasoning"}, nil
	}
	for _, m := range strayMarkers {
		if strings.Contains(msg.ReasoningContent, m) || strings.Contains(msg.Content, m) {
			return 0, Details{Note: fmt.Sprintf("stray %q", m)}, nil
		}
	}
	declared := map[string]bool{}
	for _, m := range ex.Chat() {
		for _, t := range m.Tools {
			declared[t.Function.Name] = true
		}
	}
	for i, call := range msg.ToolCalls {
		name := call.Function.Name
		if strings.TrimSpace(name) == "" {
			return 0, Details{Note: fmt.Sprintf("tool call %d has no name", i)}, nil
		}
		if len(declared) > 0 && !declared[name] {
			return 0, Details{Note: fmt.Sprintf("tool call %d: %q is not a declared tool", i, shorten(name, 32))}, nil
		}
		var args map[string]any
		if json.Unmarshal([]byte(call.Function.Arguments), &args) != nil || args == nil {
			return 0, Details{Note: fmt.Sprintf("tool call %d: arguments are not a JSON object", i)}, nil
		}
	}
	return 1, Details{Note: "well formed"}, nil
}

// Length is the soft overlong penalty (DAPO, arXiv 2503.14476, as rl.md §9
// recalls it), for |o| generated tokens:
//
//	0                          if |o| ≤ Max − Cache
//	−(|o| − (Max − Cache))/Cache  if Max − Cache < |o| ≤ Max
//	−1                         if |o| > Max or the completion was truncated
//
// Cache 0 means Max/4 (rl.md's default); Max ≤ 0 switches the penalty off.
type Length struct {
	Max   int // L_max, the longest response, in tokens
	Cache int // L_c, the length of the soft band before Max
}

func (Length) Name() string { return "length" }

func (l Length) Score(_ context.Context, _ Example, c Completion) (float64, Details, error) {
	if l.Max <= 0 {
		return 0, Details{Note: "off"}, nil
	}
	n := c.Tokens
	if n <= 0 {
		n = utf8.RuneCountInString(c.Text)
	}
	lc := l.Cache
	if lc <= 0 {
		lc = l.Max / 4
	}
	lc = min(max(lc, 1), l.Max)
	note := fmt.Sprintf("%d of %d tokens", n, l.Max)
	switch {
	case c.Truncated:
		return -1, Details{Note: note + ", truncated"}, nil
	case n > l.Max:
		return -1, Details{Note: note}, nil
	case n <= l.Max-lc:
		return 0, Details{Note: note}, nil
	}
	return -float64(n-(l.Max-lc)) / float64(lc), Details{Note: note}, nil
}

// Language is the language-consistency reward (R1's, rl.md §9): the share of
// the response's words that are written in the prompt's script.
//
// The heuristic: a word is a maximal run of letters (and combining marks);
// in the scripts written without spaces (Han with kana and bopomofo, Thai)
// every letter is a word. A word's script is its first letter's: Latin,
// Cyrillic, Greek, Arabic, Hebrew, Devanagari, Thai, Hangul, CJK (Han,
// Hiragana, Katakana, Bopomofo) or other. The prompt's script is the one most
// of the words of the example's user messages are in. The response is its
// reasoning and content (or, if it does not parse, its text without special
// tokens). Score in [0, 1]; 1 when the prompt or the response has no words,
// as there is nothing to be inconsistent with. Digits, symbols and code-like
// words in the prompt's script count as consistent; English identifiers in a
// Chinese answer count against it, as in R1.
type Language struct{}

func (Language) Name() string { return "language" }

func (Language) Score(_ context.Context, ex Example, c Completion) (float64, Details, error) {
	var prompt strings.Builder
	for _, m := range ex.Chat() {
		if m.Role == chat.RoleUser || m.Role == chat.RoleDeveloper {
			prompt.WriteString(m.Content)
			prompt.WriteByte('\n')
		}
	}
	pw := countWords(prompt.String())
	want, best := -1, 0
	for s, n := range pw {
		if n > best {
			want, best = s, n
		}
	}
	if want < 0 {
		return 1, Details{Note: "prompt has no words"}, nil
	}
	var text string
	if msg, err := c.Message(); err == nil {
		text = msg.ReasoningContent + "\n" + msg.Content
	} else {
		text = specialReplacer.Replace(c.Text)
	}
	rw := countWords(text)
	total := 0
	for _, n := range rw {
		total += n
	}
	if total == 0 {
		return 1, Details{Note: "response has no words"}, nil
	}
	return float64(rw[want]) / float64(total),
		Details{Note: fmt.Sprintf("%d of %d words in %s", rw[want], total, scriptNames[want])}, nil
}

var specialReplacer = strings.NewReplacer(chat.BOS, " ", chat.EOS, " ", chat.ThinkStart, " ", chat.ThinkEnd, " ")

// The scripts Language tells apart; the last is every other script.
var (
	scriptNames  = [...]string{"Latin", "Cyrillic", "Greek", "Arabic", "Hebrew", "Devanagari", "Thai", "Hangul", "CJK", "other"}
	scriptTables = [...][]*unicode.RangeTable{
		{unicode.Latin}, {unicode.Cyrillic}, {unicode.Greek}, {unicode.Arabic}, {unicode.Hebrew},
		{unicode.Devanagari}, {unicode.Thai}, {unicode.Hangul},
		{unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Bopomofo},
	}
)

const (
	scriptThai  = 6
	scriptCJK   = 8
	scriptOther = 9
)

func scriptOf(r rune) int {
	for i, ts := range scriptTables {
		if unicode.In(r, ts...) {
			return i
		}
	}
	return scriptOther
}

// countWords counts s's words per script (indices of scriptNames).
func countWords(s string) [len(scriptNames)]int {
	var n [len(scriptNames)]int
	inWord := false
	for _, r := range s {
		switch {
		case unicode.IsLetter(r):
			sc := scriptOf(r)
			if sc == scriptCJK || sc == scriptThai {
				n[sc]++
				inWord = false
			} else if !inWord {
				n[sc]++
				inWord = true
			}
		case unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r):
			// a combining mark continues the word it follows
		default:
			inWord = false
		}
	}
	return n
}

// Term is one weighted reward of a Sum.
type Term struct {
	Reward Reward
	Weight float64
}

// Sum is the weighted sum of rewards, R_i = Σ w_k r_k (rl.md §9). Its
// Details have one Part per term, in order, with the unweighted score. The
// first error of a term is returned, with the score so far.
type Sum []Term

func (Sum) Name() string { return "sum" }

func (s Sum) Score(ctx context.Context, ex Example, c Completion) (float64, Details, error) {
	var total float64
	d := Details{Parts: make([]Part, 0, len(s))}
	for _, t := range s {
		r, td, err := t.Reward.Score(ctx, ex, c)
		if err != nil {
			return total, d, fmt.Errorf("env: reward %s: %w", t.Reward.Name(), err)
		}
		total += t.Weight * r
		d.Parts = append(d.Parts, Part{Name: t.Reward.Name(), Weight: t.Weight, Score: r, Note: td.Note})
	}
	return total, d, nil
}

// DefaultReward is rl.md §9's default for verifier-graded tasks: Outcome with
// weight 1, plus Length (L_c = L_max/4) with weight 1 when maxNewTokens ≥ 256.
// Natural-language tasks add Term{Language{}, 0.1} themselves.
func DefaultReward(maxNewTokens int) Sum {
	s := Sum{{Outcome{}, 1}}
	if maxNewTokens >= 256 {
		s = append(s, Term{Length{Max: maxNewTokens}, 1})
	}
	return s
}

// shorten cuts s to at most n runes for a note.
func shorten(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i] + "…"
		}
		n--
	}
	return s
}
