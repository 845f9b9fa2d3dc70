package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/schollz/progressbar/v3"

	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/train/data"
)

// dataCmd groups the training-data tools (package train/data).
type dataCmd struct {
	Tokenize dataTokenizeCmd `cmd:"" help:"Tokenise text files into uint32 shards and an index.json."`
	Synth    dataSynthCmd    `cmd:"" help:"Generate a synthetic task as JSONL: retrieval (long context), stories, arith, copy, reverse, recall, induction."`
	Ladder   dataLadderCmd   `cmd:"" help:"Write SFT conversations (JSONL) from a task of the RL ladder: reverse, add, countdown, …"`
	Inspect  dataInspectCmd  `cmd:"" help:"Summarise a tokenised dataset; with --tokenizer, decode a document."`
}

type dataTokenizeCmd struct {
	Tokenizer   string   `required:"" type:"existingfile" placeholder:"PATH" env:"DSV32_TOKENIZER" help:"The tokenizer.json; its SHA-256 goes into the index."`
	Out         string   `required:"" type:"path" placeholder:"DIR" help:"The dataset directory (created; an index.json there is replaced)."`
	ShardTokens int      `default:"16777216" placeholder:"N" help:"Tokens per shard (a longer document gets a shard of its own)."`
	Lines       bool     `help:"Each line is a document (blank lines skipped)."`
	JSONL       bool     `name:"jsonl" help:"Each line is a JSON object whose \"text\" is a document (the default for files ending in .jsonl)."`
	EOS         int      `default:"-1" placeholder:"ID" help:"The id appended after each document; -1: the tokenizer's <｜end▁of▁sentence｜> (or </s>, <|endoftext|>)."`
	Workers     int      `default:"0" help:"Encoding goroutines; 0: one per CPU."`
	Files       []string `arg:"" type:"existingfile" help:"Text files; each whole file is a document unless --lines or --jsonl."`
}

func (c *dataTokenizeCmd) Run() error {
	tok, info, err := dataLoadTokenizer(c.Tokenizer)
	if err != nil {
		return err
	}
	in := data.Whole
	switch {
	case c.Lines && c.JSONL:
		return fmt.Errorf("data tokenize: --lines and --jsonl exclude each other")
	case c.Lines:
		in = data.Lines
	case c.JSONL || !slices.ContainsFunc(c.Files, func(f string) bool { return !strings.HasSuffix(f, ".jsonl") }):
		in = data.JSONL
	}
	eos := c.EOS
	if eos < 0 {
		if eos, err = dataEOS(tok); err != nil {
			return err
		}
	}
	w, err := data.Create(c.Out, data.WriterOptions{EOS: eos, ShardTokens: c.ShardTokens, Tokenizer: info})
	if err != nil {
		return err
	}
	var total int64
	for _, f := range c.Files {
		if st, err := os.Stat(f); err == nil {
			total += st.Size()
		}
	}
	bar := progressbar.DefaultBytes(total, "tokenizing")
	for _, f := range c.Files {
		if err := data.TokenizeFiles(w, tok, []string{f}, in, c.Workers); err != nil {
			w.Abort()
			return err
		}
		if st, err := os.Stat(f); err == nil {
			bar.Add64(st.Size())
		}
	}
	bar.Finish()
	idx, err := w.Close()
	if err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d documents (%s), %d tokens with EOS %d, %d shards\n",
		c.Out, idx.Documents, in, idx.Tokens, eos, len(idx.Shards))
	return nil
}

// dataLoadTokenizer loads a tokenizer.json and identifies it by its bytes.
func dataLoadTokenizer(path string) (*tokenizer.BPE, data.TokenizerInfo, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, data.TokenizerInfo{}, err
	}
	tok, err := tokenizer.Load(path)
	if err != nil {
		return nil, data.TokenizerInfo{}, err
	}
	sum := sha256.Sum256(raw)
	return tok, data.TokenizerInfo{SHA256: hex.EncodeToString(sum[:]), VocabSize: tok.VocabSize()}, nil
}

// dataEOS finds the tokenizer's end-of-document token.
func dataEOS(tok *tokenizer.BPE) (int, error) {
	for _, s := range []string{"<｜end▁of▁sentence｜>", "</s>", "<|endoftext|>"} {
		if id, ok := tok.Special()[s]; ok {
			return id, nil
		}
	}
	return 0, fmt.Errorf("data: the tokenizer has no <｜end▁of▁sentence｜>, </s> or <|endoftext|> special token; pass --eos")
}

type dataSynthCmd struct {
	Task      string `required:"" enum:"retrieval,stories,arith,copy,reverse,recall,induction" help:"retrieval: secret numbers hidden in long filler, asked for at the end; stories: tiny stories; arith: arithmetic facts; copy, reverse: letter strings; recall: key-value pairs, every key asked again (associative recall); induction: a random sequence of pseudo-words told twice (the test for copying attention)."`
	N         int    `default:"1000" help:"Examples to generate."`
	Tokens    int    `default:"4096" placeholder:"L" help:"retrieval: tokens per document (measured with --tokenizer, else estimated)."`
	MaxTokens int    `default:"0" placeholder:"L" help:"retrieval: when above --tokens, lengths are uniform in [--tokens, --max-tokens]."`
	Pairs     int    `default:"4" help:"retrieval: secret numbers per document; recall: key-value pairs per document."`
	Questions int    `default:"0" help:"retrieval: facts asked at the end, each question followed by its answer (0: one; at most --pairs)."`
	Digits    int    `default:"0" help:"retrieval: digits per secret number (0: 6); arith: digits per operand (0: 2)."`
	Spaced    bool   `help:"retrieval: write each number's digits apart (\"4 8 2 9\"): one frequent token a digit."`
	Letters   bool   `help:"retrieval: values are --digits consonants, spaced (\"k l o b\"): one token each in most tokenizers."`
	Restate   bool   `help:"retrieval: each answer restates the fact up to its value (\"Answer: The secret number of the red fox is …\"), as RULER does."`
	Words     int    `default:"0" help:"stories, retrieval filler: words per word list, the vocabulary's size (0: all); induction: distinct pseudo-words (0: 256)."`
	Repeat    int    `default:"0" help:"stories: tell each story this many times (0: once); later tellings train copying attention."`
	Seed      uint64 `default:"1" help:"Example i of a seed is always the same."`
	Tokenizer string `type:"existingfile" placeholder:"PATH" help:"A tokenizer.json to measure retrieval lengths exactly."`
	Out       string `required:"" type:"path" placeholder:"FILE.jsonl" help:"Where to write the examples, one {\"text\", \"prompt\", \"answer\", \"depth\"} a line."`
}

