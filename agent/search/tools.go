package search

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dsv32/dsv32/agent"
)

// Tools returns the search and open tools over ix.
func Tools(ix *Index) []agent.Tool {
	searchTool := agent.Func(agent.ToolSpec{Name: "search",
		Description: "Search the local document collection. Returns ranked results with an id, a title and a snippet; " +
			"pass an id to open to read the page.",
		Parameters: json.RawMessage(`{"type":"object","properties":{"query":{"type":"string","minLength":1},` +
			`"k":{"type":"integer","minimum":1,"maximum":20,"description":"results to return (default 5)"}},` +
			`"required":["query"],"additionalProperties":false}`)},
		func(_ context.Context, raw json.RawMessage) (string, error) {
			var a struct {
				Query string
				K     int
			}
			if err := json.Unmarshal(raw, &a); err != nil {
				return "", err
			}
			if len(Terms(a.Query)) == 0 {
				return "", fmt.Errorf("%w: the query has no words", errEmptyQuery)
			}
			if a.K == 0 {
				a.K = 5
			}
			hits := ix.Search(a.Query, a.K)
			if len(hits) == 0 {
				return "no results", nil
			}
			var b strings.Builder
			for i, h := range hits {
				fmt.Fprintf(&b, "%d. [%s] %s (score %.3f)\n   %s\n", i+1, h.ID, h.Title, h.Score, h.Snippet)
			}
			return strings.TrimRight(b.String(), "\n"), nil
		})
	openTool := agent.Func(agent.ToolSpec{Name: "open",
		Description: "Open one page of a document by the id a search result gave (\"doc#page\").",
		Parameters: json.RawMessage(`{"type":"object","properties":{"id":{"type":"string","minLength":1}},` +
			`"required":["id"],"additionalProperties":false}`)},
		func(_ context.Context, raw json.RawMessage) (string, error) {
			var a struct{ ID string }
			if err := json.Unmarshal(raw, &a); err != nil {
				return "", err
			}
			p, err := ix.Open(strings.TrimSpace(a.ID))
			if err != nil {
				return "", err
			}
			next := ""
			if p.Page < p.Pages {
				next = fmt.Sprintf("\n\n[next page: %s#%d]", p.Doc, p.Page+1)
			}
			return fmt.Sprintf("%s — %s (page %d of %d)\n\n%s%s", p.Doc, p.Title, p.Page, p.Pages, p.Text, next), nil
		})
	return []agent.Tool{searchTool, openTool}
}
