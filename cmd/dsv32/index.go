package main

import (
	"fmt"

	"github.com/dsv32/dsv32/agent/search"
)

// indexCmd builds the offline search index the agent's search tool reads.
type indexCmd struct {
	Out  string `required:"" type:"path" help:"Index file to write (replaced atomically)."`
	Docs string `arg:"" type:"existingdir" help:"Directory of documents (.txt, .md, .rst, .html)."`
}

func (c *indexCmd) Run() error {
	ix, err := search.Build(c.Docs)
	if err != nil {
		return err
	}
	if err := ix.Save(c.Out); err != nil {
		return err
	}
	docs := map[string]bool{}
	for _, p := range ix.Pages {
		docs[p.Doc] = true
	}
	fmt.Printf("indexed %d documents, %d pages, %d terms -> %s\n", len(docs), len(ix.Pages), len(ix.Postings), c.Out)
	return nil
}
