// Package search is the agent's offline search tool: a BM25 index over a
// local document collection, built by `dsv32 index`, with two tools for the
// model: search (ranked snippets) and open (one page of a document).
//
// Documents are the text-like files under a directory (.txt, .md, .markdown,
// .rst, .html, .htm; HTML tags are stripped crudely). Each is split into pages
// of about PageChars characters on paragraph boundaries; pages are what is
// ranked and opened. Terms are lowercased runs of Unicode letters and digits.
//
// It deliberately does not stem, remove stop words, handle phrases or
// boolean queries, or fetch anything from the web: it is a stand-in for the
// commercial search API DeepSeek used, good enough to exercise search agents
// and context management offline.
package search

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// PageChars is the target page size in characters.
const PageChars = 3000

// BM25 parameters.
const (
	k1 = 1.2
	b  = 0.75
)

// Page is one page of one document.
type Page struct {
	Doc   string `json:"doc"` // path relative to the collection, with /
	Title string `json:"title"`
	Page  int    `json:"page"` // from 1
	Pages int    `json:"pages"`
	Text  string `json:"text"`
}

// ID names a page for open: "doc#page".
func (p Page) ID() string { return fmt.Sprintf("%s#%d", p.Doc, p.Page) }

// posting is one (page, term frequency) pair.
type posting struct {
	Page int32 `json:"p"`
	TF   int32 `json:"f"`
}

// Index is a BM25 index over pages.
type Index struct {
	Format   string               `json:"format"`
	Version  int                  `json:"version"`
	Pages    []Page               `json:"pages"`
	Lengths  []int32              `json:"lengths"` // terms per page
	Postings map[string][]posting `json:"postings"`
	avgLen   float64
	byID     map[string]int
}

const (
	formatName    = "dsv32-search-index"
	formatVersion = 1
)

var textExt = map[string]bool{".txt": true, ".md": true, ".markdown": true, ".rst": true, ".html": true, ".htm": true}

