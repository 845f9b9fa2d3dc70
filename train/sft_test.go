package train

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train/data"
)

var (
	dsOnce sync.Once
	dsTok  *tokenizer.BPE
	dsErr  error
)

// deepseekTokenizer is DeepSeek-V3.2's own tokenizer (testdata).
func deepseekTokenizer(t testing.TB) *tokenizer.BPE {
	t.Helper()
	dsOnce.Do(func() { dsTok, dsErr = tokenizer.Load(testutil.Testdata("tokenizer", "deepseek_v32.json.gz")) })
	if dsErr != nil {
		t.Fatal(dsErr)
	}
	return dsTok
}

const toolsLine = `{"messages": [
 {"role": "system", "content": "You are terse."},
 {"role": "user", "content": "Weather in Paris?"},
 {"role": "assistant", "content": "", "reasoning_content": "I should call the tool.", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": 2}"}}]},
 {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21C"},
 {"role": "assistant", "content": "Sunny, 21°C.", "reasoning_content": "The tool says sunny."},
 {"role": "user", "content": "And tomorrow?"},
 {"role": "assistant", "content": "Also sunny.", "reasoning_content": "Two days were asked for; day two is sunny too."}
], "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]}`

const chatLine = `{"messages": [
 {"role": "user", "content": "hi"},
 {"role": "assistant", "content": "Hello!"},
 {"role": "user", "content": "2+2?"},
 {"role": "assistant", "content": "4"}
]}`

// a thinking turn with two tool rounds after the last user message: every
// reasoning block of the current turn stays in the text.
const roundsLine = `{"messages": [
 {"role": "user", "content": "Add 2 and 3, then double it."},
 {"role": "assistant", "content": "", "reasoning_content": "First add.", "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": "{\"a\": 2, \"b\": 3}"}}]},
 {"role": "tool", "content": "5"},
 {"role": "assistant", "content": "", "reasoning_content": "Now double.", "tool_calls": [{"type": "function", "function": {"name": "mul", "arguments": "{\"a\": 5, \"b\": 2}"}}]},
 {"role": "tool", "content": "10"},
 {"role": "assistant", "content": "10", "reasoning_content": "Done."}
]}`

func dsml(name string, params ...string) string {
	return "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"" + name + "\">\n" + strings.Join(params, "\n") + "\n</｜DSML｜invoke>\n</｜DSML｜function_calls>"
}

func param(name, value string, str bool) string {
	s := "false"
	if str {
		s = "true"
	}
	return "<｜DSML｜parameter name=\"" + name + "\" string=\"" + s + "\">" + value + "</｜DSML｜parameter>"
}

