package tokenizer

import (
	"encoding/json"
	"fmt"
	"iter"
	"os"
	"slices"
)

// TrainOptions tunes Train. The zero value is DeepSeek's setup.
type TrainOptions struct {
	// MinFrequency stops training when the most frequent pair is seen fewer
	// times; 0 means 2.
	MinFrequency int
	// SpecialTokens take ids 0, 1, … in this order and are added tokens of
	// the result; nil means DeepSeekSpecialTokens().
	SpecialTokens []AddedToken
	// Progress, if set, is called now and then with the merges done so far
	// and the merges wanted.
	Progress func(done, total int)
}

// DeepSeekSpecialTokens are the added tokens of DeepSeek-V3.2 that the chat
// format uses (agent.md §1.1), with DeepSeek's flags: BOS, EOS and the pad
// token first (ids 0, 1, 2 as in DeepSeek), then the turn and reasoning
// markers. The DSML tags are ordinary text.
func DeepSeekSpecialTokens() []AddedToken {
	sp := func(s string) AddedToken { return AddedToken{Content: s, Special: true} }
	norm := func(s string) AddedToken { return AddedToken{Content: s, Normalized: true} }
	return []AddedToken{
		sp("<｜begin▁of▁sentence｜>"), sp("<｜end▁of▁sentence｜>"), sp("<｜▁pad▁｜>"),
		norm("<｜User｜>"), norm("<｜Assistant｜>"),
		sp("<think>"), sp("</think>"),
	}
}

// deepseekPreTokenizer is the pre_tokenizer section of DeepSeek-V3's
// tokenizer.json, which trained tokenizers share.
func deepseekPreTokenizer() json.RawMessage {
	split := func(p string) map[string]any {
		return map[string]any{"type": "Split", "pattern": map[string]string{"Regex": p}, "behavior": "Isolated", "invert": false}
	}
	data, _ := json.Marshal(map[string]any{
		"type": "Sequence",
		"pretokenizers": []any{
			split(deepseekDigits), split(deepseekCJK), split(deepseekMain),
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		},
	})
	return data
}

// TrainFiles trains on the contents of files, each read whole.
func TrainFiles(paths []string, vocabSize int, opts TrainOptions) (*BPE, error) {
	var err error
	texts := func(yield func(string) bool) {
		for _, p := range paths {
			data, e := os.ReadFile(p)
			if e != nil {
				err = fmt.Errorf("tokenizer: train: %w", e)
				return
			}
			if !yield(string(data)) {
				return
			}
		}
	}
	b, terr := Train(texts, vocabSize, opts)
	if err != nil {
		return nil, err
	}
	return b, terr
}

