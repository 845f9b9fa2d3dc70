package tokenizer

import (
	"os"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/tokenizer/bench"
)

// benchText is the text BenchmarkEncode encodes: the file named by
// $TOKENIZER_BENCH_FILE (to compare with bench/hf_tokenizers.py on the same
// file), else 4 MB of bench.MixedText.
func benchText(b *testing.B) string {
	if path := os.Getenv("TOKENIZER_BENCH_FILE"); path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		return string(data)
	}
	return bench.MixedText(4<<20, 1)
}

// BenchmarkEncode encodes the whole text once per iteration, one goroutine.
// Sub-benchmarks: the hand-written pre-tokenizer, and regexp2 running
// DeepSeek's regexes (the simple path, for the ratio).
func BenchmarkEncode(b *testing.B) {
	tok := loadDeepSeek(b)
	text := benchText(b)
	for _, c := range []struct {
		name string
		fast bool
	}{{"scanners", true}, {"regexp2", false}} {
		b.Run(c.name, func(b *testing.B) {
			t, err := tok.withSteps(c.fast)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(text)))
			b.ReportAllocs()
			for b.Loop() {
				t.Encode(text)
			}
		})
	}
}

// BenchmarkEncodeLines encodes the text line by line, the protocol of
// `dsv32 tokenize --bench` and bench/hf_tokenizers.py.
func BenchmarkEncodeLines(b *testing.B) {
	tok := loadDeepSeek(b)
	text := benchText(b)
	lines := strings.SplitAfter(text, "\n")
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range lines {
			tok.Encode(l)
		}
	}
}

// BenchmarkEncodeCold is BenchmarkEncode with an empty pre-token cache each
// time: every pre-token goes through the merge loop.
func BenchmarkEncodeCold(b *testing.B) {
	tok := loadDeepSeek(b)
	text := benchText(b)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		t, _ := tok.withSteps(true)
		t.Encode(text)
	}
}

func BenchmarkDecode(b *testing.B) {
	tok := loadDeepSeek(b)
	text := benchText(b)
	ids := tok.Encode(text)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		tok.Decode(ids)
	}
}

// BenchmarkPreTokenize is the pre-tokenizer alone (added tokens, DeepSeek's
// three Splits), without BPE.
func BenchmarkPreTokenize(b *testing.B) {
	tok := loadDeepSeek(b)
	text := benchText(b)
	e := newEncoder(tok)
	n := 0
	e.collect = func(string) { n++ }
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tok.rawTrie.split(tok, text, e.rawPieceFn, e.tokenFn)
	}
}
