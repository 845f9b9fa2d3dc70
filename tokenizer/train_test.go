package tokenizer

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dsv32/dsv32/tokenizer/bench"
)

// trainedSmall is a tokenizer of 1500 ids trained on 256 KB of mixed text;
// testdata/tokenizer/trained_cases.json.gz holds the ids Hugging Face
// tokenizers gives with it (set TOKENIZER_DUMP_TRAINED=PATH to write its
// tokenizer.json, then run bench/make_hf_cases.js on it).
var trainedSmall = sync.OnceValues(func() (*BPE, error) {
	return Train(slices.Values([]string{bench.MixedText(256<<10, 2)}), 1500, TrainOptions{})
})

func TestTrainMatchesHF(t *testing.T) {
	b, err := trainedSmall()
	if err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv("TOKENIZER_DUMP_TRAINED"); path != "" {
		if err := b.Save(path); err != nil {
			t.Fatal(err)
		}
	}
	if b.VocabSize() != 1500 {
		t.Errorf("VocabSize = %d, want 1500", b.VocabSize())
	}
	cases := readCases(t, "../testdata/tokenizer/trained_cases.json.gz")
	bad := 0
	for i, c := range cases {
		if got := b.Encode(c.Text); !slices.Equal(got, c.IDs) {
			bad++
			if bad <= 5 {
				t.Errorf("case %d %q:\n got %v\nwant %v", i, c.Text, got, c.IDs)
			}
		}
	}
	t.Logf("%d/%d cases match Hugging Face tokenizers", len(cases)-bad, len(cases))
}

func TestTrainRoundTrip(t *testing.T) {
	text := bench.MixedText(64<<10, 3)
	b1, err := Train(slices.Values([]string{text}), 700, TrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Train(slices.Values([]string{text}), 700, TrainOptions{})
	if err != nil {
		t.Fatal(err)
	}
	j1, _ := b1.MarshalJSON()
	j2, _ := b2.MarshalJSON()
	if !bytes.Equal(j1, j2) {
		t.Fatal("two trainings on the same text differ")
	}
	ids := b1.Encode(text)
	if got := b1.Decode(ids); got != text {
		t.Fatal("the training text does not round-trip")
	}
	if len(ids) >= len(text)/2 {
		t.Errorf("%d ids for %d bytes: merges barely compress", len(ids), len(text))
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := b1.Save(path); err != nil {
		t.Fatal(err)
	}
	b3, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b3.Encode(text), ids) {
		t.Error("Save → Load changes the ids")
	}
	j3, _ := b3.MarshalJSON()
	if !bytes.Equal(j1, j3) {
		t.Error("Save → Load → Save is not a fixed point")
	}
	for _, sp := range []string{"<｜begin▁of▁sentence｜>", "<think>", "</think>", "<｜User｜>"} {
		if id, ok := b3.TokenToID(sp); !ok || !slices.Equal(b3.Encode(sp), []int{id}) {
			t.Errorf("%q is not one added token", sp)
		}
	}
}

func TestTrainErrors(t *testing.T) {
	for _, c := range []struct {
		name      string
		vocabSize int
		opts      TrainOptions
		want      string
	}{
		{"too small", 100, TrainOptions{}, "vocab size"},
		{"repeated special", 300, TrainOptions{SpecialTokens: []AddedToken{{Content: "<a>"}, {Content: "<a>"}}}, "repeated"},
		{"empty special", 300, TrainOptions{SpecialTokens: []AddedToken{{Content: ""}}}, "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Train(slices.Values([]string{"abc"}), c.vocabSize, c.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want one naming %q", err, c.want)
			}
		})
	}
	if _, err := TrainFiles([]string{"/nonexistent/file"}, 300, TrainOptions{}); err == nil {
		t.Error("TrainFiles of a missing file: no error")
	}
}
