package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"

	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train/data"
)

// tokenizerCmd groups tokenizer tools.
type tokenizerCmd struct {
	Train tokenizerTrainCmd `cmd:"" help:"Train a byte-level BPE (DeepSeek's pre-tokenizer and special tokens) on text files and write a tokenizer.json."`
}

type tokenizerTrainCmd struct {
	VocabSize    int      `required:"" help:"Ids in the result: special tokens, 256 bytes, then merges."`
	Out          string   `required:"" type:"path" placeholder:"PATH" help:"Where to write the tokenizer.json."`
	MinFrequency int      `default:"2" help:"Stop when the most frequent pair is rarer than this."`
	Files        []string `arg:"" type:"existingfile" help:"Training text files, each read whole; a .jsonl file gives the \"text\" of each line (as 'dsv32 data synth' writes)."`
}

func (c *tokenizerTrainCmd) Run() error {
	var bar *progressbar.ProgressBar
	var readErr error
	texts := func(yield func(string) bool) {
		for _, f := range c.Files {
			if strings.HasSuffix(f, ".jsonl") {
				exs, err := data.ReadJSONL(f)
				if err != nil {
					readErr = err
					return
				}
				for _, ex := range exs {
					if !yield(ex.Text) {
						return
					}
				}
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				readErr = fmt.Errorf("tokenizer train: %w", err)
				return
			}
			if !yield(string(b)) {
				return
			}
		}
	}
	b, err := tokenizer.Train(texts, c.VocabSize, tokenizer.TrainOptions{
		MinFrequency: c.MinFrequency,
		Progress: func(done, total int) {
			if bar == nil {
				bar = progressbar.Default(int64(total), "merges")
			}
			bar.Set(done)
		},
	})
	if bar != nil {
		bar.Finish()
	}
	if readErr != nil {
		return readErr
	}
	if err != nil {
		return err
	}
	if b.VocabSize() < c.VocabSize {
		slog.Warn("fewer merges than asked: no pair is frequent enough", "vocab_size", b.VocabSize(), "asked", c.VocabSize)
	}
	if err := b.Save(c.Out); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d ids\n", c.Out, b.VocabSize())
	return nil
}
