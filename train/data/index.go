package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
)

// Format names the on-disk layout; Version is the layout's version. A reader
// refuses an index with another format name or a version it does not know.
const (
	Format  = "dsv32-tokens"
	Version = 1
	DType   = "uint32le" // every token is 4 bytes, little-endian
)

// IndexName is the index file inside a dataset directory.
const IndexName = "index.json"

// Index is index.json: what the shards hold and where each document is.
// Documents never span shards; each one ends with the EOS id.
type Index struct {
	Format    string        `json:"format"`    // "dsv32-tokens"
	Version   int           `json:"version"`   // 1
	DType     string        `json:"dtype"`     // "uint32le"
	Tokenizer TokenizerInfo `json:"tokenizer"` // the tokenizer that made the ids
	EOS       int           `json:"eos"`       // the id appended after each document
	// ShardTokens is the writer's shard size; a shard holds at most this
	// many tokens unless one document alone is longer.
	ShardTokens int         `json:"shard_tokens"`
	Documents   int         `json:"documents"` // over all shards
	Tokens      int64       `json:"tokens"`    // over all shards, EOS included
	Shards      []ShardInfo `json:"shards"`
}

// TokenizerInfo identifies a tokenizer: the SHA-256 of its tokenizer.json
// bytes (hex) and its vocabulary size (0 when unknown).
type TokenizerInfo struct {
	SHA256    string `json:"sha256"`
	VocabSize int    `json:"vocab_size"`
}

// ShardInfo describes one shard file.
type ShardInfo struct {
	Name   string `json:"name"`   // file name inside the directory, "shard-00000.bin"
	Tokens int64  `json:"tokens"` // file size / 4
	CRC32C uint32 `json:"crc32c"` // Castagnoli CRC of the file bytes
	// DocEnds[i] is the exclusive end, in tokens, of the shard's i-th
	// document (its start is DocEnds[i-1], or 0); the last equals Tokens.
	DocEnds []int64 `json:"doc_ends"`
}

// ShardName is the file name of shard i.
func ShardName(i int) string { return fmt.Sprintf("shard-%05d.bin", i) }

// ParseIndex decodes and validates index.json bytes.
func ParseIndex(data []byte) (*Index, error) {
	var idx Index
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&idx); err != nil {
		return nil, fmt.Errorf("data: %s: %w", IndexName, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("data: %s: trailing data after the JSON object", IndexName)
	}
	if err := idx.Validate(); err != nil {
		return nil, err
	}
	return &idx, nil
}

// Validate checks the index on its own (not against the shard files) and
// names the first field that is wrong.
func (x *Index) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("data: %s: "+format, append([]any{IndexName}, args...)...)
	}
	switch {
	case x.Format != Format:
		return bad("format %q, want %q", x.Format, Format)
	case x.Version != Version:
		return bad("version %d is not supported (this reader knows version %d)", x.Version, Version)
	case x.DType != DType:
		return bad("dtype %q, want %q", x.DType, DType)
	case x.EOS < 0 || int64(x.EOS) > 0xffffffff:
		return bad("eos %d is not a token id", x.EOS)
	case x.Tokenizer.VocabSize < 0:
		return bad("tokenizer.vocab_size %d is negative", x.Tokenizer.VocabSize)
	case x.Tokenizer.VocabSize > 0 && x.EOS >= x.Tokenizer.VocabSize:
		return bad("eos %d is outside the vocabulary (%d ids)", x.EOS, x.Tokenizer.VocabSize)
	case x.ShardTokens < 0:
		return bad("shard_tokens %d is negative", x.ShardTokens)
	case x.Documents < 0 || x.Tokens < 0:
		return bad("negative documents (%d) or tokens (%d)", x.Documents, x.Tokens)
	}
	docs, toks := 0, int64(0)
	names := make(map[string]bool, len(x.Shards))
	for i, s := range x.Shards {
		switch {
		case s.Name == "" || s.Name != filepath.Base(s.Name) || s.Name == "." || s.Name == ".." ||
			strings.ContainsAny(s.Name, `/\`) || !strings.HasSuffix(s.Name, ".bin"):
			return bad("shards[%d].name %q is not a .bin file name in the directory", i, s.Name)
		case names[s.Name]:
			return bad("shards[%d].name %q appears twice", i, s.Name)
		case s.Tokens < 0 || s.Tokens > 1<<40:
			return bad("shards[%d] (%s): tokens %d out of range", i, s.Name, s.Tokens)
		case len(s.DocEnds) == 0:
			return bad("shards[%d] (%s): no documents", i, s.Name)
		}
		names[s.Name] = true
		prev := int64(0)
		for j, e := range s.DocEnds {
			if e <= prev {
				return bad("shards[%d] (%s): doc_ends[%d] = %d does not follow %d (documents are never empty)", i, s.Name, j, e, prev)
			}
			prev = e
		}
		if prev != s.Tokens {
			return bad("shards[%d] (%s): last doc_end %d != tokens %d", i, s.Name, prev, s.Tokens)
		}
		docs += len(s.DocEnds)
		toks += s.Tokens
	}
	if docs != x.Documents {
		return bad("documents %d, but the shards list %d", x.Documents, docs)
	}
	if toks != x.Tokens {
		return bad("tokens %d, but the shards hold %d", x.Tokens, toks)
	}
	return nil
}
