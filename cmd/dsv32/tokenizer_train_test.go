package main

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/dsv32/dsv32/tokenizer"
)

// TestTokenizerTrainJSONL: a .jsonl training file contributes the "text" of
// each line, so the words of synthetic tasks become tokens and none of the
// JSON around them does.
func TestTokenizerTrainJSONL(t *testing.T) {
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "retrieval.jsonl")
	if err := runCLI(t, "data", "synth", "--task", "retrieval", "--n", "200", "--tokens", "200", "--pairs", "1",
		"--letters", "--restate", "--out", jsonl); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tok.json")
	if err := runCLI(t, "tokenizer", "train", "--vocab-size", "600", "--out", out, jsonl); err != nil {
		t.Fatal(err)
	}
	b, err := tokenizer.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	ids := b.Encode(" secret code of the")
	if len(ids) != 4 {
		t.Errorf(`" secret code of the" is %d tokens, want 4 (one a word): %q`, len(ids), b.Decode(ids))
	}
	for id := range b.VocabSize() {
		if tok := b.Decode([]int{id}); slices.Contains([]string{`{"`, `":`, `": "`, `\n`}, tok) {
			t.Errorf("token %q of the JSON syntax was learned", tok)
		}
	}
	if err := runCLI(t, "tokenizer", "train", "--vocab-size", "600", "--out", out, filepath.Join(dir, "missing.jsonl")); err == nil {
		t.Error("a missing training file gave no error")
	}
}
