package tokenizer

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func addTextSeeds(f *testing.F) {
	for _, c := range readCases(f, "../testdata/tokenizer/cases.json") {
		f.Add(c.Text)
	}
	f.Add("\xe2\x82 \xff<think\x00")
}

// FuzzEncodeDecode: decoding the ids of any text gives the text back (the
// bytes, for invalid UTF-8), and the scanners agree with regexp2.
func FuzzEncodeDecode(f *testing.F) {
	addTextSeeds(f)
	b, oracle := loadDeepSeek(f), loadOracle(f)
	f.Fuzz(func(t *testing.T, s string) {
		ids := b.Encode(s)
		if !bytes.Equal(b.DecodeBytes(ids), []byte(s)) {
			t.Fatalf("DecodeBytes(Encode(%q)) = %q", s, b.DecodeBytes(ids))
		}
		if utf8.ValidString(s) && b.Decode(ids) != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, b.Decode(ids))
		}
		if got := b.DecodeBytes(b.EncodeOrdinary(s)); !bytes.Equal(got, []byte(s)) {
			t.Fatalf("DecodeBytes(EncodeOrdinary(%q)) = %q", s, got)
		}
		if !hasNewerRunes(s) {
			if want := oracle.Encode(s); !slices.Equal(ids, want) {
				t.Fatalf("%q: scanners %v, regexp2 %v", s, ids, want)
			}
		}
	})
}

// FuzzStreamDecoder: streaming any ids gives Decode's text.
func FuzzStreamDecoder(f *testing.F) {
	f.Add([]byte{1, 2, 3, 250, 7})
	f.Add([]byte("\x00\x01\xff\xff"))
	b := loadDeepSeek(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ids []int
		for i := 0; i+1 < len(data); i += 2 {
			// A first byte below 0x80 picks from the low ids (the byte
			// tokens), others spread over the whole range, -1 and past the
			// end included.
			n := int(data[i])<<8 | int(data[i+1])
			if data[i] < 0x80 {
				ids = append(ids, n%512)
			} else {
				ids = append(ids, (n-0x8000)*4%(b.VocabSize()+2)-1)
			}
		}
		d := NewStreamDecoder(b)
		var sb strings.Builder
		for _, id := range ids {
			sb.WriteString(d.Add(id))
		}
		sb.WriteString(d.Flush())
		if want := b.Decode(ids); sb.String() != want {
			t.Fatalf("ids %v: stream %q, Decode %q", ids, sb.String(), want)
		}
		// Decoded bytes, encoded again, decode to the same bytes.
		raw := b.DecodeBytes(ids)
		if again := b.DecodeBytes(b.EncodeBytes(raw)); !bytes.Equal(again, raw) {
			t.Fatalf("ids %v: bytes %q re-encode to %q", ids, raw, again)
		}
	})
}

// FuzzParse: no tokenizer.json panics Parse, nor Encode/Decode of what
// parses.
func FuzzParse(f *testing.F) {
	f.Add([]byte(tinyJSON))
	f.Add([]byte(strings.Replace(tinyJSON, `"behavior":"Isolated"`, `"behavior":"MergedWithNext","invert":true`, 1)))
	f.Add([]byte(strings.Replace(tinyJSON, `"normalized":false`, `"normalized":true,"lstrip":true,"rstrip":true,"single_word":true`, 1)))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0},"merges":[["a","a"]]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Parse(data)
		if err != nil {
			return
		}
		for _, s := range []string{"hello world", " <think> x\n\n", "\xff123"} {
			b.Decode(b.Encode(s))
		}
		d := NewStreamDecoder(b)
		for id := -1; id < b.VocabSize()+1 && id < 300; id++ {
			d.Add(id)
		}
		d.Flush()
		if _, err := b.MarshalJSON(); err != nil {
			t.Fatal(err)
		}
	})
}
