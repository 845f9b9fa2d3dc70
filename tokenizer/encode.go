package tokenizer

import (
	"math"
	"slices"
)

// Encode returns the ids of text. Added tokens (special or not) are split
// out first wherever they occur, then the rest is pre-tokenized and merged;
// no BOS or EOS is added. Text that is not valid UTF-8 is encoded byte for
// byte (each invalid byte pre-tokenizes as U+FFFD would), so that
// DecodeBytes gives it back.
func (b *BPE) Encode(text string) []int {
	return b.AppendEncode(nil, text, true)
}

// EncodeOrdinary is Encode without added-token recognition: "<think>" in the
// text is spelt with ordinary tokens.
func (b *BPE) EncodeOrdinary(text string) []int {
	return b.AppendEncode(nil, text, false)
}

// EncodeBytes encodes raw bytes, valid UTF-8 or not, like Encode.
func (b *BPE) EncodeBytes(data []byte) []int {
	return b.AppendEncode(nil, string(data), true)
}

// AppendEncode appends the ids of text to dst; with added false it is
// EncodeOrdinary.
func (b *BPE) AppendEncode(dst []int, text string, added bool) []int {
	e := b.pool.Get().(*encoder)
	e.out = e.out[:0]
	if added {
		b.rawTrie.split(b, text, e.rawPieceFn, e.tokenFn)
	} else {
		e.next(text, 0)
	}
	if dst == nil {
		dst = make([]int, 0, len(e.out))
	}
	for _, id := range e.out {
		dst = append(dst, int(id))
	}
	e.trim()
	b.pool.Put(e)
	return dst
}

// trim lets go of scratch space that one huge input grew, before the
// encoder goes back to the pool.
func (e *encoder) trim() {
	const keep = 1 << 16
	if cap(e.out) > 1<<21 { // 8 MiB of ids
		e.out = nil
	}
	if cap(e.syms) > keep || cap(e.heap) > keep || cap(e.links) > keep {
		e.syms, e.ranks, e.merged, e.links, e.heap = nil, nil, nil, nil, nil
	}
}

// encoder is the scratch state of one Encode call; BPE keeps a pool of them,
// each with its own cache of pre-token results, so encoding takes no locks.
type encoder struct {
	b   *BPE
	out []int32

	// The cache of pre-token results has two generations: when the current
	// one is full it becomes the old one, and a hit in the old one moves
	// back to the current one, so often-seen pre-tokens stay.
	cache, oldCache pretokenCache

	syms   []int32
	ranks  []uint32
	merged []int32
	heap   mergeHeap
	links  []link

	rawPieceFn func(string)
	tokenFn    func(int32)
	collect    func(string) // if set, pre-tokens go here instead of to BPE (trainer, tests)
}

const (
	cacheEntries = 1 << 16 // entries of one cache generation
	cacheMaxLen  = 128     // longer pre-tokens are not cached
	linearMax    = 48      // longer pre-tokens merge with a heap
)

func newEncoder(b *BPE) *encoder {
	e := &encoder{b: b, cache: pretokenCache{ids: make(map[string]uint64, 1024)}}
	e.rawPieceFn = func(s string) { b.normTrie.split(b, s, e.normPiece, e.token) }
	e.tokenFn = e.token
	return e
}

func (e *encoder) token(id int32) { e.out = append(e.out, id) }

// normPiece takes a part of the text between added tokens; DeepSeek's
// normalizer changes nothing, so it goes straight to the pre-tokenizer.
func (e *encoder) normPiece(s string) { e.next(s, 0) }

// next runs pre-tokenizer step on s, or BPE once the steps are done.
func (e *encoder) next(s string, step int) {
	if step < len(e.b.steps) {
		e.b.steps[step].split(s, e, step)
		return
	}
	if e.collect != nil {
		e.collect(s)
		return
	}
	e.word(s)
}

// word appends the ids of one pre-token.
func (e *encoder) word(s string) {
	b := e.b
	if len(s) == 1 {
		if id := b.byteID[s[0]]; id >= 0 {
			e.out = append(e.out, id)
		}
		return
	}
	if len(s) == 2 && !b.ignoreMerges { // one lookup, cheaper than the cache's
		l, r := b.byteID[s[0]], b.byteID[s[1]]
		if _, id := b.rank(l, r); id >= 0 && l >= 0 && r >= 0 {
			e.out = append(e.out, id)
			return
		}
		for _, id := range [2]int32{l, r} {
			if id >= 0 {
				e.out = append(e.out, id)
			}
		}
		return
	}
	if ids, ok := e.cache.get(s); ok {
		e.out = append(e.out, ids...)
		return
	}
	if ids, ok := e.oldCache.get(s); ok {
		e.out = append(e.out, ids...)
		e.remember(s, ids)
		return
	}
	start := len(e.out)
	if id, ok := b.rawVocab[s]; b.ignoreMerges && ok {
		e.out = append(e.out, id)
	} else {
		syms := e.syms[:0]
		for i := 0; i < len(s); i++ {
			// A byte without a token is dropped, as tokenizers does when
			// there is no unk_token.
			if id := b.byteID[s[i]]; id >= 0 {
				syms = append(syms, id)
			}
		}
		if len(syms) <= linearMax {
			syms = e.mergeLinear(syms)
		} else {
			syms = e.mergeHeap(syms)
		}
		e.syms = syms
		e.out = append(e.out, syms...)
	}
	if len(s) <= cacheMaxLen {
		e.remember(s, e.out[start:])
	}
}

