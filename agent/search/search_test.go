package search

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/agent"
)

const docs = "../../testdata/agent/docs"

func TestSearch(t *testing.T) {
	ix, err := Build(docs)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query string
		ids   []string // ranked
	}{
		{"lightning indexer", []string{"dsa.md#1"}},
		{"latent attention cache", []string{"mla.md#1", "dsa.md#1"}},
		{"experts routing", []string{"moe.md#1", "notes/grpo.txt#1"}}, // GRPO's "keep routing"
		{"GRPO KL", []string{"notes/grpo.txt#1", "dsa.md#1"}},
		{"CAFÉ", []string{"notes/café.txt#1"}},
		{"zürich", []string{"notes/café.txt#1"}},
		{"nonexistentword", nil},
	}
	for _, tc := range tests {
		var ids []string
		for _, h := range ix.Search(tc.query, 5) {
			ids = append(ids, h.ID)
		}
		if !reflect.DeepEqual(ids, tc.ids) {
			t.Errorf("Search(%q) = %v, want %v", tc.query, ids, tc.ids)
		}
	}
	h := ix.Search("lightning indexer", 1)[0]
	if h.Title != "DeepSeek Sparse Attention" || !strings.Contains(h.Snippet, "lightning indexer") || h.Score <= 0 {
		t.Errorf("hit %+v", h)
	}
}

func TestPagination(t *testing.T) {
	dir := t.TempDir()
	para := strings.Repeat("alpha beta gamma delta ", 40) // ~920 chars
	long := "# Long\n\n" + strings.Repeat(para+"\n\n", 7) + "omega " + strings.Repeat("x", PageChars*2)
	os.WriteFile(filepath.Join(dir, "long.md"), []byte(long), 0o644)
	os.WriteFile(filepath.Join(dir, "page.html"), []byte("<html><script>var x</script><p>Hello &amp; <b>world</b></p></html>"), 0o644)
	os.WriteFile(filepath.Join(dir, "skip.bin"), []byte{0, 1, 2}, 0o644)
	ix, err := Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	var long1 []Page
	for _, p := range ix.Pages {
		if p.Doc == "long.md" {
			long1 = append(long1, p)
			if n := len([]rune(p.Text)); n > PageChars {
				t.Errorf("page %d has %d characters", p.Page, n)
			}
		}
	}
	if len(long1) < 4 || long1[0].Pages != len(long1) || long1[0].Title != "Long" {
		t.Errorf("%d pages, first %+v", len(long1), long1[0].Page)
	}
	p, err := ix.Open("page.html")
	if err != nil || strings.Contains(p.Text, "<") || strings.Contains(p.Text, "var x") || !strings.Contains(p.Text, "Hello & world") {
		t.Errorf("html page %q, %v", p.Text, err)
	}
	if len(ix.Search("omega", 5)) != 1 {
		t.Error("term in the oversized paragraph not found")
	}
}

func TestSaveLoad(t *testing.T) {
	ix, err := Build(docs)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "docs.idx")
	if err := ix.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := ix.Save(path); err != nil { // replacing is fine
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"sparse attention indexer", "experts", "café"} {
		if a, b := ix.Search(q, 5), back.Search(q, 5); !reflect.DeepEqual(a, b) {
			t.Errorf("%q: %v after load, %v before", q, b, a)
		}
	}
	if err := ix.Save(filepath.Join(dir, "missing", "x.idx")); err == nil {
		t.Error("save into a missing directory succeeded")
	}
	os.WriteFile(filepath.Join(dir, "bad.idx"), []byte("not gzip"), 0o644)
	if _, err := Load(filepath.Join(dir, "bad.idx")); err == nil || !strings.Contains(err.Error(), "not a gzipped index") {
		t.Errorf("bad index: %v", err)
	}
	if _, err := Build(t.TempDir()); err == nil {
		t.Error("empty collection indexed")
	}
}

func TestTools(t *testing.T) {
	ix, err := Build(docs)
	if err != nil {
		t.Fatal(err)
	}
	box, err := agent.NewToolbox(Tools(ix)...)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, args, want string
		isErr            bool
	}{
		{"search", `{"query":"top-k tokens","k":1}`, "1. [dsa.md#1] DeepSeek Sparse Attention (score ", false},
		{"search", `{"query":"qqqq"}`, "no results", false},
		{"search", `{"query":"  ,, "}`, "error: empty query: the query has no words", true},
		{"search", `{"query":"x","k":50}`, "error: invalid arguments for search: $.k: 50 is greater than the maximum 20", true},
		{"open", `{"id":"moe.md#1"}`, "moe.md — DeepSeekMoE (page 1 of 1)\n\n# DeepSeekMoE\n\nThe mixture", false},
		{"open", `{"id":"moe.md#2"}`, `error: no page "moe.md#2"`, true},
	}
	for _, tc := range tests {
		got, isErr := box.Call(context.Background(), agent.ToolCall{Name: tc.name, Arguments: tc.args})
		if isErr != tc.isErr || !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s(%s) = %q, %v; want prefix %q", tc.name, tc.args, got, isErr, tc.want)
		}
	}
}
