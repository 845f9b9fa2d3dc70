package tokenizer

import (
	"compress/gzip"
	"encoding/json"
	"os"
	"slices"
	"sync"
	"testing"
)

const deepseekPath = "../testdata/tokenizer/deepseek_v32.json.gz"

// deepseek loads DeepSeek-V3.2's tokenizer once for all tests.
var deepseek = sync.OnceValues(func() (*BPE, error) { return Load(deepseekPath) })

func loadDeepSeek(t testing.TB) *BPE {
	t.Helper()
	b, err := deepseek()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type idCase struct {
	Text string `json:"text"`
	IDs  []int  `json:"ids"`
}

func readCases(t testing.TB, path string) []idCase {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r interface{ Read([]byte) (int, error) } = f
	if len(path) > 3 && path[len(path)-3:] == ".gz" {
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	var doc struct {
		Cases []idCase `json:"cases"`
	}
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc.Cases
}

// TestFixtureCases checks every case that Hugging Face tokenizers encoded.
func TestFixtureCases(t *testing.T) {
	b := loadDeepSeek(t)
	for _, path := range []string{"../testdata/tokenizer/cases.json", "../testdata/tokenizer/hf_cases.json.gz"} {
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s: %v", path, err)
			continue
		}
		cases := readCases(t, path)
		bad := 0
		for i, c := range cases {
			got := b.Encode(c.Text)
			if !slices.Equal(got, c.IDs) {
				bad++
				if bad <= 10 {
					t.Errorf("%s case %d %q:\n got %v\nwant %v", path, i, c.Text, got, c.IDs)
				}
			}
			if dec := b.Decode(c.IDs); dec != c.Text {
				t.Errorf("%s case %d: Decode = %q, want %q", path, i, dec, c.Text)
			}
		}
		t.Logf("%s: %d/%d cases match", path, len(cases)-bad, len(cases))
	}
}

// TestDecodeCases checks Decode against Hugging Face tokenizers on id
// sequences that cut characters (its from_utf8_lossy replacement).
func TestDecodeCases(t *testing.T) {
	b := loadDeepSeek(t)
	f, err := os.Open("../testdata/tokenizer/hf_decode_cases.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Cases []struct {
			IDs  []int  `json:"ids"`
			Text string `json:"text"`
		} `json:"cases"`
	}
	if err := json.NewDecoder(zr).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, c := range doc.Cases {
		if got := b.Decode(c.IDs); got != c.Text {
			bad++
			if bad <= 10 {
				t.Errorf("case %d %v: got %q, want %q", i, c.IDs, got, c.Text)
			}
		}
	}
	t.Logf("%d/%d decode cases match", len(doc.Cases)-bad, len(doc.Cases))
}
