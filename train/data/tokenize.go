package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
)

// Encoder turns text into token ids; *tokenizer.BPE satisfies it. Encode
// must be safe for concurrent use when TokenizeFiles runs more than one
// worker (tokenizer.BPE's is).
type Encoder interface{ Encode(string) []int }

// Input says how a text file splits into documents.
type Input int

const (
	Whole Input = iota // the whole file is one document
	Lines              // each line is a document (newline removed, blank lines skipped)
	JSONL              // each line is a JSON object whose "text" string is a document
)

func (in Input) String() string {
	switch in {
	case Whole:
		return "whole"
	case Lines:
		return "lines"
	case JSONL:
		return "jsonl"
	}
	return fmt.Sprintf("Input(%d)", int(in))
}

// ReadDocuments calls fn with each document of a file, in order. Empty
// documents (in Lines and JSONL, blank ones too) are skipped. Errors name the file and, for JSONL, the line.
func ReadDocuments(path string, in Input, fn func(text string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	defer f.Close()
	return readDocuments(f, path, in, fn)
}

// readDocuments is ReadDocuments over a reader; name is for errors.
func readDocuments(f io.Reader, name string, in Input, fn func(text string) error) error {
	if in == Whole {
		b, err := io.ReadAll(f)
		if err != nil {
			return fmt.Errorf("data: %s: %w", name, err)
		}
		if len(b) == 0 {
			return nil
		}
		return fn(string(b))
	}
	if in != Lines && in != JSONL {
		return fmt.Errorf("data: unknown input format %v", in)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("data: %s:%d: %w", name, line, err)
		}
		text := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if in == JSONL && len(bytes.TrimSpace(b)) > 0 {
			var rec struct {
				Text *string `json:"text"`
			}
			if jerr := json.Unmarshal(b, &rec); jerr != nil {
				return fmt.Errorf("data: %s:%d: not a JSON object: %w", name, line, jerr)
			}
			if rec.Text == nil {
				return fmt.Errorf("data: %s:%d: the object has no \"text\" string", name, line)
			}
			text = *rec.Text
		} else if in == JSONL {
			text = ""
		}
		if strings.TrimSpace(text) != "" {
			if ferr := fn(text); ferr != nil {
				return ferr
			}
		}
		if err != nil { // io.EOF
			return nil
		}
	}
}

// TokenizeFiles encodes every document of the files, in file order, and adds
// it to w (which appends EOS). Workers goroutines encode (0: GOMAXPROCS); the
// order of documents in the shards does not depend on it. It does not Close w.
func TokenizeFiles(w *Writer, enc Encoder, paths []string, in Input, workers int) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const batchBytes, batchDocs = 4 << 20, 1024
	var batch []string
	size := 0
	flush := func() error {
		ids := make([][]int, len(batch))
		var wg sync.WaitGroup
		for k := range min(workers, len(batch)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := k; i < len(batch); i += workers {
					ids[i] = enc.Encode(batch[i])
				}
			}()
		}
		wg.Wait()
		for _, doc := range ids {
			if err := w.Add(doc); err != nil {
				return err
			}
		}
		batch, size = batch[:0], 0
		return nil
	}
	for _, p := range paths {
		err := ReadDocuments(p, in, func(text string) error {
			batch = append(batch, text)
			size += len(text)
			if size >= batchBytes || len(batch) >= batchDocs {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return flush()
}
