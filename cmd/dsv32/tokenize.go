package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dsv32/dsv32/tokenizer"
	"github.com/dsv32/dsv32/tokenizer/bench"
)

// tokenizeCmd turns text into token ids and ids into text, for inspection,
// and measures encoding speed against the file that
// tokenizer/bench/hf_tokenizers.py reads.
type tokenizeCmd struct {
	Tokenizer string   `required:"" type:"existingfile" placeholder:"PATH" env:"DSV32_TOKENIZER" help:"The tokenizer.json (gzipped or not)."`
	IDs       string   `name:"ids" placeholder:"1,2,3" help:"Decode these ids (commas or spaces) instead of encoding."`
	JSON      bool     `name:"json" help:"Print JSON: {\"ids\", \"tokens\"} for text, {\"text\"} for ids."`
	Ordinary  bool     `help:"Do not recognise added and special tokens in the text."`
	Cases     string   `type:"existingfile" placeholder:"FILE" help:"Encode each line of FILE (newline kept) and print {\"cases\": [{\"text\", \"ids\"}]} (the input of tokenizer/bench/check_trained.py)."`
	Bench     string   `type:"path" placeholder:"FILE" help:"Encode FILE line by line, one goroutine, and print MB/s; FILE is first written with --bench-mb MB of mixed text if it does not exist."`
	BenchMB   int      `name:"bench-mb" default:"4" help:"Size of the generated benchmark text."`
	Text      []string `arg:"" optional:"" help:"Text to encode, joined by spaces; standard input when absent."`
}

func (c *tokenizeCmd) Run() error {
	tok, err := tokenizer.Load(c.Tokenizer)
	if err != nil {
		return err
	}
	switch {
	case c.Bench != "":
		return c.bench(tok)
	case c.Cases != "":
		return c.cases(tok)
	case c.IDs != "":
		ids, err := parseTokenIDs(c.IDs)
		if err != nil {
			return err
		}
		text := tok.Decode(ids)
		if c.JSON {
			return printJSON(map[string]string{"text": text})
		}
		_, err = fmt.Println(text)
		return err
	}
	var text string
	if len(c.Text) > 0 {
		text = strings.Join(c.Text, " ")
	} else {
		data, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("tokenize: reading standard input: %w", err)
		}
		text = string(data)
	}
	var ids []int
	if c.Ordinary {
		ids = tok.EncodeOrdinary(text)
	} else {
		ids = tok.Encode(text)
	}
	if c.JSON {
		tokens := make([]string, len(ids))
		for i, id := range ids {
			tokens[i] = tok.IDToToken(id)
		}
		return printJSON(map[string]any{"ids": ids, "tokens": tokens})
	}
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = strconv.Itoa(id)
	}
	_, err = fmt.Println(strings.Join(strs, ","))
	return err
}

// parseTokenIDs reads "1,2,3" or "1 2 3".
func parseTokenIDs(s string) ([]int, error) {
	var ids []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		id, err := strconv.Atoi(f)
		if err != nil || id < 0 {
			return nil, fmt.Errorf("tokenize: --ids: %q is not a token id", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func printJSON(v any) error {
	e := json.NewEncoder(os.Stdout)
	e.SetEscapeHTML(false)
	return e.Encode(v)
}

// splitLines cuts text after each newline.
func splitLines(text string) []string {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func (c *tokenizeCmd) cases(tok *tokenizer.BPE) error {
	data, err := os.ReadFile(c.Cases)
	if err != nil {
		return fmt.Errorf("tokenize: %w", err)
	}
	type tcase struct {
		Text string `json:"text"`
		IDs  []int  `json:"ids"`
	}
	var out struct {
		Cases []tcase `json:"cases"`
	}
	out.Cases = []tcase{}
	for _, l := range splitLines(string(data)) {
		out.Cases = append(out.Cases, tcase{l, tok.Encode(l)})
	}
	return printJSON(out)
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// bench encodes the file line by line (Encode, added tokens recognised, as
// hf_tokenizers.py does with encode(line, add_special_tokens=False)): one
// first pass with an empty cache, then passes for at least two seconds, and
// prints MB/s of wall and of CPU time for both.
func (c *tokenizeCmd) bench(tok *tokenizer.BPE) error {
	if _, err := os.Stat(c.Bench); os.IsNotExist(err) {
		if c.BenchMB <= 0 {
			return fmt.Errorf("tokenize: --bench-mb %d is not a size", c.BenchMB)
		}
		if err := os.WriteFile(c.Bench, []byte(bench.MixedText(c.BenchMB<<20, 1)), 0o644); err != nil {
			return fmt.Errorf("tokenize: writing benchmark text: %w", err)
		}
		fmt.Fprintf(os.Stderr, "wrote %d MB of mixed text to %s\n", c.BenchMB, c.Bench)
	}
	data, err := os.ReadFile(c.Bench)
	if err != nil {
		return fmt.Errorf("tokenize: %w", err)
	}
	lines := splitLines(string(data))
	ids := 0
	cold0, coldT := cpuSeconds(), time.Now()
	for _, l := range lines { // the first pass fills the pre-token cache
		ids += len(tok.Encode(l))
	}
	coldWall, coldCPU := time.Since(coldT).Seconds(), cpuSeconds()-cold0
	passes := 0
	cpu0, t0 := cpuSeconds(), time.Now()
	for passes == 0 || time.Since(t0) < 2*time.Second {
		for _, l := range lines {
			tok.Encode(l)
		}
		passes++
	}
	wall, cpu := time.Since(t0).Seconds(), cpuSeconds()-cpu0
	mb := float64(len(data)*passes) / 1e6
	var w bytes.Buffer
	fmt.Fprintf(&w, "dsv32 tokenizer: %s, %d bytes, %d lines, %d ids, %d passes\n", c.Bench, len(data), len(lines), ids, passes)
	fmt.Fprintf(&w, "  first pass: %.2f MB/s (wall), %.2f MB per CPU second\n", float64(len(data))/1e6/coldWall, float64(len(data))/1e6/coldCPU)
	fmt.Fprintf(&w, "  later passes: %.2f MB/s (wall), %.2f MB per CPU second\n", mb/wall, mb/cpu)
	_, err = os.Stdout.Write(w.Bytes())
	return err
}
