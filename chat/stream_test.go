package chat

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// streamChunks feeds text to a StreamParser in pieces of the given sizes (the
// last piece takes the rest) and returns the message its deltas add up to.
// It checks that Finish's message equals the deltas' sum and that the deltas
// are well formed.
func streamChunks(text string, thinking bool, sizes []int) (Message, error) {
	p := NewStreamParser(thinking)
	var deltas []Delta
	for i := 0; i < len(text); {
		n := len(text) - i
		if len(sizes) > 0 {
			n, sizes = min(n, sizes[0]), sizes[1:]
		}
		d, err := p.Push(text[i : i+n])
		if err != nil {
			return Message{}, err
		}
		deltas = append(deltas, d...)
		i += n
	}
	d, final, err := p.Finish()
	if err != nil {
		return Message{}, err
	}
	deltas = append(deltas, d...)
	sum := Message{Role: RoleAssistant}
	seenContent, seenCall := false, false
	for _, d := range deltas {
		switch d.Kind {
		case ReasoningDelta:
			if seenContent || seenCall {
				return Message{}, fmt.Errorf("reasoning delta %q after content or tool calls", d.Text)
			}
			sum.ReasoningContent += d.Text
		case ContentDelta:
			if seenCall {
				return Message{}, fmt.Errorf("content delta %q after tool calls", d.Text)
			}
			seenContent = true
			sum.Content += d.Text
		case ToolCallDelta:
			seenCall = true
			if d.Index != len(sum.ToolCalls) {
				return Message{}, fmt.Errorf("tool call delta has index %d, want %d", d.Index, len(sum.ToolCalls))
			}
			sum.ToolCalls = append(sum.ToolCalls, d.ToolCall)
		}
		if d.Kind != ToolCallDelta && d.Text == "" {
			return Message{}, fmt.Errorf("empty %s delta", d.Kind)
		}
		if d.Kind != ToolCallDelta && utf8.ValidString(text) && !utf8.ValidString(d.Text) {
			return Message{}, fmt.Errorf("%s delta %q splits a UTF-8 sequence", d.Kind, d.Text)
		}
	}
	if !reflect.DeepEqual(sum, final) {
		return Message{}, fmt.Errorf("deltas add up to %+v, Finish returned %+v", sum, final)
	}
	return final, nil
}

// checkStream compares streaming in the given pieces with Parse.
func checkStream(t *testing.T, text string, thinking bool, sizes []int) {
	t.Helper()
	want, wantErr := Parse(text, thinking)
	got, err := streamChunks(text, thinking, sizes)
	switch {
	case wantErr != nil && err == nil:
		t.Fatalf("pieces %v: Parse fails (%v), stream gives %+v", sizes, wantErr, got)
	case wantErr == nil && err != nil:
		t.Fatalf("pieces %v: Parse gives %+v, stream fails: %v", sizes, want, err)
	case wantErr == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("pieces %v:\nstream %+v\nParse  %+v", sizes, got, want)
	}
}

func uniform(n, size int) []int {
	s := make([]int, (n+size-1)/size)
	for i := range s {
		s[i] = size
	}
	return s
}

func randomSizes(r *rand.Rand, n int) []int {
	var s []int
	for n > 0 {
		k := 1 + r.IntN(min(n, 1+r.IntN(40)))
		s = append(s, k)
		n -= k
	}
	return s
}

func TestStreamFixtures(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range readJSONL[parseCase](t, "parse_cases.jsonl") {
		t.Run(c.Name, func(t *testing.T) {
			thinking := c.thinking(t)
			for size := 1; size <= len(c.Text)+1; size++ {
				checkStream(t, c.Text, thinking, uniform(len(c.Text), size))
			}
			for range 300 {
				checkStream(t, c.Text, thinking, randomSizes(r, len(c.Text)))
			}
		})
	}
}

// TestStreamQuirks streams the texts of TestParseQuirks byte by byte and at random.
func TestStreamQuirks(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	texts := []struct {
		text     string
		thinking bool
	}{
		{"Hi\n\n<｜DSML｜function_calls", false},
		{"\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n", false},
		{"\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"true\">x</｜DSML｜parameter>\n", false},
		{"\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke", false},
		{"\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n</｜DSML｜invoke>\n", false},
		{"a <｜end▁of▁sentence｜ b</think>c<｜end▁of▁sentence｜>", true},
		{"a\n\n<｜DSML｜functio</think>\n\n<｜end▁of▁sentence｜>", true},
		{"x</thinkers></think>\n\n<｜DSML｜function_calls>\n</｜DSML｜function_calls><｜end▁of▁sentence｜", true},
		{"日本語</think>😀 ok<｜end▁of▁sentence｜>", true},
	}
	for _, tt := range texts {
		checkStream(t, tt.text, tt.thinking, uniform(len(tt.text), 1))
		for range 100 {
			checkStream(t, tt.text, tt.thinking, randomSizes(r, len(tt.text)))
		}
	}
}