func TestSFTSpans(t *testing.T) {
	const eos = chat.EOS
	for _, tc := range []struct {
		name, line string
		want       []string // each assistant span's text, in order
	}{
		{"tools and reasoning dropped before the last user", toolsLine, []string{
			// before the last user message: reasoning is not in the text
			dsml("get_weather", param("city", "Paris", true), param("days", "2", false)) + eos,
			"Sunny, 21°C." + eos,
			// after it: reasoning, </think>, content, EOS
			"Two days were asked for; day two is sunny too.</think>Also sunny." + eos,
		}},
		{"chat mode, two turns", chatLine, []string{"Hello!" + eos, "4" + eos}},
		{"two tool rounds in the current turn", roundsLine, []string{
			"First add.</think>" + dsml("add", param("a", "2", false), param("b", "3", false)) + eos,
			"Now double.</think>" + dsml("mul", param("a", "5", false), param("b", "2", false)) + eos,
			"Done.</think>10" + eos,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.jsonl")
			os.WriteFile(path, []byte(strings.ReplaceAll(tc.line, "\n", "")+"\n"), 0o644)
			convs, err := ReadConversations(path)
			if err != nil {
				t.Fatal(err)
			}
			text, spans, err := convs[0].Render()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range spans {
				got = append(got, text[s.Start:s.End])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("assistant spans:\n got %q\nwant %q\nin %q", got, tc.want, text)
			}
			// the prompt pieces end where the model starts to speak
			for _, s := range spans {
				before := text[:s.Start]
				if !strings.HasSuffix(before, chat.ThinkEnd) && !strings.HasSuffix(before, chat.ThinkStart) {
					t.Errorf("span at %d follows %q, not <think> or </think>", s.Start, before[max(0, len(before)-20):])
				}
			}

			// Tokens: the masked ones decode to exactly the spans, and the
			// piecewise encoding equals encoding the whole text.
			tok := deepseekTokenizer(t)
			ex, err := convs[0].Tokenize(tok)
			if err != nil {
				t.Fatal(err)
			}
			whole := tok.Encode(text)
			ids := make([]int, len(ex.Tokens))
			for i, id := range ex.Tokens {
				ids[i] = int(id)
			}
			if !slices.Equal(ids, whole) {
				t.Errorf("piecewise encoding differs from the whole text's (%d vs %d tokens)", len(ids), len(whole))
			}
			var asst []int
			var runs []string
			for i, id := range ids {
				if ex.Mask[i] == 1 {
					asst = append(asst, id)
				}
				if ex.Mask[i] == 1 && (i+1 == len(ids) || ex.Mask[i+1] == 0) {
					runs = append(runs, tok.Decode(asst))
					asst = nil
				}
			}
			if !slices.Equal(runs, tc.want) {
				t.Errorf("masked tokens decode to\n%q\nwant %q", runs, tc.want)
			}
			n := 0
			for _, w := range ex.Mask {
				n += int(w)
			}
			t.Logf("%d tokens, %d assistant", len(ids), n)
		})
	}
}

