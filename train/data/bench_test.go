package data

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkTokenize measures TokenizeFiles end to end (reading JSONL,
// encoding with the stand-in byte encoder, writing shards): MB/s of text.
// With a real tokenizer the encoder dominates; compare against
// `dsv32 tokenize --bench` for that.
func BenchmarkTokenize(b *testing.B) {
	exs, err := Generate(Stories{}, 1, 5000)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "stories.jsonl")
	if err := WriteJSONL(path, exs); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	for b.Loop() {
		w, err := Create(filepath.Join(b.TempDir(), "out"), WriterOptions{EOS: testEOS, ShardTokens: 1 << 18})
		if err != nil {
			b.Fatal(err)
		}
		if err := TokenizeFiles(w, byteEncoder{}, []string{path}, JSONL, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPack measures rows of 1024+1 tokens from a memory-mapped dataset,
// per mode; bytes are the rows' token ids (4 bytes each).
func BenchmarkPack(b *testing.B) {
	exs, _ := Generate(Stories{}, 1, 2000)
	texts := make([]string, len(exs))
	for i, ex := range exs {
		texts[i] = strings.Repeat(ex.Text, 3)
	}
	ds, err := Open(build(b, 1<<16, texts...))
	if err != nil {
		b.Fatal(err)
	}
	defer ds.Close()
	for _, mode := range []Mode{Concat, Boundaries} {
		b.Run(mode.String(), func(b *testing.B) {
			p, err := NewPacker(ds, PackConfig{SeqLen: 1024, Mode: mode, Shuffle: true, Seed: 1})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(4 * 1025)
			for b.Loop() {
				p.Next()
			}
		})
	}
}
