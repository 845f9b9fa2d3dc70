package tokenizer

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// DeepSeek-V3's pre-tokenizer is a Sequence of three Isolated Splits. These
// are the patterns as they stand in its tokenizer.json; each has a
// hand-written scanner below that gives the same pieces as the regex (the
// tests check that against regexp2, and the whole tokenizer against
// tokenizers' ids), several times faster.
const (
	deepseekDigits = `\p{N}{1,3}`
	deepseekCJK    = `[一-龥぀-ゟ゠-ヿ]+`
	deepseekMain   = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
)

func deepseekSplitter(pattern string) splitter {
	switch pattern {
	case deepseekDigits:
		return digitSplit{}
	case deepseekCJK:
		return cjkSplit{}
	case deepseekMain:
		return mainSplit{}
	}
	return nil
}

// Rune classes, as the regexes name them.
const (
	clsN       = 1 << iota // \p{N}
	clsL                   // \p{L}
	clsM                   // \p{M}
	clsP                   // \p{P}
	clsS                   // \p{S}
	clsSpace               // \s
	clsCJK                 // [一-龥぀-ゟ゠-ヿ]
	clsPunct               // [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]
	clsAlpha               // [A-Za-z]
	clsNewline             // [\r\n]
)

func classify(r rune) uint16 {
	var c uint16
	if unicode.IsNumber(r) {
		c |= clsN
	}
	if unicode.IsLetter(r) {
		c |= clsL
	}
	if unicode.IsMark(r) {
		c |= clsM
	}
	if unicode.IsPunct(r) {
		c |= clsP
	}
	if unicode.IsSymbol(r) {
		c |= clsS
	}
	if unicode.IsSpace(r) {
		c |= clsSpace
	}
	if c&(clsN|clsL|clsM|clsP|clsS) == 0 && r >= 0x80 {
		c |= newerClass(r)
	}
	if (r >= 0x4E00 && r <= 0x9FA5) || (r >= 0x3040 && r <= 0x30FF) {
		c |= clsCJK
	}
	if r < 0x80 && (c&(clsP|clsS) != 0) {
		c |= clsPunct
	}
	if (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') {
		c |= clsAlpha
	}
	if r == '\r' || r == '\n' {
		c |= clsNewline
	}
	return c
}

type runeRange struct {
	lo, hi rune
	cls    uint16
}

// newerClass looks r up in newerRunes, for runes Go's tables do not know yet.
func newerClass(r rune) uint16 {
	i, j := 0, len(newerRunes)
	for i < j {
		h := (i + j) / 2
		switch {
		case r < newerRunes[h].lo:
			j = h
		case r > newerRunes[h].hi:
			i = h + 1
		default:
			return newerRunes[h].cls
		}
	}
	return 0
}

// bmpClass holds the classes of U+0000–U+FFFF; other runes are classified on
// the spot.
var bmpClass = sync.OnceValue(func() *[0x10000]uint16 {
	var t [0x10000]uint16
	for r := range rune(0x10000) {
		t[r] = classify(r)
	}
	return &t
})