func TestSFTPackerMask(t *testing.T) {
	ex := []Example{
		{Tokens: []int32{10, 11, 12, 13, 14}, Mask: []float32{0, 0, 1, 1, 1}},
		{Tokens: []int32{20, 21, 22}, Mask: []float32{0, 1, 1}},
		{Tokens: []int32{30, 31, 32, 33, 34, 35, 36, 37, 38, 39}, Mask: []float32{0, 0, 0, 1, 1, 1, 1, 1, 1, 1}},
	}
	p, err := NewSFTPacker(ex, 8, false, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Next() // examples 0 and 1 fit in 9 tokens
	if want := []int32{10, 11, 12, 13, 14, 20, 21, 22, 2}; !slices.Equal(r.Tokens, want) {
		t.Fatalf("row 1 tokens %v, want %v", r.Tokens, want)
	}
	// target t is Tokens[t+1]: trained where that token is the assistant's, in the same segment
	if want := []float32{0, 1, 1, 1, 0, 1, 1, 0}; !slices.Equal(r.Mask, want) {
		t.Errorf("row 1 mask %v, want %v", r.Mask, want)
	}
	if want := []int32{0, 1, 2, 3, 4, 0, 1, 2, 0}; !slices.Equal(r.Positions, want) {
		t.Errorf("row 1 positions %v, want %v", r.Positions, want)
	}
	r = p.Next() // example 2 is truncated to the row
	if want := []int32{30, 31, 32, 33, 34, 35, 36, 37, 38}; !slices.Equal(r.Tokens, want) {
		t.Fatalf("row 2 tokens %v, want %v", r.Tokens, want)
	}
	if want := []float32{0, 0, 1, 1, 1, 1, 1, 1}; !slices.Equal(r.Mask, want) {
		t.Errorf("row 2 mask %v, want %v", r.Mask, want)
	}
	if st := p.State(); st.Epoch != 1 || st.Index != 0 {
		t.Errorf("state after one epoch %+v", st)
	}
}

func TestSFTPackerResume(t *testing.T) {
	var ex []Example
	for i := range 20 {
		n := 3 + i%5
		e := Example{Tokens: make([]int32, n), Mask: make([]float32, n)}
		for k := range n {
			e.Tokens[k] = int32(100 + i)
			e.Mask[k] = float32(k % 2)
		}
		ex = append(ex, e)
	}
	a, _ := NewSFTPacker(ex, 12, true, 7, 2)
	for range 9 {
		a.Next()
	}
	st := a.State()
	b, _ := NewSFTPacker(ex, 12, true, 7, 2)
	if err := b.Seek(st); err != nil {
		t.Fatal(err)
	}
	for i := range 15 {
		ra, rb := a.Next(), b.Next()
		if !slices.Equal(ra.Tokens, rb.Tokens) || !slices.Equal(ra.Mask, rb.Mask) {
			t.Fatalf("row %d after Seek differs", i)
		}
	}
}

// TestSFTRun trains the tiny model on conversations through the whole path
// (render, a tokenizer of its own trained to fit the vocabulary, mask,
// packing, the sft stage), and checks the loss sees assistant tokens only.
func TestSFTRun(t *testing.T) {
	var convs []Conversation
	for _, line := range []string{toolsLine, chatLine, roundsLine} {
		var c Conversation
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		convs = append(convs, c)
	}
	var texts []string
	for _, c := range convs {
		text, _, err := c.Render()
		if err != nil {
			t.Fatal(err)
		}
		texts = append(texts, text)
	}
	tok, err := tokenizer.Train(slices.Values(texts), 300, tokenizer.TrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exs, err := TokenizeAll(convs, tok)
	if err != nil {
		t.Fatal(err)
	}
	pad, _ := tok.TokenToID("<｜▁pad▁｜>")
	cfg := tinyConfig(SFT)
	cfg.SeqLen, cfg.Steps, cfg.LR, cfg.MinLR = 64, 6, 3e-3, 3e-4
	p, err := NewSFTPacker(exs, cfg.SeqLen, true, cfg.Seed, int32(pad))
	if err != nil {
		t.Fatal(err)
	}
	evalP, _ := NewSFTPacker(exs, cfg.SeqLen, false, 0, int32(pad))
	var eval []data.Row
	for range len(exs) {
		eval = append(eval, evalP.Next())
	}
	run := &Run{Backend: testutil.Backend(t), Model: tinyModel(t), Config: cfg, Data: p, Eval: eval, Out: t.TempDir()}
	res, err := run.Do(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("sft: step %d loss %.4f eval %.4f", res.Last.Step, res.Last.Loss, res.Eval.Loss)

	// Changing a target the mask excludes (a prompt token) leaves the loss as it is.
	best := 0 // the row with the most assistant targets
	for i, r := range eval {
		if slices.Max(r.Mask) > 0 && slices.Index(r.Mask, 0) >= 0 && sumOf(r.Mask) > sumOf(eval[best].Mask) {
			best = i
		}
	}
	b, _ := NewBatch(eval[best : best+1])
	base, err := res.Trainer.Eval([]Batch{b})
	if err != nil {
		t.Fatal(err)
	}
	changedPrompt := 0
	for i, w := range b.Weights {
		if w == 0 && b.Targets[i] != int32(pad) {
			b.Targets[i] = (b.Targets[i] + 1) % 300
			changedPrompt++
		}
	}
	got, _ := res.Trainer.Eval([]Batch{b})
	if got.LMLoss != base.LMLoss || changedPrompt == 0 {
		t.Errorf("prompt targets changed (%d): LM loss %v → %v", changedPrompt, base.LMLoss, got.LMLoss)
	}
	for i, w := range b.Weights {
		if w == 1 {
			b.Targets[i] = (b.Targets[i] + 1) % 300
			break
		}
	}
	if got, _ := res.Trainer.Eval([]Batch{b}); got.LMLoss == base.LMLoss {
		t.Error("changing an assistant target did not change the loss")
	}
}

func sumOf(xs []float32) float32 {
	var s float32
	for _, x := range xs {
		s += x
	}
	return s
}