// remember caches the ids of pre-token s.
func (e *encoder) remember(s string, ids []int32) {
	if len(e.cache.ids) >= cacheEntries {
		e.cache, e.oldCache = e.oldCache, e.cache
		if e.cache.ids == nil {
			e.cache.ids = make(map[string]uint64, cacheEntries)
		}
		clear(e.cache.ids)
		e.cache.arena = e.cache.arena[:0]
	}
	e.cache.ids[s] = uint64(len(e.cache.arena))<<32 | uint64(len(ids))
	e.cache.arena = append(e.cache.arena, ids...)
}

// pretokenCache maps pre-tokens to their ids, kept in one arena.
type pretokenCache struct {
	ids   map[string]uint64 // pre-token → offset<<32 | length in arena
	arena []int32
}

func (c *pretokenCache) get(s string) ([]int32, bool) {
	v, ok := c.ids[s]
	if !ok {
		return nil, false
	}
	return c.arena[v>>32 : v>>32+v&0xffffffff], true
}

func pairKey(l, r int32) uint64 { return uint64(uint32(l))<<32 | uint64(uint32(r)) }

// rank returns the merge rank and merged id of a pair, rank MaxUint32 if the
// pair does not merge.
func (b *BPE) rank(l, r int32) (uint32, int32) {
	if l < 0 || r < 0 {
		return math.MaxUint32, -1
	}
	if rank, id, ok := b.merges.get(l, r); ok {
		return rank, id
	}
	return math.MaxUint32, -1
}

// mergeLinear merges short words: keep each adjacent pair's rank, merge the
// lowest (the leftmost of equals) and update its two neighbours. This is the
// order tokenizers' heap gives.
func (e *encoder) mergeLinear(syms []int32) []int32 {
	n := len(syms)
	if n < 2 {
		return syms
	}
	ranks := slices.Grow(e.ranks[:0], n)[:n-1]
	merged := slices.Grow(e.merged[:0], n)[:n-1]
	for i := range ranks {
		ranks[i], merged[i] = e.b.rank(syms[i], syms[i+1])
	}
	for {
		best, bi := uint32(math.MaxUint32), -1
		for i, r := range ranks {
			if r < best {
				best, bi = r, i
			}
		}
		if bi < 0 {
			break
		}
		syms[bi] = merged[bi]
		syms = slices.Delete(syms, bi+1, bi+2)
		ranks = slices.Delete(ranks, bi, bi+1)
		merged = slices.Delete(merged, bi, bi+1)
		if bi < len(ranks) {
			ranks[bi], merged[bi] = e.b.rank(syms[bi], syms[bi+1])
		}
		if bi > 0 {
			ranks[bi-1], merged[bi-1] = e.b.rank(syms[bi-1], syms[bi])
		}
	}
	e.ranks, e.merged = ranks, merged
	return syms
}

// link is a symbol of a long word being merged: a doubly linked list over
// the original positions.
type link struct {
	id         int32
	prev, next int32 // -1 at the ends
	gone       bool
}

type mergeItem struct {
	rank        uint32
	pos         int32
	left, right int32 // the pair, to tell whether it is still there
	id          int32
}

// mergeHeap is a min-heap on (rank, pos).
type mergeHeap []mergeItem

func (h mergeHeap) less(i, j int) bool {
	return h[i].rank < h[j].rank || (h[i].rank == h[j].rank && h[i].pos < h[j].pos)
}

func (h *mergeHeap) push(it mergeItem) {
	*h = append(*h, it)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *mergeHeap) pop() mergeItem {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < n && s.less(l, m) {
			m = l
		}
		if l+1 < n && s.less(l+1, m) {
			m = l + 1
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// mergeHeap merges long words in O(n log n), as tokenizers' Word::merge_all:
// pop the lowest (rank, position), skip it if that pair has changed since.
func (e *encoder) mergeHeap(syms []int32) []int32 {
	b := e.b
	n := len(syms)
	links := slices.Grow(e.links[:0], n)[:n]
	h := e.heap[:0]
	for i, id := range syms {
		links[i] = link{id: id, prev: int32(i - 1), next: int32(i + 1)}
	}
	links[n-1].next = -1
	for i := 0; i < n-1; i++ {
		if r, id := b.rank(syms[i], syms[i+1]); id >= 0 {
			h.push(mergeItem{r, int32(i), syms[i], syms[i+1], id})
		}
	}
	for len(h) > 0 {
		top := h.pop()
		l := &links[top.pos]
		if l.gone || l.next < 0 {
			continue
		}
		r := &links[l.next]
		if l.id != top.left || r.id != top.right {
			continue // the pair changed since: a later item has the new one
		}
		l.id = top.id
		r.gone = true
		l.next = r.next
		if r.next >= 0 {
			links[r.next].prev = top.pos
		}
		if l.prev >= 0 {
			p := links[l.prev]
			if rk, id := b.rank(p.id, l.id); id >= 0 {
				h.push(mergeItem{rk, l.prev, p.id, l.id, id})
			}
		}
		if l.next >= 0 {
			if rk, id := b.rank(l.id, links[l.next].id); id >= 0 {
				h.push(mergeItem{rk, top.pos, l.id, links[l.next].id, id})
			}
		}
	}
	syms = syms[:0]
	for i := int32(0); i >= 0; i = links[i].next {
		syms = append(syms, links[i].id)
	}
	e.heap, e.links = h, links
	return syms
}