func (c *dataSynthCmd) Run() error {
	if c.N < 1 {
		return fmt.Errorf("data synth: --n %d, want at least 1", c.N)
	}
	var g data.Generator
	switch c.Task {
	case "retrieval":
		t := data.Retrieval{Tokens: c.Tokens, MaxTokens: c.MaxTokens, Pairs: c.Pairs, Digits: c.Digits, Spaced: c.Spaced, Restate: c.Restate, Letters: c.Letters, Words: c.Words, Questions: c.Questions}
		if c.Tokens < 1 {
			return fmt.Errorf("data synth: --tokens %d, want at least 1", c.Tokens)
		}
		if c.Tokenizer != "" {
			tok, err := tokenizer.Load(c.Tokenizer)
			if err != nil {
				return err
			}
			t.Count = func(s string) int { return len(tok.Encode(s)) }
		}
		g = t
	case "stories":
		g = data.Stories{Words: c.Words, Repeat: c.Repeat}
	case "arith":
		g = data.Arith{Digits: c.Digits}
	case "copy", "reverse":
		g = data.Copy{Reverse: c.Task == "reverse"}
	case "recall":
		g = data.Recall{Pairs: c.Pairs}
	case "induction":
		g = data.Induction{Vocab: c.Words}
	}
	exs, err := data.Generate(g, c.Seed, c.N)
	if err != nil {
		return err
	}
	if err := data.WriteJSONL(c.Out, exs); err != nil {
		return err
	}
	bytes := 0
	for _, ex := range exs {
		bytes += len(ex.Text)
	}
	fmt.Printf("wrote %s: %d %s examples, %d bytes of text\n", c.Out, len(exs), c.Task, bytes)
	return nil
}

type dataInspectCmd struct {
	Dir       string `arg:"" type:"existingdir" help:"A dataset directory written by 'dsv32 data tokenize'."`
	Tokenizer string `type:"existingfile" placeholder:"PATH" env:"DSV32_TOKENIZER" help:"Decode a sample document with this tokenizer.json (and check it is the dataset's)."`
	Doc       int    `default:"0" help:"The document to show."`
	Show      int    `default:"200" help:"Tokens of it to show."`
	Verify    bool   `help:"Read every shard: checksums, id range, EOS after each document."`
}

func (c *dataInspectCmd) Run() error {
	ds, err := data.Open(c.Dir)
	if err != nil {
		return err
	}
	defer ds.Close()
	x := ds.Index
	fmt.Printf("%s: %s version %d, %s\n", c.Dir, x.Format, x.Version, x.DType)
	fmt.Printf("tokenizer: sha256 %s, %d ids; eos %d\n", x.Tokenizer.SHA256, x.Tokenizer.VocabSize, x.EOS)
	fmt.Printf("%d shards, %d documents, %d tokens\n", len(x.Shards), ds.NumDocs(), ds.NumTokens())
	if n := ds.NumDocs(); n > 0 {
		lens := make([]int, n)
		for i := range lens {
			lens[i] = ds.DocLen(i)
		}
		slices.Sort(lens)
		fmt.Printf("document tokens (EOS included): min %d, median %d, mean %.1f, max %d\n",
			lens[0], lens[n/2], float64(ds.NumTokens())/float64(n), lens[n-1])
	}
	if c.Verify {
		if err := ds.Verify(); err != nil {
			return err
		}
		fmt.Println("verify: ok")
	}
	if ds.NumDocs() == 0 {
		return nil
	}
	if c.Doc < 0 || c.Doc >= ds.NumDocs() {
		return fmt.Errorf("data inspect: --doc %d: the dataset has documents 0 to %d", c.Doc, ds.NumDocs()-1)
	}
	doc := ds.Doc(c.Doc)
	ids := make([]int, min(len(doc), max(c.Show, 0)))
	for i := range ids {
		ids[i] = int(doc[i])
	}
	fmt.Printf("document %d: %d tokens\n", c.Doc, len(doc))
	if c.Tokenizer == "" {
		strs := make([]string, len(ids))
		for i, id := range ids {
			strs[i] = strconv.Itoa(id)
		}
		fmt.Println(strings.Join(strs, ","))
		return nil
	}
	tok, info, err := dataLoadTokenizer(c.Tokenizer)
	if err != nil {
		return err
	}
	if info.SHA256 != x.Tokenizer.SHA256 {
		fmt.Fprintf(os.Stderr, "warning: %s is not the dataset's tokenizer (sha256 %s)\n", c.Tokenizer, info.SHA256)
	}
	fmt.Printf("%q\n", tok.Decode(ids))
	return nil
}