// Build indexes the text files under dir.
func Build(dir string) (*Index, error) {
	ix := &Index{Format: formatName, Version: formatVersion, Postings: map[string][]posting{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		ext := strings.ToLower(filepath.Ext(p))
		if !d.Type().IsRegular() || !textExt[ext] {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !utf8.Valid(raw) {
			return fmt.Errorf("%s: not UTF-8 text", p)
		}
		text := string(raw)
		if ext == ".html" || ext == ".htm" {
			text = stripHTML(text)
		}
		relPath, _ := filepath.Rel(dir, p)
		ix.add(filepath.ToSlash(relPath), text)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("search: build index of %s: %w", dir, err)
	}
	if len(ix.Pages) == 0 {
		return nil, fmt.Errorf("search: no text documents (%s) under %s", exts(), dir)
	}
	ix.prepare()
	return ix, nil
}

func exts() string {
	var e []string
	for k := range textExt {
		e = append(e, k)
	}
	sort.Strings(e)
	return strings.Join(e, " ")
}

var (
	tagRE    = regexp.MustCompile(`(?s)<script.*?</script>|<style.*?</style>|<[^>]*>`)
	blankRE  = regexp.MustCompile(`\n\s*\n`)
	spaceRE  = regexp.MustCompile(`[ \t]+`)
	entities = strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&quot;", `"`, "&#39;", "'", "&nbsp;", " ")
)

func stripHTML(s string) string {
	return entities.Replace(spaceRE.ReplaceAllString(tagRE.ReplaceAllString(s, " "), " "))
}

// add splits one document into pages and indexes them.
func (ix *Index) add(doc, text string) {
	title := doc
	for _, line := range strings.Split(text, "\n") {
		if t := strings.TrimSpace(strings.TrimLeft(line, "#= ")); t != "" {
			title = Truncate(t, 120)
			break
		}
	}
	pages := paginate(text)
	for i, pt := range pages {
		pg := Page{Doc: doc, Title: title, Page: i + 1, Pages: len(pages), Text: pt}
		id := int32(len(ix.Pages))
		ix.Pages = append(ix.Pages, pg)
		tf := map[string]int32{}
		n := int32(0)
		for _, t := range Terms(pt) {
			tf[t]++
			n++
		}
		ix.Lengths = append(ix.Lengths, n)
		for t, f := range tf {
			ix.Postings[t] = append(ix.Postings[t], posting{id, f})
		}
	}
}

// paginate splits text into pages of about PageChars on paragraph
// boundaries; an oversized paragraph is cut on whitespace.
func paginate(text string) []string {
	var pages []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			pages = append(pages, s)
		}
		cur.Reset()
	}
	for _, para := range blankRE.Split(text, -1) {
		para = strings.TrimSpace(para)
		for utf8.RuneCountInString(para) > PageChars {
			cut := cutAt(para, PageChars)
			flush()
			pages = append(pages, strings.TrimSpace(para[:cut]))
			para = strings.TrimSpace(para[cut:])
		}
		if cur.Len() > 0 && utf8.RuneCountInString(cur.String())+utf8.RuneCountInString(para) > PageChars {
			flush()
		}
		if cur.Len() > 0 {
			cur.WriteString("\n\n")
		}
		cur.WriteString(para)
	}
	flush()
	if len(pages) == 0 {
		pages = []string{""}
	}
	return pages
}

// cutAt is a byte offset at most n runes in, at the last whitespace if any.
func cutAt(s string, n int) int {
	off, runes, lastSpace := 0, 0, -1
	for i, r := range s {
		if runes == n {
			off = i
			break
		}
		if unicode.IsSpace(r) {
			lastSpace = i
		}
		runes++
		off = i + utf8.RuneLen(r)
	}
	if lastSpace > 0 {
		return lastSpace
	}
	return off
}

// Terms splits text into lowercased runs of letters and digits.
func Terms(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

func (ix *Index) prepare() {
	total := 0.0
	for _, l := range ix.Lengths {
		total += float64(l)
	}
	ix.avgLen = total / math.Max(1, float64(len(ix.Lengths)))
	ix.byID = map[string]int{}
	for i, p := range ix.Pages {
		ix.byID[p.ID()] = i
	}
}

// Hit is one search result.
type Hit struct {
	ID      string  `json:"id"`
	Title   string  `json:"title"`
	Score   float64 `json:"score"`
	Snippet string  `json:"snippet"`
}

// Search ranks pages by BM25 and returns the best k (ties by index order).
func (ix *Index) Search(query string, k int) []Hit {
	terms := unique(Terms(query))
	scores := map[int32]float64{}
	n := float64(len(ix.Pages))
	for _, t := range terms {
		ps := ix.Postings[t]
		if len(ps) == 0 {
			continue
		}
		df := float64(len(ps))
		idf := math.Log(1 + (n-df+0.5)/(df+0.5))
		for _, p := range ps {
			tf := float64(p.TF)
			norm := k1 * (1 - b + b*float64(ix.Lengths[p.Page])/ix.avgLen)
			scores[p.Page] += idf * tf * (k1 + 1) / (tf + norm)
		}
	}
	ids := make([]int32, 0, len(scores))
	for id := range scores {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if scores[ids[i]] != scores[ids[j]] {
			return scores[ids[i]] > scores[ids[j]]
		}
		return ids[i] < ids[j]
	})
	if len(ids) > k {
		ids = ids[:k]
	}
	hits := make([]Hit, 0, len(ids))
	for _, id := range ids {
		p := ix.Pages[id]
		hits = append(hits, Hit{ID: p.ID(), Title: p.Title, Score: math.Round(scores[id]*1000) / 1000,
			Snippet: snippet(p.Text, terms, 30)})
	}
	return hits
}

func unique(ts []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, t := range ts {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// snippet is the window of width words holding the most query-term
// occurrences (the first such window), with ellipses where text was cut.
func snippet(text string, terms []string, width int) string {
	words := strings.Fields(text)
	if len(words) == 0 {
		return ""
	}
	want := map[string]bool{}
	for _, t := range terms {
		want[t] = true
	}
	hit := make([]int, len(words))
	for i, w := range words {
		for _, t := range Terms(w) {
			if want[t] {
				hit[i] = 1
				break
			}
		}
	}
	best, bestStart, cur := -1, 0, 0
	for i := range words {
		cur += hit[i]
		if i >= width {
			cur -= hit[i-width]
		}
		if start := max(0, i-width+1); cur > best {
			best, bestStart = cur, start
		}
	}
	end := min(len(words), bestStart+width)
	s := strings.Join(words[bestStart:end], " ")
	if bestStart > 0 {
		s = "…" + s
	}
	if end < len(words) {
		s += "…"
	}
	return s
}

// Open returns a page by id ("doc#page"; "doc" alone is page 1).
func (ix *Index) Open(id string) (Page, error) {
	if !strings.Contains(id, "#") {
		id += "#1"
	}
	i, ok := ix.byID[id]
	if !ok {
		return Page{}, fmt.Errorf("no page %q; use an id from search results", id)
	}
	return ix.Pages[i], nil
}

// Save writes the index as gzipped JSON, atomically: to a temporary file in
// the same directory, synced, then renamed over path.
func (ix *Index) Save(path string) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("search: save index: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	zw := gzip.NewWriter(tmp)
	if err := json.NewEncoder(zw).Encode(ix); err != nil {
		return fmt.Errorf("search: save index: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("search: save index: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("search: save index: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("search: save index: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("search: save index: %w", err)
	}
	return nil
}

// Load reads an index written by Save and checks it.
func Load(path string) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("search: load index: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("search: load index %s: not a gzipped index: %w", path, err)
	}
	var ix Index
	if err := json.NewDecoder(zr).Decode(&ix); err != nil {
		return nil, fmt.Errorf("search: load index %s: %w", path, err)
	}
	if ix.Format != formatName || ix.Version != formatVersion {
		return nil, fmt.Errorf("search: load index %s: format %q version %d, want %q version %d", path, ix.Format,
			ix.Version, formatName, formatVersion)
	}
	if len(ix.Lengths) != len(ix.Pages) {
		return nil, fmt.Errorf("search: load index %s: %d lengths for %d pages", path, len(ix.Lengths), len(ix.Pages))
	}
	for t, ps := range ix.Postings {
		for _, p := range ps {
			if p.Page < 0 || int(p.Page) >= len(ix.Pages) || p.TF <= 0 {
				return nil, fmt.Errorf("search: load index %s: bad posting for %q", path, t)
			}
		}
	}
	ix.prepare()
	return &ix, nil
}

// Truncate cuts s to n runes with an ellipsis.
func Truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

var errEmptyQuery = errors.New("empty query")
