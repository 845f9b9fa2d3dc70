package data

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzOpen feeds arbitrary index.json bytes and shard bytes to the reader:
// it must answer with an error or a dataset whose documents all read, and
// never panic.
func FuzzOpen(f *testing.F) {
	dir := build(f, 8, "abc", "defgh", "ij", "")
	idx, _ := os.ReadFile(filepath.Join(dir, IndexName))
	s0, _ := os.ReadFile(filepath.Join(dir, ShardName(0)))
	s1, _ := os.ReadFile(filepath.Join(dir, ShardName(1)))
	f.Add(idx, s0, s1)
	f.Add(idx, s0[:7], s1)
	f.Add([]byte(`{"format":"dsv32-tokens","version":1,"dtype":"uint32le","eos":0,"documents":0,"tokens":0,"shards":[]}`), []byte{}, []byte{})
	f.Add([]byte(`{"format":"dsv32-tokens","version":1,"dtype":"uint32le","eos":0,"documents":1,"tokens":1,"shards":[{"name":"a.bin","tokens":1,"doc_ends":[1]}]}`), []byte{0, 0, 0, 0}, []byte{})
	f.Fuzz(func(t *testing.T, index, shard0, shard1 []byte) {
		x, err := ParseIndex(index)
		if err != nil {
			return
		}
		raw := [][]byte{shard0, shard1}
		if len(x.Shards) <= 2 {
			raw = raw[:len(x.Shards)]
		}
		ds, err := newDataset(x, raw)
		if err != nil {
			return
		}
		n := 0
		for i := range ds.NumDocs() {
			n += len(ds.Doc(i))
			if ds.DocLen(i) != len(ds.Doc(i)) {
				t.Fatal("DocLen disagrees with Doc")
			}
		}
		if int64(n) != ds.NumTokens() {
			t.Fatalf("documents hold %d tokens, the index says %d", n, ds.NumTokens())
		}
		ds.Verify()
		if n > 0 {
			p, err := NewPacker(ds, PackConfig{SeqLen: 3, Mode: Boundaries})
			if err != nil {
				t.Fatal(err)
			}
			for range 4 {
				p.Next()
			}
		}
		out, _ := json.Marshal(x)
		if _, err := ParseIndex(out); err != nil {
			t.Fatalf("a valid index does not survive a round trip: %v", err)
		}
	})
}

// FuzzReadDocuments feeds arbitrary bytes to the Lines and JSONL readers:
// an error or documents, never a panic, and Lines gives back every
// non-blank line.
func FuzzReadDocuments(f *testing.F) {
	f.Add([]byte("{\"text\":\"a\"}\n\n{\"text\":\"b\\nc\"}\r\n"))
	f.Add([]byte("one\r\ntwo\n \nthree"))
	f.Add([]byte(`{"text":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		readDocuments(bytes.NewReader(in), "fuzz", JSONL, func(string) error { return nil })
		var docs []string
		if err := readDocuments(bytes.NewReader(in), "fuzz", Lines, func(s string) error {
			docs = append(docs, s)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			if strings.ContainsRune(d, '\n') || strings.TrimSpace(d) == "" {
				t.Fatalf("line document %q", d)
			}
		}
	})
}