// TestStreamHoldsBack checks what each Push releases.
func TestStreamHoldsBack(t *testing.T) {
	tests := []struct {
		name     string
		thinking bool
		pushes   []string
		want     [][]Delta // deltas per push; then Finish's deltas
	}{
		{"think close split", true, []string{"abc<", "/th", "ink>Hi"},
			[][]Delta{{{Kind: ReasoningDelta, Text: "abc"}}, nil, {{Kind: ContentDelta, Text: "Hi"}}}},
		{"false alarm released", true, []string{"a</th", "e"},
			[][]Delta{{{Kind: ReasoningDelta, Text: "a"}}, {{Kind: ReasoningDelta, Text: "</the"}}}},
		{"tool block start held", false, []string{"Sure.\n", "\n<｜DS", "ML｜function_calls>\n"},
			[][]Delta{{{Kind: ContentDelta, Text: "Sure."}}, nil, nil}},
		{"single newline released", false, []string{"a\n", "b"},
			[][]Delta{{{Kind: ContentDelta, Text: "a"}}, {{Kind: ContentDelta, Text: "\nb"}}}},
		{"split rune held", false, []string{"\xe6\x97", "\xa5!"},
			[][]Delta{nil, {{Kind: ContentDelta, Text: "日!"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewStreamParser(tt.thinking)
			for i, s := range tt.pushes {
				got, err := p.Push(s)
				if err != nil {
					t.Fatalf("push %d: %v", i, err)
				}
				if !reflect.DeepEqual(got, tt.want[i]) {
					t.Errorf("push %d (%q): got %+v, want %+v", i, s, got, tt.want[i])
				}
			}
		})
	}
}

func TestStreamCallDelta(t *testing.T) {
	p := NewStreamParser(false)
	text := "\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"a\" string=\"false\">1</｜DSML｜parameter>\n</｜DSML｜invoke>"
	d, err := p.Push(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []Delta{{Kind: ToolCallDelta, ToolCall: ToolCall{Type: "function", Function: FunctionCall{Name: "f", Arguments: `{"a": 1}`}}}}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got %+v, want %+v", d, want)
	}
}

func TestStreamEarlyErrors(t *testing.T) {
	tests := []struct {
		name     string
		thinking bool
		text     string
	}{
		{"text after EOS", false, "a<｜end▁of▁sentence｜>b"},
		{"special token in content", false, "a<think>"},
		{"special token in reasoning", true, "a｜DSML｜"},
		{"tool block before think end", true, "a\n\n<｜DSML｜function_calls"},
		{"bad block opening", false, "\n\n<｜DSML｜function_calls>x"},
		{"text after tool block", false, "\n\n<｜DSML｜function_calls>\n</｜DSML｜function_calls>x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewStreamParser(tt.thinking)
			if _, err := p.Push(tt.text); err == nil {
				t.Fatal("Push returned no error")
			}
			if _, _, err := p.Finish(); err == nil {
				t.Error("the error is not sticky")
			}
			if _, err := Parse(tt.text+EOS, tt.thinking); err == nil {
				t.Error("Parse accepts a continuation")
			}
		})
	}
}

// BenchmarkStreamParser streams a completion with a long code argument in
// 4-byte pieces; its peer is Parse on the whole text.
func BenchmarkStreamParser(b *testing.B) {
	code := strings.Repeat("for i in range(10):\n    print(\"<b>\", i)  # 日本\n", 400)
	text := strings.Repeat("Let me think about this. ", 200) + "</think>Running it.\n\n<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"run_python\">\n" +
		"<｜DSML｜parameter name=\"code\" string=\"true\">" + code + "</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls><｜end▁of▁sentence｜>"
	b.Run("Parse", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			if _, err := Parse(text, true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Stream4", func(b *testing.B) {
		b.SetBytes(int64(len(text)))
		for b.Loop() {
			p := NewStreamParser(true)
			for i := 0; i < len(text); i += 4 {
				if _, err := p.Push(text[i:min(i+4, len(text))]); err != nil {
					b.Fatal(err)
				}
			}
			if _, _, err := p.Finish(); err != nil {
				b.Fatal(err)
			}
		}
	})
}
