package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// DecodeBytes returns the bytes the ids stand for. Unknown ids are skipped.
func (b *BPE) DecodeBytes(ids []int) []byte {
	return b.AppendDecode(nil, ids)
}

// AppendDecode appends the bytes of ids to dst.
func (b *BPE) AppendDecode(dst []byte, ids []int) []byte {
	for _, id := range ids {
		if id >= 0 && id < len(b.bytes) {
			dst = append(dst, b.bytes[id]...)
		}
	}
	return dst
}

// Decode returns the text of ids, special tokens included. Bytes that are
// not valid UTF-8 (a character cut between ids) become U+FFFD the way
// tokenizers does it (Rust's String::from_utf8_lossy: one U+FFFD per maximal
// invalid subsequence).
func (b *BPE) Decode(ids []int) string {
	return lossyUTF8(b.DecodeBytes(ids))
}

// DecodeSkipSpecial is Decode without the added tokens marked special.
func (b *BPE) DecodeSkipSpecial(ids []int) string {
	kept := make([]int, 0, len(ids))
	for _, id := range ids {
		if id < 0 || id >= len(b.isSpecial) || !b.isSpecial[id] {
			kept = append(kept, id)
		}
	}
	return b.Decode(kept)
}

// lossyUTF8 is Rust's String::from_utf8_lossy.
func lossyUTF8(p []byte) string {
	if utf8.Valid(p) {
		return string(p)
	}
	var sb strings.Builder
	sb.Grow(len(p) + 8)
	for i := 0; i < len(p); {
		r, w := utf8.DecodeRune(p[i:])
		if r != utf8.RuneError || w > 1 {
			sb.Write(p[i : i+w])
			i += w
			continue
		}
		sb.WriteRune(utf8.RuneError)
		i += invalidLen(p[i:])
	}
	return sb.String()
}

// invalidLen is the length of the maximal prefix of p that could start a
// well-formed sequence (at least 1): that is what one U+FFFD replaces.
func invalidLen(p []byte) int {
	c := p[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c == 0xED:
		need, hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		need = 2
	case c == 0xF0:
		need, lo = 3, 0x90
	case c == 0xF4:
		need, hi = 3, 0x8F
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(p); n++ {
		if p[n] < lo || p[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}

// incompleteTail is the length of the suffix of p that is a proper prefix of
// a well-formed UTF-8 sequence, which more bytes may complete (0 if none).
func incompleteTail(p []byte) int {
	for k := 1; k <= 3 && k <= len(p); k++ {
		tail := p[len(p)-k:]
		if tail[0] < 0xC0 {
			continue // a continuation byte: look further back
		}
		if n := invalidLen(tail); n == k && k < seqLen(tail[0]) {
			return k
		}
		return 0
	}
	return 0
}

func seqLen(c byte) int {
	switch {
	case c >= 0xF0:
		return 4
	case c >= 0xE0:
		return 3
	default:
		return 2
	}
}

// StreamDecoder turns ids into text as they arrive, holding back the bytes
// of a character that the next ids will complete. The concatenation of all
// Add results and Flush equals Decode of all the ids.
type StreamDecoder struct {
	b       *BPE
	pending []byte
}

// NewStreamDecoder returns a decoder for ids of b.
func NewStreamDecoder(b *BPE) *StreamDecoder { return &StreamDecoder{b: b} }

// Add decodes one more id and returns the text it completes, maybe "".
func (d *StreamDecoder) Add(id int) string {
	d.pending = d.b.AppendDecode(d.pending, []int{id})
	keep := incompleteTail(d.pending)
	out := lossyUTF8(d.pending[:len(d.pending)-keep])
	d.pending = append(d.pending[:0], d.pending[len(d.pending)-keep:]...)
	return out
}

// Flush returns what is held back (U+FFFD for a cut character) and resets
// the decoder.
func (d *StreamDecoder) Flush() string {
	out := lossyUTF8(d.pending)
	d.pending = d.pending[:0]
	return out
}
