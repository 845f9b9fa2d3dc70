package tokenizer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"github.com/dsv32/dsv32/internal/atomicfile"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// BPE is a byte-level BPE tokenizer loaded from a tokenizer.json. It is safe
// for concurrent use.
type BPE struct {
	vocab  map[string]int32 // model vocabulary, byte-level spelling → id
	tokens []string         // id → token (model or added), "" where no token has the id
	bytes  [][]byte         // id → the raw bytes the token stands for

	merges    *mergeTable      // (left, right) → rank and merged id
	mergeList [][2]string      // merges in rank order, for Save
	byteID    [256]int32       // raw byte → id of its one-byte token, -1 if none
	rawVocab  map[string]int32 // raw bytes → id; only with ignoreMerges

	added        []AddedToken // in file order, with the ids tokenizers gives them
	special      map[string]int
	addedID      map[string]int // content → id
	isSpecial    []bool         // id → an added token marked special
	rawTrie      *trie          // added tokens with normalized=false, matched first
	normTrie     *trie          // added tokens with normalized=true
	steps        []splitter
	ignoreMerges bool

	file fileJSON // sections kept verbatim for Save
	pool *sync.Pool
}

// AddedToken is one entry of tokenizer.json's added_tokens.
type AddedToken struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

type fileJSON struct {
	Version       string          `json:"version"`
	Truncation    json.RawMessage `json:"truncation"`
	Padding       json.RawMessage `json:"padding"`
	AddedTokens   []AddedToken    `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         modelJSON       `json:"model"`
}

type modelJSON struct {
	Type                    string            `json:"type"`
	Dropout                 *float64          `json:"dropout"`
	UnkToken                *string           `json:"unk_token"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	FuseUnk                 bool              `json:"fuse_unk"`
	ByteFallback            bool              `json:"byte_fallback"`
	IgnoreMerges            bool              `json:"ignore_merges"`
	Vocab                   map[string]int32  `json:"vocab"`
	Merges                  []json.RawMessage `json:"merges"`
}

// Load reads a tokenizer.json, gzip-compressed or not.
func Load(path string) (*BPE, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	b, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return b, nil
}

// readFile reads a file, un-gzipping it if it is compressed.
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	if len(data) > 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("tokenizer: %s: %w", path, err)
		}
	}
	return data, nil
}

// Parse builds a BPE from the bytes of a tokenizer.json.
func Parse(data []byte) (*BPE, error) { return parse(data, true) }

// parse is Parse; with fast false every Split pattern runs through regexp2,
// which the tests use as the oracle of the hand-written scanners.
func parse(data []byte, fast bool) (*BPE, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: tokenizer.json: %w", err)
	}
	return build(f, fast)
}

func isNull(m json.RawMessage) bool {
	return len(m) == 0 || string(bytes.TrimSpace(m)) == "null"
}

func build(f fileJSON, fast bool) (*BPE, error) {
	m := f.Model
	switch {
	case m.Type != "BPE" && m.Type != "":
		return nil, fmt.Errorf("tokenizer: model.type %q is not supported (only BPE)", m.Type)
	case m.Dropout != nil && *m.Dropout != 0:
		return nil, fmt.Errorf("tokenizer: model.dropout %v is not supported", *m.Dropout)
	case m.ByteFallback:
		return nil, fmt.Errorf("tokenizer: model.byte_fallback is not supported (byte-level BPE needs none)")
	case m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "",
		m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "":
		return nil, fmt.Errorf("tokenizer: model.continuing_subword_prefix and end_of_word_suffix are not supported")
	}
	if m.Vocab == nil {
		m.Vocab = map[string]int32{}
	}
	b := &BPE{
		vocab:        m.Vocab,
		merges:       newMergeTable(len(m.Merges)),
		special:      map[string]int{},
		ignoreMerges: m.IgnoreMerges,
		file:         f,
	}
	maxID := -1
	for tok, id := range m.Vocab {
		if id < 0 || id > maxTokenID {
			return nil, fmt.Errorf("tokenizer: model.vocab[%q] = %d is out of range", tok, id)
		}
		maxID = max(maxID, int(id))
	}
	b.mergeList = make([][2]string, 0, len(m.Merges))
	for i, raw := range m.Merges {
		pair, err := parseMerge(raw)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: model.merges[%d]: %w", i, err)
		}
		l, okL := b.vocab[pair[0]]
		r, okR := b.vocab[pair[1]]
		n, okN := b.vocab[pair[0]+pair[1]]
		if !okL || !okR || !okN {
			return nil, fmt.Errorf("tokenizer: model.merges[%d] %q: a part or the merged token is not in model.vocab", i, pair[0]+" "+pair[1])
		}
		if i >= maxMerges {
			return nil, fmt.Errorf("tokenizer: model.merges has more than %d merges", maxMerges)
		}
		b.merges.add(l, r, n)
		b.mergeList = append(b.mergeList, pair)
	}

	// Added tokens get their ids the way tokenizers' AddedVocabulary assigns
	// them: a content already in the vocabulary keeps that id, any other one
	// takes the next id after the largest so far. The ids in the file are
	// only checked by tokenizers (with a warning), so we do likewise.
	addedIDs := map[string]int{}
	next := len(m.Vocab)
	for _, t := range f.AddedTokens {
		if t.Content == "" {
			return nil, fmt.Errorf("tokenizer: added_tokens: token %d has empty content", t.ID)
		}
		if _, dup := addedIDs[t.Content]; dup {
			continue
		}
		if id, ok := b.vocab[t.Content]; ok {
			t.ID = int(id)
		} else {
			t.ID = next
		}
		if t.ID >= next {
			next = t.ID + 1
		}
		addedIDs[t.Content] = t.ID
		b.added = append(b.added, t)
		maxID = max(maxID, t.ID)
		if t.Special {
			b.special[t.Content] = t.ID
		}
	}
	if maxID > maxTokenID {
		return nil, fmt.Errorf("tokenizer: largest id %d is more than %d", maxID, maxTokenID)
	}
	if n := len(m.Vocab) + len(b.added); maxID >= 2*n+1024 {
		return nil, fmt.Errorf("tokenizer: largest id %d is far beyond the %d tokens (ids too sparse)", maxID, n)
	}
	b.tokens = make([]string, maxID+1)
	b.bytes = make([][]byte, maxID+1)
	for tok, id := range b.vocab {
		b.tokens[id] = tok
		b.bytes[id] = byteLevelBytes(tok)
	}
	b.isSpecial = make([]bool, maxID+1)
	for _, t := range b.added {
		b.tokens[t.ID] = t.Content
		b.bytes[t.ID] = byteLevelBytes(t.Content)
		b.isSpecial[t.ID] = t.Special
	}
	for c := range 256 {
		b.byteID[c] = -1
		if id, ok := b.vocab[string(byteToRune[c])]; ok {
			b.byteID[c] = id
		}
	}
	if b.ignoreMerges {
		b.rawVocab = make(map[string]int32, len(b.vocab))
		for _, id := range b.vocab {
			b.rawVocab[string(b.bytes[id])] = id
		}
	}
	var raw, norm []int
	for i, t := range b.added {
		if t.Normalized {
			norm = append(norm, i)
		} else {
			raw = append(raw, i)
		}
	}
	b.addedID = addedIDs
	b.rawTrie = newTrie(b.added, raw)
	b.normTrie = newTrie(b.added, norm)

	if err := checkNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	steps, byteLevel, err := parsePreTokenizer(f.PreTokenizer, fast)
	if err != nil {
		return nil, err
	}
	if !byteLevel {
		return nil, fmt.Errorf("tokenizer: pre_tokenizer has no ByteLevel step; only byte-level BPE is supported")
	}
	b.steps = steps
	if err := checkDecoder(f.Decoder); err != nil {
		return nil, err
	}
	b.pool = &sync.Pool{New: func() any { return newEncoder(b) }}
	return b, nil
}

func parseMerge(raw json.RawMessage) ([2]string, error) {
	var s string
	var err error
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		s = string(raw[1 : len(raw)-1]) // the common case: nothing escaped
	} else {
		err = json.Unmarshal(raw, &s)
	}
	if err == nil {
		l, r, ok := strings.Cut(s, " ")
		if !ok || strings.Contains(r, " ") {
			return [2]string{}, fmt.Errorf("merge %q is not two tokens separated by one space", s)
		}
		return [2]string{l, r}, nil
	}
	var a []string
	if err := json.Unmarshal(raw, &a); err != nil || len(a) != 2 {
		return [2]string{}, fmt.Errorf("merge %s is neither \"a b\" nor [\"a\", \"b\"]", raw)
	}
	return [2]string{a[0], a[1]}, nil
}

