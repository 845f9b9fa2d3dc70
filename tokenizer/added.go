package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// trie finds added tokens in text with leftmost-longest matching, as the
// Aho-Corasick automaton of tokenizers' AddedVocabulary does (MatchKind::
// LeftmostLongest): the match that starts first wins, and of those the longest.
type trie struct {
	first [256]bool // bytes some token starts with
	nodes []trieNode
}

type trieNode struct {
	next  map[byte]int32
	token int32 // index into BPE.added, -1 if no token ends here
}

func newTrie(added []AddedToken, which []int) *trie {
	t := &trie{nodes: []trieNode{{token: -1}}}
	for _, i := range which {
		s := added[i].Content
		t.first[s[0]] = true
		n := int32(0)
		for j := 0; j < len(s); j++ {
			c, ok := t.nodes[n].next[s[j]]
			if !ok {
				if t.nodes[n].next == nil {
					t.nodes[n].next = map[byte]int32{}
				}
				c = int32(len(t.nodes))
				t.nodes = append(t.nodes, trieNode{token: -1})
				t.nodes[n].next[s[j]] = c
			}
			n = c
		}
		if t.nodes[n].token < 0 {
			t.nodes[n].token = int32(i)
		}
	}
	return t
}

// longestAt returns the longest token starting at s[i:], and its end.
func (t *trie) longestAt(s string, i int) (tok int32, end int) {
	tok, n := -1, int32(0)
	for j := i; j < len(s); j++ {
		c, ok := t.nodes[n].next[s[j]]
		if !ok {
			break
		}
		n = c
		if t.nodes[n].token >= 0 {
			tok, end = t.nodes[n].token, j+1
		}
	}
	return tok, end
}

// split calls piece for each part of s that is not an added token, and token
// for each added token found, in order; this is AddedVocabulary::find_matches
// with its single_word, lstrip and rstrip rules.
func (t *trie) split(b *BPE, s string, piece func(string), token func(int32)) {
	if len(t.nodes) == 1 {
		piece(s)
		return
	}
	done := 0 // s[:done] has been handed on
	for i := 0; i < len(s); i++ {
		if !t.first[s[i]] {
			continue
		}
		k, stop := t.longestAt(s, i)
		if k < 0 {
			continue
		}
		a := &b.added[k]
		start := i
		if a.SingleWord {
			r, _ := utf8.DecodeLastRuneInString(s[:start])
			startOK := start == 0 || !isAlnum(r)
			r, _ = utf8.DecodeRuneInString(s[stop:])
			stopOK := stop == len(s) || !isAlnum(r)
			if !startOK || !stopOK {
				i = stop - 1 // the automaton has consumed the match all the same
				continue
			}
		}
		if a.LStrip {
			for start > done {
				r, w := utf8.DecodeLastRuneInString(s[:start])
				if !unicode.IsSpace(r) {
					break
				}
				start -= w
			}
		}
		if a.RStrip {
			for stop < len(s) {
				r, w := utf8.DecodeRuneInString(s[stop:])
				if !unicode.IsSpace(r) {
					break
				}
				stop += w
			}
		}
		if start > done {
			piece(s[done:start])
		}
		token(int32(a.ID))
		done = stop
		i = stop - 1
	}
	if done < len(s) {
		piece(s[done:])
	}
}

func isAlnum(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }
