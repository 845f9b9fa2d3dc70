package chat

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func addParseSeeds(f *testing.F, add func(text string, thinking bool)) {
	for _, c := range readJSONL[parseCase](f, "parse_cases.jsonl") {
		add(c.Text, c.Options.ThinkingMode == "thinking")
	}
	for _, c := range readJSONL[encodeCase](f, "encode_cases.jsonl") {
		if c.ExpectedPrompt != nil {
			// Prompts are full of markers; their tails look like completions.
			p := *c.ExpectedPrompt
			add(p[strings.LastIndex(p, Assistant)+len(Assistant):], c.Options.ThinkingMode == "thinking")
		}
	}
}

// FuzzParse checks that Parse never panics and that what it returns is clean.
func FuzzParse(f *testing.F) {
	addParseSeeds(f, func(text string, thinking bool) { f.Add(text, thinking) })
	f.Fuzz(func(t *testing.T, text string, thinking bool) {
		m, err := Parse(text, thinking)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			return
		}
		for _, tok := range specialTokens {
			if strings.Contains(m.Content, tok) || strings.Contains(m.ReasoningContent, tok) {
				t.Fatalf("special token %q in %+v", tok, m)
			}
		}
		if !thinking && m.ReasoningContent != "" {
			t.Fatalf("reasoning in chat mode: %+v", m)
		}
	})
}

// FuzzStreamParser checks that streaming in random pieces agrees with Parse:
// both fail, or both give the same message.
func FuzzStreamParser(f *testing.F) {
	addParseSeeds(f, func(text string, thinking bool) { f.Add(text, thinking, uint64(len(text))) })
	f.Fuzz(func(t *testing.T, text string, thinking bool, seed uint64) {
		r := rand.New(rand.NewPCG(seed, 7))
		sizes := randomSizes(r, len(text))
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
	})
}

// FuzzEncode checks that Encode never panics on any conversation JSON, and
// that an assistant message it renders parses back (when its text has no
// markers of its own).
func FuzzEncode(f *testing.F) {
	for _, c := range readJSONL[encodeCase](f, "encode_cases.jsonl") {
		b, _ := json.Marshal(c.Messages)
		f.Add(b, c.Options.ThinkingMode == "thinking", c.Options.DropThinking)
	}
	f.Fuzz(func(t *testing.T, data []byte, thinking, drop bool) {
		var messages []Message
		if json.Unmarshal(data, &messages) != nil {
			return
		}
		prompt, err := Encode(messages, Options{Thinking: thinking, DropThinking: drop, AddBOS: true})
		if err != nil || len(messages) == 0 {
			return
		}
		if !strings.HasPrefix(prompt, BOS) {
			t.Fatalf("prompt %q does not start with BOS", prompt)
		}
		last := messages[len(messages)-1]
		if last.Role != RoleAssistant {
			return
		}
		text, err := Encode([]Message{last}, Options{Thinking: thinking, Context: messages[:len(messages)-1]})
		if err != nil {
			t.Fatalf("the last message alone: %v", err)
		}
		if !strings.HasSuffix(prompt, text) {
			t.Fatalf("rendered alone %q, in the prompt %q", text, prompt)
		}
	})
}

// FuzzPyJSON checks the Python-style JSON reader and writer: whatever Go
// accepts, it accepts, and writing is a fixed point.
func FuzzPyJSON(f *testing.F) {
	for _, s := range []string{`{"a": [1, 2.50, -0, -0.0, 1e400, "x\u2028<>&"]}`, `NaN`, `-Infinity`, `{"k":1,"k":2}`, `"\ud83d\ude00\ud800"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := parsePyJSON(s)
		if err != nil {
			if json.Valid([]byte(s)) {
				t.Fatalf("Go accepts %q, parsePyJSON does not: %v", s, err)
			}
			return
		}
		var b strings.Builder
		writePy(&b, v)
		again, err := pyJSON(b.String())
		if err != nil || again != b.String() {
			t.Fatalf("%q -> %q -> %q, %v", s, b.String(), again, err)
		}
	})
}

// fragments are the pieces FuzzStreamFragments builds completions from, so
// that the fuzzer reaches deep into tool blocks.
var fragments = []string{
	ThinkEnd, ThinkStart, EOS, BOS, DSML, toolCallsStart, ">\n", ">", "\n", "\n\n", "<", "/", `"`, " ",
	invokeOpen, invokeClose, parameterOpen, parameterClose, functionCalls, functionCallsE,
	` name="f">` + "\n", ` name="`, `" string="true">`, `" string="false">`, `string="maybe"`,
	"a", "b", "1", "日", "\xe6", "\x97", "{}", "[1, 2]", "\u3000",
}

// FuzzStreamFragments is FuzzStreamParser over texts made of format pieces.
func FuzzStreamFragments(f *testing.F) {
	f.Add([]byte{5, 14, 1, 20, 25, 18, 21, 15, 6, 15, 6, 19, 2}, false, uint64(1))
	f.Add([]byte{26, 0, 5, 6, 14, 20, 16, 21, 25, 17, 6, 15, 6, 19, 2}, true, uint64(2))
	f.Fuzz(func(t *testing.T, data []byte, thinking bool, seed uint64) {
		var b strings.Builder
		for _, c := range data {
			b.WriteString(fragments[int(c)%len(fragments)])
		}
		text := b.String()
		r := rand.New(rand.NewPCG(seed, 7))
		sizes := randomSizes(r, len(text))
		want, wantErr := Parse(text, thinking)
		got, err := streamChunks(text, thinking, sizes)
		switch {
		case wantErr != nil && err == nil:
			t.Fatalf("%q in pieces %v: Parse fails (%v), stream gives %+v", text, sizes, wantErr, got)
		case wantErr == nil && err != nil:
			t.Fatalf("%q in pieces %v: Parse gives %+v, stream fails: %v", text, sizes, want, err)
		case wantErr == nil && !reflect.DeepEqual(got, want):
			t.Fatalf("%q in pieces %v:\nstream %+v\nParse  %+v", text, sizes, got, want)
		}
	})
}
