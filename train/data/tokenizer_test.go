package data_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train/data"
)

var _ data.Encoder = (*tokenizer.BPE)(nil)

// TestWithBPE runs the pipeline with the project's tokenizer: a BPE trained
// on synthetic stories tokenises stories and retrieval documents (sized by
// that BPE) into shards that decode back to the text.
func TestWithBPE(t *testing.T) {
	stories, err := data.Generate(data.Stories{}, 1, 300)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Train(func(yield func(string) bool) {
		for _, ex := range stories {
			if !yield(ex.Text) {
				return
			}
		}
	}, 600, tokenizer.TrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eos := tok.Special()["<｜end▁of▁sentence｜>"]
	count := func(s string) int { return len(tok.Encode(s)) }
	retrieval, err := data.Generate(data.Retrieval{Tokens: 4096, Pairs: 4, Count: count}, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, ex := range retrieval {
		if n := count(ex.Text); n > 4096 || n < 4000 {
			t.Errorf("retrieval document of %d tokens, want 4096", n)
		}
	}
	examples := append(stories[:50:50], retrieval...)
	src := filepath.Join(t.TempDir(), "x.jsonl")
	if err := data.WriteJSONL(src, examples); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := data.Create(dir, data.WriterOptions{EOS: eos, ShardTokens: 5000, Tokenizer: data.TokenizerInfo{VocabSize: tok.VocabSize()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := data.TokenizeFiles(w, tok, []string{src}, data.JSONL, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ds, err := data.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	if err := ds.Verify(); err != nil {
		t.Fatal(err)
	}
	if ds.NumDocs() != len(examples) {
		t.Fatalf("%d documents, want %d", ds.NumDocs(), len(examples))
	}
	for i, ex := range examples {
		doc := ds.Doc(i)
		ids := make([]int, len(doc)-1)
		for k := range ids {
			ids[k] = int(doc[k])
		}
		if got := tok.Decode(ids); got != ex.Text || !slices.Equal(ids, tok.Encode(ex.Text)) {
			t.Fatalf("document %d decodes to %.60q…, want %.60q…", i, got, ex.Text)
		}
	}
	p, err := data.NewPacker(ds, data.PackConfig{SeqLen: 8192, Mode: data.Boundaries, Shuffle: true, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Next(); len(r.Tokens) != 8193 {
		t.Fatalf("row of %d tokens", len(r.Tokens))
	}
}