// checkNormalizer accepts the normalizers that change nothing: null and
// (nested) empty Sequences, which is what DeepSeek's files use.
func checkNormalizer(raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	var n struct {
		Type        string            `json:"type"`
		Normalizers []json.RawMessage `json:"normalizers"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return fmt.Errorf("tokenizer: normalizer: %w", err)
	}
	if n.Type != "Sequence" {
		return fmt.Errorf("tokenizer: normalizer type %q is not supported (only null or an empty Sequence)", n.Type)
	}
	for _, sub := range n.Normalizers {
		if err := checkNormalizer(sub); err != nil {
			return err
		}
	}
	return nil
}

func checkDecoder(raw json.RawMessage) error {
	var d struct {
		Type string `json:"type"`
	}
	if isNull(raw) {
		return fmt.Errorf("tokenizer: decoder is null; only the ByteLevel decoder is supported")
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fmt.Errorf("tokenizer: decoder: %w", err)
	}
	if d.Type != "ByteLevel" {
		return fmt.Errorf("tokenizer: decoder type %q is not supported (only ByteLevel)", d.Type)
	}
	return nil
}

// Save writes the tokenizer as a tokenizer.json that Hugging Face tokenizers
// loads. The file is written to a temporary name in the same folder and
// renamed, so a reader never sees half a file.
func (b *BPE) Save(path string) error {
	data, err := b.MarshalJSON()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("tokenizer: save: %w", err)
	}
	return nil
}

// MarshalJSON spells the tokenizer as a tokenizer.json: the vocabulary in id
// order, merges as "a b" strings (as arrays if a token holds a space).
func (b *BPE) MarshalJSON() ([]byte, error) {
	var w bytes.Buffer
	str := func(s string) {
		e := json.NewEncoder(&w)
		e.SetEscapeHTML(false)
		e.Encode(s)
		w.Truncate(w.Len() - 1) // Encode's newline
	}
	rawOrNull := func(m json.RawMessage) []byte {
		if len(m) == 0 {
			return []byte("null")
		}
		return m
	}
	f := b.file
	w.WriteString("{\n  \"version\": ")
	str(orDefault(f.Version, "1.0"))
	fmt.Fprintf(&w, ",\n  \"truncation\": %s,\n  \"padding\": %s,\n  \"added_tokens\": [", rawOrNull(f.Truncation), rawOrNull(f.Padding))
	for i, t := range b.added {
		if i > 0 {
			w.WriteByte(',')
		}
		fmt.Fprintf(&w, "\n    {\"id\": %d, \"content\": ", t.ID)
		str(t.Content)
		fmt.Fprintf(&w, ", \"single_word\": %t, \"lstrip\": %t, \"rstrip\": %t, \"normalized\": %t, \"special\": %t}",
			t.SingleWord, t.LStrip, t.RStrip, t.Normalized, t.Special)
	}
	fmt.Fprintf(&w, "\n  ],\n  \"normalizer\": %s,\n  \"pre_tokenizer\": %s,\n  \"post_processor\": %s,\n  \"decoder\": %s,\n",
		rawOrNull(f.Normalizer), rawOrNull(f.PreTokenizer), rawOrNull(f.PostProcessor), rawOrNull(f.Decoder))
	m := f.Model
	w.WriteString("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": ")
	if m.UnkToken != nil {
		str(*m.UnkToken)
	} else {
		w.WriteString("null")
	}
	fmt.Fprintf(&w, ",\n    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": %t,\n    \"byte_fallback\": false,\n    \"ignore_merges\": %t,\n    \"vocab\": {", m.FuseUnk, b.ignoreMerges)
	ids := make([]int32, 0, len(b.vocab))
	for _, id := range b.vocab {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n      ")
		str(b.tokens[id])
		fmt.Fprintf(&w, ": %d", id)
	}
	w.WriteString("\n    },\n    \"merges\": [")
	arrays := false
	for _, p := range b.mergeList {
		arrays = arrays || strings.Contains(p[0], " ") || strings.Contains(p[1], " ")
	}
	for i, p := range b.mergeList {
		if i > 0 {
			w.WriteByte(',')
		}
		w.WriteString("\n      ")
		if arrays {
			w.WriteByte('[')
			str(p[0])
			w.WriteString(", ")
			str(p[1])
			w.WriteByte(']')
		} else {
			str(p[0] + " " + p[1])
		}
	}
	w.WriteString("\n    ]\n  }\n}\n")
	return w.Bytes(), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// VocabSize is one more than the largest id, the rows an embedding needs.
func (b *BPE) VocabSize() int { return len(b.tokens) }

// TokenToID returns the id of a token in its tokenizer.json spelling: the
// byte-level spelling for model tokens ("Ġthe"), the content for added ones.
func (b *BPE) TokenToID(tok string) (int, bool) {
	if id, ok := b.addedID[tok]; ok {
		return id, true
	}
	id, ok := b.vocab[tok]
	return int(id), ok
}

// IDToToken returns the tokenizer.json spelling of an id, "" if it has none.
func (b *BPE) IDToToken(id int) string {
	if id < 0 || id >= len(b.tokens) {
		return ""
	}
	return b.tokens[id]
}

// Special returns the added tokens marked special, content → id.
func (b *BPE) Special() map[string]int {
	out := make(map[string]int, len(b.special))
	for k, v := range b.special {
		out[k] = v
	}
	return out
}

// AddedTokens returns the added tokens in file order, with their ids.
func (b *BPE) AddedTokens() []AddedToken { return slices.Clone(b.added) }