// runeAt decodes the rune at s[i:] and its class. An invalid byte counts as
// one rune U+FFFD, as regexp2 reads it.
func runeAt(t *[0x10000]uint16, s string, i int) (uint16, int) {
	c := s[i]
	if c < utf8.RuneSelf {
		return t[c], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	if r < 0x10000 {
		return t[r], w
	}
	return classify(r), w
}

// digitSplit is `\p{N}{1,3}`, Isolated: numbers in chunks of at most three.
type digitSplit struct{}

func (digitSplit) split(s string, e *encoder, step int) {
	t := bmpClass()
	gap, i := 0, 0
	for i < len(s) {
		c, w := runeAt(t, s, i)
		if c&clsN == 0 {
			i += w
			continue
		}
		if gap < i {
			e.next(s[gap:i], step+1)
		}
		j, n := i+w, 1
		for n < 3 && j < len(s) {
			c, w := runeAt(t, s, j)
			if c&clsN == 0 {
				break
			}
			j += w
			n++
		}
		e.next(s[i:j], step+1)
		i, gap = j, j
	}
	if gap < len(s) {
		e.next(s[gap:], step+1)
	}
}

// cjkSplit is `[一-龥぀-ゟ゠-ヿ]+`, Isolated: runs of CJK ideographs and kana.
type cjkSplit struct{}

func (cjkSplit) split(s string, e *encoder, step int) {
	t := bmpClass()
	gap, i := 0, 0
	for i < len(s) {
		c, w := runeAt(t, s, i)
		if c&clsCJK == 0 {
			i += w
			continue
		}
		if gap < i {
			e.next(s[gap:i], step+1)
		}
		j := i + w
		for j < len(s) {
			c, w := runeAt(t, s, j)
			if c&clsCJK == 0 {
				break
			}
			j += w
		}
		e.next(s[i:j], step+1)
		i, gap = j, j
	}
	if gap < len(s) {
		e.next(s[gap:], step+1)
	}
}

// mainSplit is DeepSeek's third pattern, Isolated. Its six alternatives are
// tried in order at each position, as a backtracking engine does:
//
//	A1 [!"#…~][A-Za-z]+              ASCII punctuation glued to a word
//	A2 [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+   a word, with one leading non-letter (space, digit, …)
//	A3  ?[\p{P}\p{S}]+[\r\n]*         punctuation and symbols, one optional leading space, trailing newlines
//	A4 \s*[\r\n]+                    whitespace up to its last newline
//	A5 \s+(?!\S)                     whitespace not followed by a non-space: all but the run's last rune, or all at the end
//	A6 \s+                           whitespace
//
// Runes where none matches gather into gap pieces.
type mainSplit struct{}

func (mainSplit) split(s string, e *encoder, step int) {
	t := bmpClass()
	gap, i := 0, 0
	for i < len(s) {
		end, w := mainMatch(t, s, i)
		if end < 0 {
			i += w
			continue
		}
		if gap < i {
			e.next(s[gap:i], step+1)
		}
		e.next(s[i:end], step+1)
		i, gap = end, end
	}
	if gap < len(s) {
		e.next(s[gap:], step+1)
	}
}

// mainMatch returns the end of the match at s[i:], or -1 and the width of
// the rune at i.
func mainMatch(t *[0x10000]uint16, s string, i int) (int, int) {
	c0, w0 := runeAt(t, s, i)
	// A1
	if c0&clsPunct != 0 && i+1 < len(s) && isASCIIAlpha(s[i+1]) {
		j := i + 2
		for j < len(s) && isASCIIAlpha(s[j]) {
			j++
		}
		return j, w0
	}
	// A2: with the optional rune if it may be taken, else without.
	if c0&(clsL|clsP|clsS|clsNewline) == 0 {
		if j := runWhile(t, s, i+w0, clsL|clsM); j > i+w0 {
			return j, w0
		}
		if c0&clsM != 0 {
			return i + w0, w0
		}
	} else if c0&clsL != 0 {
		return runWhile(t, s, i, clsL|clsM), w0
	}
	// A3
	j := i
	if s[i] == ' ' {
		j++
	}
	if k := runWhile(t, s, j, clsP|clsS); k > j {
		for k < len(s) && (s[k] == '\r' || s[k] == '\n') {
			k++
		}
		return k, w0
	}
	if c0&clsSpace == 0 {
		return -1, w0
	}
	// A4–A6 over the whitespace run s[i:j].
	j, lastNL, lastW := i, -1, 0
	for j < len(s) {
		c, w := runeAt(t, s, j)
		if c&clsSpace == 0 {
			break
		}
		if c&clsNewline != 0 {
			lastNL = j + w
		}
		j += w
		lastW = w
	}
	switch {
	case lastNL > 0: // A4
		return lastNL, w0
	case j == len(s): // A5 to the end
		return j, w0
	case j-lastW > i: // A5 giving back the last rune
		return j - lastW, w0
	default: // A6
		return j, w0
	}
}

func runWhile(t *[0x10000]uint16, s string, i int, cls uint16) int {
	for i < len(s) {
		c, w := runeAt(t, s, i)
		if c&cls == 0 {
			break
		}
		i += w
	}
	return i
}

func isASCIIAlpha(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }
