package tokenizer

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// deepseekOracle is DeepSeek's tokenizer with every Split pattern run by
// regexp2 instead of the hand-written scanners.
var deepseekOracle = sync.OnceValues(func() (*BPE, error) {
	b, err := deepseek()
	if err != nil {
		return nil, err
	}
	return b.withSteps(false)
})

func loadOracle(t testing.TB) *BPE {
	t.Helper()
	b, err := deepseekOracle()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// preTokens returns the pre-tokens of text (added tokens split out first,
// shown as «id»).
func preTokens(b *BPE, text string) []string {
	var out []string
	e := newEncoder(b)
	e.collect = func(s string) { out = append(out, s) }
	b.rawTrie.split(b, text, e.rawPieceFn, func(id int32) { out = append(out, "«"+b.IDToToken(int(id))+"»") })
	return out
}

func TestDeepSeekVocabulary(t *testing.T) {
	b := loadDeepSeek(t)
	if got := b.VocabSize(); got != 128815 {
		t.Errorf("VocabSize = %d, want 128815", got)
	}
	for _, c := range []struct {
		tok     string
		id      int
		special bool
	}{
		{"<｜begin▁of▁sentence｜>", 0, true},
		{"<｜end▁of▁sentence｜>", 1, true},
		{"<think>", 128798, true},
		{"</think>", 128799, true},
		{"<｜User｜>", 128803, false},
		{"<｜Assistant｜>", 128804, false},
		{"Ġworld", 2058, false},
	} {
		id, ok := b.TokenToID(c.tok)
		if !ok || id != c.id {
			t.Errorf("TokenToID(%q) = %d, %v; want %d", c.tok, id, ok, c.id)
		}
		if got := b.IDToToken(c.id); got != c.tok {
			t.Errorf("IDToToken(%d) = %q, want %q", c.id, got, c.tok)
		}
		if _, sp := b.Special()[c.tok]; sp != c.special {
			t.Errorf("Special()[%q] present = %v, want %v", c.tok, sp, c.special)
		}
	}
}

func TestEncodeTable(t *testing.T) {
	b := loadDeepSeek(t)
	for _, c := range []struct {
		name     string
		text     string
		ordinary bool
		want     []int
	}{
		{"empty", "", false, []int{}},
		{"words", "Hello world", false, []int{19923, 2058}},
		{"think is added", "<think>", false, []int{128798}},
		{"think ordinary", "<think>", true, []int{30, 37947, 32}},
		{"user turn", "<｜User｜>hi<｜Assistant｜>", false, []int{128803, 6366, 128804}},
		{"eos then text", "<｜end▁of▁sentence｜>x", false, []int{1, 90}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var got []int
			if c.ordinary {
				got = b.EncodeOrdinary(c.text)
			} else {
				got = b.Encode(c.text)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
			if dec := b.Decode(got); dec != c.text {
				t.Errorf("Decode = %q, want %q", dec, c.text)
			}
		})
	}
}

func TestDecodeSkipSpecial(t *testing.T) {
	b := loadDeepSeek(t)
	ids := b.Encode("<｜begin▁of▁sentence｜><｜User｜>hi<think>x</think>")
	if got, want := b.DecodeSkipSpecial(ids), "<｜User｜>hix"; got != want {
		t.Errorf("DecodeSkipSpecial = %q, want %q", got, want)
	}
}

func TestPreTokens(t *testing.T) {
	b := loadDeepSeek(t)
	for _, c := range []struct {
		text string
		want []string
	}{
		{"a  b", []string{"a", " ", " b"}},
		{"x \n\n y", []string{"x", " \n\n", " y"}},
		{"trailing  ", []string{"trailing", "  "}},
		{"1234567", []string{"123", "456", "7"}},
		{"c->d[0];", []string{"c", "->", "d", "[", "0", "];"}},
		{"价格是123元", []string{"价格是", "123", "元"}},
		{"it's", []string{"it", "'s"}},
		{"\ttabs", []string{"\ttabs"}},
		{"a<think>b", []string{"a", "«<think>»", "b"}},
	} {
		if got := preTokens(b, c.text); !slices.Equal(got, c.want) {
			t.Errorf("preTokens(%q) = %q, want %q", c.text, got, c.want)
		}
	}
}

// randomText draws strings from the kinds of runes the DeepSeek regexes
// tell apart.
func randomText(r *rand.Rand, n int) string {
	pools := []string{
		"abcXYZ", "éü", " ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u3000", "\u2028", "\v",
		"0123", "٣", "²½", ".,!?", "->", "'", "\"", "#$%", "_", "。，", "・", "ー", "\u3040", "\u309b",
		"价格", "こんにちは", "カタカナ", "한국어", "привет", "مرحبا", "\u0301", "\u094d", "🙂", "👍🏽",
		"\u200b", "\u200d", "\x00", "\x7f", "<think>", "<｜User｜>", "<｜", "\U0001F680", "ﾊﾝ",
	}
	var sb strings.Builder
	for range n {
		p := pools[r.IntN(len(pools))]
		if r.IntN(3) == 0 {
			rs := []rune(p)
			p = string(rs[r.IntN(len(rs))])
		}
		sb.WriteString(p)
	}
	return sb.String()
}

// hasNewerRunes reports whether s holds a rune Go's unicode tables do not
// know, where regexp2 and tokenizers (and so our scanners) disagree.
func hasNewerRunes(s string) bool {
	for _, r := range s {
		if newerClass(r) != 0 {
			return true
		}
	}
	return false
}

// TestScannersMatchRegexp2 checks the hand-written DeepSeek scanners against
// the regexes run by regexp2, on random text.
func TestScannersMatchRegexp2(t *testing.T) {
	fast, oracle := loadDeepSeek(t), loadOracle(t)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		s := randomText(r, 1+r.IntN(30))
		if got, want := preTokens(fast, s), preTokens(oracle, s); !slices.Equal(got, want) {
			t.Fatalf("case %d %q:\n scanners %q\n regexp2  %q", i, s, got, want)
		}
	}
}

// TestMergeLinearMatchesHeap checks the two merge loops against each other.
func TestMergeLinearMatchesHeap(t *testing.T) {
	b := loadDeepSeek(t)
	e := newEncoder(b)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 2000 {
		s := randomText(r, 1+r.IntN(20))
		if i%3 == 0 {
			s = strings.Repeat(" ", 1+r.IntN(100))
		}
		var syms []int32
		for j := 0; j < len(s); j++ {
			syms = append(syms, b.byteID[s[j]])
		}
		lin := e.mergeLinear(slices.Clone(syms))
		hp := e.mergeHeap(slices.Clone(syms))
		if !slices.Equal(lin, hp) {
			t.Fatalf("%q: linear %v, heap %v", s, lin, hp)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	b := loadDeepSeek(t)
	r := rand.New(rand.NewPCG(5, 6))
	for range 1000 {
		s := randomText(r, 1+r.IntN(40))
		if got := b.Decode(b.Encode(s)); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
		raw := []byte(s)
		for range 3 {
			raw[r.IntN(len(raw))] = byte(r.IntN(256))
		}
		if got := b.DecodeBytes(b.EncodeBytes(raw)); !bytes.Equal(got, raw) {
			t.Fatalf("DecodeBytes(EncodeBytes(%q)) = %q", raw, got)
		}
	}
}

func TestLongWords(t *testing.T) {
	b, oracle := loadDeepSeek(t), loadOracle(t)
	for _, s := range []string{
		strings.Repeat(" ", 5000),
		strings.Repeat("今天天气很好", 500),
		strings.Repeat("a", 3000),
		strings.Repeat("\n", 1000) + "x",
	} {
		got := b.Encode(s)
		if want := oracle.Encode(s); !slices.Equal(got, want) {
			t.Errorf("long %q…: scanners and regexp2 differ", s[:10])
		}
		if b.Decode(got) != s {
			t.Errorf("long %q…: no round trip", s[:10])
		}
	}
}

func TestLossyUTF8(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"ok", "ok"},
		{"\xe2\x82", "\ufffd"},                 // a cut 3-byte character: one U+FFFD
		{"\xf0\x9f\x98", "\ufffd"},             // a cut 4-byte character
		{"\xf0\x9f\x98x", "\ufffdx"},           // … followed by more text
		{"\xc0\x80", "\ufffd\ufffd"},           // overlong: two
		{"\xed\xa0\x80", "\ufffd\ufffd\ufffd"}, // a surrogate: three
		{"\xf4\x90\x80\x80", "\ufffd\ufffd\ufffd\ufffd"},
		{"\xe0\xa0", "\ufffd"},
		{"\xe0\x80", "\ufffd\ufffd"},
		{"a\xffb", "a\ufffdb"},
	} {
		if got := lossyUTF8([]byte(c.in)); got != c.want {
			t.Errorf("lossyUTF8(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestStreamDecoder(t *testing.T) {
	b := loadDeepSeek(t)
	r := rand.New(rand.NewPCG(7, 8))
	for range 300 {
		var ids []int
		if r.IntN(2) == 0 {
			ids = b.Encode(randomText(r, 1+r.IntN(20)))
		} else {
			for range 1 + r.IntN(20) {
				ids = append(ids, r.IntN(b.VocabSize()+5)-2)
			}
		}
		d := NewStreamDecoder(b)
		var sb strings.Builder
		for _, id := range ids {
			out := d.Add(id)
			if !utf8.ValidString(out) {
				t.Fatalf("Add returned invalid UTF-8 %q", out)
			}
			sb.WriteString(out)
		}
		sb.WriteString(d.Flush())
		if want := b.Decode(ids); sb.String() != want {
			t.Fatalf("ids %v: stream %q, Decode %q", ids, sb.String(), want)
		}
	}
	// A character split over two ids is held back, not replaced.
	d := NewStreamDecoder(b)
	ids := b.Encode("🙂")
	if len(ids) < 2 {
		t.Skip("🙂 is one token")
	}
	if out := d.Add(ids[0]); out != "" {
		t.Errorf("first half gave %q", out)
	}
	var rest string
	for _, id := range ids[1:] {
		rest += d.Add(id)
	}
	if rest+d.Flush() != "🙂" {
		t.Errorf("got %q", rest)
	}
}

func TestSaveLoad(t *testing.T) {
	b := loadDeepSeek(t)
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	b2, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if b2.VocabSize() != b.VocabSize() || len(b2.mergeList) != len(b.mergeList) || len(b2.added) != len(b.added) {
		t.Fatalf("reloaded: vocab %d merges %d added %d; want %d %d %d",
			b2.VocabSize(), len(b2.mergeList), len(b2.added), b.VocabSize(), len(b.mergeList), len(b.added))
	}
	for _, c := range readCases(t, "../testdata/tokenizer/cases.json") {
		if got := b2.Encode(c.Text); !slices.Equal(got, c.IDs) {
			t.Errorf("reloaded %q: got %v, want %v", c.Text, got, c.IDs)
		}
	}
	j1, _ := b.MarshalJSON()
	j2, _ := b2.MarshalJSON()
	if !bytes.Equal(j1, j2) {
		t.Error("Save → Load → Save is not a fixed point")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("Save left %d files behind, want 1", len(entries))
	}
}

func TestParseErrors(t *testing.T) {
	base := func(edit func(string) string) []byte { return []byte(edit(tinyJSON)) }
	for _, c := range []struct {
		name string
		data []byte
		want string
	}{
		{"not json", []byte("{"), "tokenizer.json"},
		{"model type", base(func(s string) string { return strings.Replace(s, `"type":"BPE"`, `"type":"WordPiece"`, 1) }), "model.type"},
		{"merge not in vocab", base(func(s string) string { return strings.Replace(s, `"merges":[`, `"merges":["q z",`, 1) }), "merges[0]"},
		{"merge spelling", base(func(s string) string { return strings.Replace(s, `"merges":[`, `"merges":[3,`, 1) }), "merges[0]"},
		{"normalizer", base(func(s string) string {
			return strings.Replace(s, `"normalizer":null`, `"normalizer":{"type":"NFKC"}`, 1)
		}), "normalizer"},
		{"decoder", base(func(s string) string {
			return strings.Replace(s, `"decoder":{"type":"ByteLevel"}`, `"decoder":null`, 1)
		}), "decoder"},
		{"no byte level", base(func(s string) string {
			return strings.Replace(s, `{"type":"ByteLevel","add_prefix_space":false,"use_regex":false}`, `{"type":"Split","pattern":{"String":" "},"behavior":"Removed","invert":false}`, 1)
		}), "ByteLevel"},
		{"bad regex", base(func(s string) string {
			return strings.Replace(s, `"behavior":"Isolated"`, `"behavior":"Isolated","pattern":{"Regex":"(("}`, 1)
		}), "regex"},
		{"behavior", base(func(s string) string { return strings.Replace(s, `"behavior":"Isolated"`, `"behavior":"Sideways"`, 1) }), "behavior"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one naming %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte(tinyJSON)); err != nil {
		t.Fatalf("tinyJSON: %v", err)
	}
}

// TestSplitBehaviors runs the Split behaviours of tokenizers on one input.
func TestSplitBehaviors(t *testing.T) {
	for _, c := range []struct {
		behavior string
		invert   bool
		want     []string
	}{
		{behaviorIsolated, false, []string{"a", "-", "b", "-", "-", "c"}},
		{behaviorRemoved, false, []string{"a", "b", "c"}},
		{behaviorMergedWithPrevious, false, []string{"a-", "b-", "-", "c"}},
		{behaviorMergedWithNext, false, []string{"a", "-b", "-", "-c"}},
		{behaviorContiguous, false, []string{"a", "-", "b", "--", "c"}},
		{behaviorRemoved, true, []string{"-", "-", "-"}},
	} {
		s, err := newRegexSplit("-", c.behavior, c.invert, false)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		e := &encoder{b: &BPE{steps: []splitter{s}}}
		e.collect = func(p string) { got = append(got, p) }
		e.next("a-b--c", 0)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s invert=%v: got %q, want %q", c.behavior, c.invert, got, c.want)
		}
	}
}

// TestConcurrentEncode shares one BPE between goroutines (run with -race).
func TestConcurrentEncode(t *testing.T) {
	b := loadDeepSeek(t)
	cases := readCases(t, "../testdata/tokenizer/cases.json")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				c := cases[(i+g)%len(cases)]
				if got := b.Encode(c.Text); !slices.Equal(got, c.IDs) {
					t.Errorf("goroutine %d: %q: got %v", g, c.Text, got)
					return
				}
			}
		})
	}
	wg.Wait()
}
