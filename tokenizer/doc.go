// Package tokenizer is a byte-level BPE tokenizer over a Hugging Face
// tokenizer.json, exact with the Rust `tokenizers` library on DeepSeek-V3's
// vocabulary, plus a small BPE trainer that writes such files.
//
// Reading order:
//
//   - bytelevel.go: GPT-2's byte ↔ printable-rune table ("Ġ" is a space).
//   - load.go: tokenizer.json → BPE (vocab, merges, added tokens, normalizer,
//     pre-tokenizer, decoder) and Save (BPE → tokenizer.json, atomically).
//   - added.go: added/special tokens are split out of the text first, with
//     leftmost-longest matching, in the two passes tokenizers uses
//     (non-normalized tokens, then normalized ones).
//   - pretokenize.go: the Split pre-tokenizers. DeepSeek's three regexes have
//     hand-written scanners (deepseek.go); any other pattern runs through
//     github.com/dlclark/regexp2/v2, which also serves as the scanners' oracle
//     in the tests. unicode_extra.go adds the letters, marks, numbers,
//     punctuation and symbols of Unicode versions newer than Go's tables, as
//     tokenizers' regex engine (Oniguruma) knows them.
//   - encode.go, mergetable.go: the merge loop (lowest merge rank first,
//     leftmost on ties, as tokenizers does) over an open-addressing table of
//     merges, with a per-encoder bounded cache of pre-token results.
//   - decode.go: ids → bytes → text (invalid UTF-8 replaced the way Rust's
//     String::from_utf8_lossy does), and StreamDecoder for servers.
//   - train.go: a byte-level BPE trainer with DeepSeek's pre-tokenizer.
//
// Encode never adds BOS/EOS (DeepSeek's add_bos_token is the chat encoder's
// job) and recognises added tokens everywhere in the text, as
// tokenizers' encode(text, add_special_tokens=False) does.
//
// Exactness is checked against ids from Hugging Face tokenizers in
// testdata/tokenizer: the shared fixture cases, 3000 random strings, and a
// tokenizer trained here. Speed is compared with tokenizers by
// bench/hf_tokenizers.py against `dsv32 tokenize --bench` on the same file.
//
// What it deliberately does not do: word-piece, unigram or
// sentencepiece-style (Metaspace) models, byte_fallback, BPE dropout,
// normalizers that change text (NFC, lowercase, …), pre-tokenizers other
// than Split and ByteLevel — Parse rejects a tokenizer.json that needs one,
// with an error naming the part — and post-processing (templates, BOS
// insertion), offsets, truncation and padding, which it ignores.
package tokenizer
