package main

import (
	"fmt"
	"log/slog"

	"github.com/schollz/progressbar/v3"

	"github.com/dsv32/dsv32/tokenizer"
)

// tokenizerCmd groups tokenizer tools.
type tokenizerCmd struct {
	Train tokenizerTrainCmd `cmd:"" help:"Train a byte-level BPE (DeepSeek's pre-tokenizer and special tokens) on text files and write a tokenizer.json."`
}

type tokenizerTrainCmd struct {
	VocabSize    int      `required:"" help:"Ids in the result: special tokens, 256 bytes, then merges."`
	Out          string   `required:"" type:"path" placeholder:"PATH" help:"Where to write the tokenizer.json."`
	MinFrequency int      `default:"2" help:"Stop when the most frequent pair is rarer than this."`
	Files        []string `arg:"" type:"existingfile" help:"Training text files, each read whole."`
}

func (c *tokenizerTrainCmd) Run() error {
	var bar *progressbar.ProgressBar
	b, err := tokenizer.TrainFiles(c.Files, c.VocabSize, tokenizer.TrainOptions{
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