// Train learns a byte-level BPE of vocabSize ids (special tokens, the 256
// bytes, then one token per merge) from texts, pre-tokenized with
// DeepSeek's pre-tokenizer after the special tokens are split out. At each
// step it merges the most frequent adjacent pair, the smallest pair of ids
// on ties, as Hugging Face's BpeTrainer orders them, so the result depends
// on nothing but the texts and the options.
func Train(texts iter.Seq[string], vocabSize int, opts TrainOptions) (*BPE, error) {
	specials := opts.SpecialTokens
	if specials == nil {
		specials = DeepSeekSpecialTokens()
	}
	minFreq := int64(opts.MinFrequency)
	if minFreq <= 0 {
		minFreq = 2
	}
	if vocabSize < len(specials)+256 {
		return nil, fmt.Errorf("tokenizer: train: vocab size %d is less than the %d special tokens plus 256 bytes", vocabSize, len(specials))
	}

	// The vocabulary starts as the special tokens and the byte alphabet in
	// rune order (GPT-2's order, as tokenizers sorts it).
	f := fileJSON{
		Version:       "1.0",
		Normalizer:    json.RawMessage(`{"type":"Sequence","normalizers":[]}`),
		PreTokenizer:  deepseekPreTokenizer(),
		PostProcessor: json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":false,"use_regex":true}`),
		Decoder:       json.RawMessage(`{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}`),
		Model:         modelJSON{Type: "BPE", Vocab: map[string]int32{}},
	}
	var tokens []string
	seen := map[string]bool{}
	for i, t := range specials {
		if t.Content == "" || seen[t.Content] {
			return nil, fmt.Errorf("tokenizer: train: special token %d %q is empty or repeated", i, t.Content)
		}
		seen[t.Content] = true
		t.ID = i
		f.AddedTokens = append(f.AddedTokens, t)
		tokens = append(tokens, t.Content)
	}
	alphabet := make([]rune, 256)
	copy(alphabet, byteToRune[:])
	slices.Sort(alphabet)
	var byteID [256]int32
	for _, r := range alphabet {
		byteID[runeToByte[r]] = int32(len(tokens))
		tokens = append(tokens, string(r))
	}

	// Count the pre-tokens of all texts with the special tokens split out.
	base, err := build(f, true)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: train: %w", err)
	}
	counts := map[string]int64{}
	e := newEncoder(base)
	e.collect = func(s string) { counts[s]++ }
	for text := range texts {
		base.rawTrie.split(base, text, e.rawPieceFn, func(int32) {})
	}

	type word struct {
		syms  []int32
		count int64
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	words := make([]word, len(keys))
	pairs := map[uint64]int64{}
	where := map[uint64][]int32{} // pair → words that held it (maybe no longer)
	for wi, k := range keys {
		w := word{syms: make([]int32, len(k)), count: counts[k]}
		for i := 0; i < len(k); i++ {
			w.syms[i] = byteID[k[i]]
		}
		for i := 0; i+1 < len(w.syms); i++ {
			p := pairKey(w.syms[i], w.syms[i+1])
			if pairs[p] == 0 {
				where[p] = append(where[p], int32(wi))
			} else if l := where[p]; l[len(l)-1] != int32(wi) {
				where[p] = append(where[p], int32(wi))
			}
			pairs[p] += w.count
		}
		words[wi] = w
	}
	h := &countHeap{}
	for p, c := range pairs {
		h.push(pairCount{c, p})
	}

	index := map[string]int32{}
	for i, t := range tokens {
		index[t] = int32(i)
	}
	var merges [][2]string
	want := vocabSize - len(tokens)
	for len(tokens) < vocabSize && len(h.items) > 0 {
		top := h.pop()
		if cur := pairs[top.pair]; cur != top.count {
			if cur > 0 {
				h.push(pairCount{cur, top.pair})
			}
			continue
		}
		if top.count < minFreq {
			break
		}
		l, r := int32(top.pair>>32), int32(uint32(top.pair))
		merged := tokens[l] + tokens[r]
		m, ok := index[merged]
		if !ok {
			m = int32(len(tokens))
			tokens = append(tokens, merged)
			index[merged] = m
		}
		merges = append(merges, [2]string{tokens[l], tokens[r]})
		if opts.Progress != nil && len(merges)%256 == 0 {
			opts.Progress(len(merges), want)
		}

		changed := map[uint64]bool{}
		for _, wi := range where[top.pair] {
			w := &words[wi]
			if !slices.ContainsFunc(pairsOf(w.syms), func(p uint64) bool { return p == top.pair }) {
				continue
			}
			for _, p := range pairsOf(w.syms) {
				pairs[p] -= w.count
				changed[p] = true
			}
			out := w.syms[:0]
			for i := 0; i < len(w.syms); i++ {
				if i+1 < len(w.syms) && w.syms[i] == l && w.syms[i+1] == r {
					out = append(out, m)
					i++
				} else {
					out = append(out, w.syms[i])
				}
			}
			w.syms = out
			for i, p := range pairsOf(w.syms) {
				if w.syms[i] == m || w.syms[i+1] == m {
					if l := where[p]; len(l) == 0 || l[len(l)-1] != wi {
						where[p] = append(where[p], wi)
					}
				}
				pairs[p] += w.count
				changed[p] = true
			}
		}
		delete(pairs, top.pair)
		delete(where, top.pair)
		ps := make([]uint64, 0, len(changed))
		for p := range changed {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		for _, p := range ps {
			if c := pairs[p]; c > 0 {
				h.push(pairCount{c, p})
			} else {
				delete(pairs, p)
			}
		}
	}
	if opts.Progress != nil {
		opts.Progress(len(merges), want)
	}

	for i, t := range tokens {
		f.Model.Vocab[t] = int32(i)
	}
	for _, mg := range merges {
		raw, _ := json.Marshal(mg[0] + " " + mg[1])
		f.Model.Merges = append(f.Model.Merges, raw)
	}
	b, err := build(f, true)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: train: %w", err)
	}
	return b, nil
}

func pairsOf(syms []int32) []uint64 {
	out := make([]uint64, 0, len(syms))
	for i := 0; i+1 < len(syms); i++ {
		out = append(out, pairKey(syms[i], syms[i+1]))
	}
	return out
}

type pairCount struct {
	count int64
	pair  uint64
}

// countHeap is a max-heap on count, then the smaller pair.
type countHeap struct{ items []pairCount }

func (h *countHeap) less(i, j int) bool {
	a, b := h.items[i], h.items[j]
	return a.count > b.count || (a.count == b.count && a.pair < b.pair)
}

func (h *countHeap) push(x pairCount) {
	h.items = append(h.items, x)
	for i := len(h.items) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.items[i], h.items[p] = h.items[p], h.items[i]
		i = p
	}
}

func (h *countHeap) pop() pairCount {
	top := h.items[0]
	n := len(h.items) - 1
	h.items[0] = h.items[n]
	h.items = h.items[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && h.less(l, m) {
			m = l
		}
		if l+1 < n && h.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			break
		}
		h.items[i], h.items[m] = h.items[m], h.items[i]
		i = m
	}
	return top
}
