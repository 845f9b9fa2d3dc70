package data

import (
	"encoding/json"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// byteEncoder is a stand-in tokenizer: one id per byte; 256 is EOS.
type byteEncoder struct{}

func (byteEncoder) Encode(s string) []int {
	ids := make([]int, len(s))
	for i := range len(s) {
		ids[i] = int(s[i])
	}
	return ids
}

const testEOS = 256

var testTokenizer = TokenizerInfo{SHA256: strings.Repeat("ab", 32), VocabSize: 257}

// want returns the documents a byteEncoder dataset should hold.
func want(texts ...string) [][]uint32 {
	var out [][]uint32
	for _, t := range texts {
		if t == "" {
			continue
		}
		d := make([]uint32, 0, len(t)+1)
		for i := range len(t) {
			d = append(d, uint32(t[i]))
		}
		out = append(out, append(d, testEOS))
	}
	return out
}

func writeFiles(t *testing.T, dir string, files map[string]string) []string {
	t.Helper()
	var paths []string
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	}) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(files[name]), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

// build writes a dataset of texts (one document each) to a new directory.
func build(t testing.TB, shardTokens int, texts ...string) string {
	t.Helper()
	dir := t.TempDir()
	w, err := Create(dir, WriterOptions{EOS: testEOS, ShardTokens: shardTokens, Tokenizer: testTokenizer})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range texts {
		if err := w.Add(byteEncoder{}.Encode(s)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestShardRoundTrip(t *testing.T) {
	long := strings.Repeat("long document ", 40)
	tests := []struct {
		name        string
		in          Input
		files       map[string]string
		shardTokens int
		docs        [][]uint32
		shards      int
	}{
		{"whole", Whole, map[string]string{"a.txt": "hello\nworld\n", "b.txt": "", "c.txt": "x"}, 0, want("hello\nworld\n", "x"), 1},
		{"lines", Lines, map[string]string{"a.txt": "one\r\ntwo\n\nthree", "b.txt": "four\n"}, 0, want("one", "two", "three", "four"), 1},
		{"jsonl", JSONL, map[string]string{"a.jsonl": `{"text":"héllo","id":1}` + "\n\n" + `{"text":"","x":2}` + "\n" + `{"text":"b\nc"}`}, 0,
			want("héllo", "b\nc"), 1},
		{"small shards", Lines, map[string]string{"a.txt": "abc\ndefgh\nij\nk\n"}, 6, want("abc", "defgh", "ij", "k"), 3},
		{"document longer than a shard", Lines, map[string]string{"a.txt": "ab\n" + long + "\ncd\n"}, 8, want("ab", long, "cd"), 3},
		{"one token shards", Lines, map[string]string{"a.txt": "a\nb\nc\n"}, 1, want("a", "b", "c"), 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var first []byte
			for _, workers := range []int{1, 3} {
				src, dir := t.TempDir(), filepath.Join(t.TempDir(), "out")
				paths := writeFiles(t, src, tc.files)
				w, err := Create(dir, WriterOptions{EOS: testEOS, ShardTokens: tc.shardTokens, Tokenizer: testTokenizer})
				if err != nil {
					t.Fatal(err)
				}
				if err := TokenizeFiles(w, byteEncoder{}, paths, tc.in, workers); err != nil {
					t.Fatal(err)
				}
				idx, err := w.Close()
				if err != nil {
					t.Fatal(err)
				}
				ds, err := Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer ds.Close()
				if err := ds.Verify(); err != nil {
					t.Fatal(err)
				}
				if ds.NumDocs() != len(tc.docs) || len(idx.Shards) != tc.shards {
					t.Fatalf("%d documents in %d shards, want %d in %d", ds.NumDocs(), len(idx.Shards), len(tc.docs), tc.shards)
				}
				total := 0
				for i, d := range tc.docs {
					if got := ds.Doc(i); !slices.Equal(got, d) || ds.DocLen(i) != len(d) {
						t.Errorf("document %d = %v, want %v", i, got, d)
					}
					total += len(d)
				}
				if ds.NumTokens() != int64(total) || ds.Index.Tokenizer != testTokenizer || ds.Index.EOS != testEOS {
					t.Errorf("index %+v", ds.Index)
				}
				for i, s := range ds.Index.Shards {
					if s.Name != ShardName(i) || (tc.shardTokens > 0 && s.Tokens > int64(tc.shardTokens) && len(s.DocEnds) > 1) {
						t.Errorf("shard %d: %s, %d tokens, %d documents", i, s.Name, s.Tokens, len(s.DocEnds))
					}
				}
				ents, _ := os.ReadDir(dir)
				for _, e := range ents {
					if strings.HasSuffix(e.Name(), ".tmp") {
						t.Errorf("temporary file %s left behind", e.Name())
					}
				}
				raw, _ := os.ReadFile(filepath.Join(dir, IndexName))
				if workers == 1 {
					first = raw
				} else if string(raw) != string(first) {
					t.Errorf("the index depends on the number of workers")
				}
			}
		})
	}
}

func TestEmptyDataset(t *testing.T) {
	ds, err := Open(build(t, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	if ds.NumDocs() != 0 || ds.Verify() != nil {
		t.Fatalf("%d documents", ds.NumDocs())
	}
	if _, err := NewPacker(ds, PackConfig{SeqLen: 4}); err == nil {
		t.Error("packing an empty corpus: no error")
	}
}

// corrupt builds a small dataset, applies edit to its directory, and
// returns the error of Open, or else of Verify.
func corrupt(t *testing.T, edit func(dir string)) error {
	t.Helper()
	dir := build(t, 8, "abc", "defgh", "ij")
	edit(dir)
	ds, err := Open(dir)
	if err != nil {
		return err
	}
	defer ds.Close()
	return ds.Verify()
}

// editIndex rewrites index.json through f.
func editIndex(f func(m map[string]any)) func(dir string) {
	return func(dir string) {
		p := filepath.Join(dir, IndexName)
		raw, _ := os.ReadFile(p)
		var m map[string]any
		json.Unmarshal(raw, &m)
		f(m)
		raw, _ = json.Marshal(m)
		os.WriteFile(p, raw, 0o644)
	}
}

func shard(m map[string]any, i int) map[string]any {
	return m["shards"].([]any)[i].(map[string]any)
}

func TestCorruption(t *testing.T) {
	s0 := func(dir string) string { return filepath.Join(dir, ShardName(0)) }
	tests := []struct {
		name string
		edit func(dir string)
		want string // in the error
	}{
		{"no index", func(dir string) { os.Remove(filepath.Join(dir, IndexName)) }, "has no index.json"},
		{"index not JSON", func(dir string) { os.WriteFile(filepath.Join(dir, IndexName), []byte("{\"format\":"), 0o644) }, "index.json"},
		{"trailing data", func(dir string) {
			raw, _ := os.ReadFile(filepath.Join(dir, IndexName))
			os.WriteFile(filepath.Join(dir, IndexName), append(raw, "{}"...), 0o644)
		}, "trailing data"},
		{"format", editIndex(func(m map[string]any) { m["format"] = "npy" }), `format "npy"`},
		{"version", editIndex(func(m map[string]any) { m["version"] = 2 }), "version 2 is not supported"},
		{"dtype", editIndex(func(m map[string]any) { m["dtype"] = "uint16" }), "dtype"},
		{"eos outside vocabulary", editIndex(func(m map[string]any) { m["eos"] = 999 }), "eos 999"},
		{"path in shard name", editIndex(func(m map[string]any) { shard(m, 0)["name"] = "../x.bin" }), "not a .bin file name"},
		{"duplicate shard", editIndex(func(m map[string]any) { shard(m, 1)["name"] = ShardName(0) }), "appears twice"},
		{"doc ends not increasing", editIndex(func(m map[string]any) { shard(m, 0)["doc_ends"] = []int{4, 4} }), "doc_ends[1]"},
		{"doc ends short of tokens", editIndex(func(m map[string]any) { shard(m, 0)["doc_ends"] = []int{3} }), "last doc_end 3"},
		{"document count", editIndex(func(m map[string]any) { m["documents"] = 7 }), "documents 7"},
		{"token count", editIndex(func(m map[string]any) { m["tokens"] = 7 }), "tokens 7"},
		{"missing shard", func(dir string) { os.Remove(s0(dir)) }, "shard 0"},
		{"truncated shard", func(dir string) { os.Truncate(s0(dir), 7) }, "truncated"},
		{"long shard", func(dir string) {
			raw, _ := os.ReadFile(s0(dir))
			os.WriteFile(s0(dir), append(raw, 0, 0, 0, 0), 0o644)
		}, "longer than the index says"},
		{"flipped bit", func(dir string) {
			raw, _ := os.ReadFile(s0(dir))
			raw[5] ^= 1
			os.WriteFile(s0(dir), raw, 0o644)
		}, "CRC-32C"},
		{"id outside vocabulary", func(dir string) {
			raw, _ := os.ReadFile(s0(dir))
			raw[1] = 9 // token 0 becomes 'a' + 9*256
			os.WriteFile(s0(dir), raw, 0o644)
			editIndex(func(m map[string]any) { shard(m, 0)["crc32c"] = crc(raw) })(dir)
		}, "outside the vocabulary"},
		{"no EOS", func(dir string) {
			raw, _ := os.ReadFile(s0(dir))
			raw[12] = 'x' // token 3, the EOS of "abc"
			raw[13] = 0
			os.WriteFile(s0(dir), raw, 0o644)
			editIndex(func(m map[string]any) { shard(m, 0)["crc32c"] = crc(raw) })(dir)
		}, "does not end with EOS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := corrupt(t, tc.edit)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func crc(b []byte) float64 { return float64(crc32.Checksum(b, castagnoli)) }

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(dir, WriterOptions{EOS: 300, Tokenizer: testTokenizer}); err == nil {
		t.Error("EOS outside the vocabulary: no error")
	}
	w, err := Create(dir, WriterOptions{EOS: testEOS, Tokenizer: testTokenizer})
	if err != nil {
		t.Fatal(err)
	}
	w.Add([]int{1, 2})
	if err := w.Add([]int{1, 999}); err == nil || !strings.Contains(err.Error(), "id 999") {
		t.Errorf("id outside the vocabulary: %v", err)
	}
	if _, err := w.Close(); err == nil {
		t.Error("Close after a failed Add: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, IndexName)); err == nil {
		t.Error("a failed write left an index")
	}
}

func TestReadDocumentsErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{`{"text":"a"}` + "\n" + `not json`, "a.jsonl:2: not a JSON object"},
		{`{"text":"a"}` + "\n" + `{"body":"b"}`, `a.jsonl:2: the object has no "text" string`},
		{`{"text":3}`, "a.jsonl:1"},
	}
	for _, tc := range tests {
		paths := writeFiles(t, t.TempDir(), map[string]string{"a.jsonl": tc.text})
		err := ReadDocuments(paths[0], JSONL, func(string) error { return nil })
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
	if err := ReadDocuments(filepath.Join(t.TempDir(), "none"), Lines, nil); err == nil {
		t.Error("missing file: no error")
	}
}

func TestCreateRemovesOldIndex(t *testing.T) {
	dir := build(t, 0, "abc")
	w, err := Create(dir, WriterOptions{EOS: testEOS})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); err == nil {
		t.Error("a dataset being rewritten still opens")
	}
	w.Abort()
}
