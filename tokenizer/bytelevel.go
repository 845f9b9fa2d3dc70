package tokenizer

// GPT-2's byte-level alphabet: every byte is shown as a printable rune so that
// tokens are valid strings. Printable Latin-1 bytes stand for themselves; the
// others (controls, space, 0x7F–0xA0, 0xAD) are moved to U+0100 onwards, so the
// space 0x20 becomes "Ġ" (U+0120) and the newline 0x0A becomes "Ċ" (U+010A).
var byteToRune, runeToByte = byteLevelTables()

// runeToByte[r] is the byte that rune r stands for, -1 if none; the
// alphabet's runes are all below 0x144.
func byteLevelTables() (byteToRune [256]rune, runeToByte [0x144]int16) {
	for i := range runeToByte {
		runeToByte[i] = -1
	}
	n := 0
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if printable {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = int16(b)
	}
	return byteToRune, runeToByte
}

// byteLevelString maps raw bytes to their byte-level spelling.
func byteLevelString(b []byte) string {
	r := make([]rune, len(b))
	for i, c := range b {
		r[i] = byteToRune[c]
	}
	return string(r)
}

// byteLevelBytes maps a token's byte-level spelling back to raw bytes. A token
// with any rune outside the alphabet (an added token such as "<｜User｜>") stands
// for its own UTF-8 bytes, as tokenizers' ByteLevel decoder does.
func byteLevelBytes(tok string) []byte {
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		if r >= rune(len(runeToByte)) || runeToByte[r] < 0 {
			return []byte(tok)
		}
		out = append(out, byte(runeToByte[r]))
	}
	return out
}
