// probe_unicode.js asks Hugging Face tokenizers (the Rust library through its
// npm binding, whose Oniguruma regex engine may know a newer Unicode than Go)
// which runes \p{L}, \p{M}, \p{N}, \p{P}, \p{S} and \s match, and writes them
// as JSON; gen_unicode.go turns the ones Go's tables lack into
// ../unicode_extra.go.
//
//   npm install tokenizers@0.23.2
//   node tokenizer/bench/probe_unicode.js            # about 3 minutes, writes /tmp/onig_classes.json
//   go run tokenizer/bench/gen_unicode.go /tmp/onig_classes.json > tokenizer/unicode_extra.go
const { Tokenizer } = require('tokenizers');
const fs = require('fs');
const alpha = require('tokenizers').byteLevelAlphabet();
const vocab = {}; alpha.forEach((c, i) => vocab[c] = i);
const classes = { L: '\\p{L}', M: '\\p{M}', N: '\\p{N}', P: '\\p{P}', S: '\\p{S}', Z: '\\s' };
(async () => {
  const chars = [];
  for (let r = 1; r < 0x110000; r++) { if (r >= 0xd800 && r < 0xe000) continue; chars.push(String.fromCodePoint(r)); }
  const out = {};
  for (const [name, re] of Object.entries(classes)) {
    const j = { version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null,
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: re }, behavior: 'Removed', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
      post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] } };
    fs.writeFileSync('/tmp/probe_tok.json', JSON.stringify(j));
    const tok = Tokenizer.fromFile('/tmp/probe_tok.json');
    const members = [];
    const B = 20000;
    for (let s = 0; s < chars.length; s += B) {
      const part = chars.slice(s, s + B);
      const e = await tok.encode(part.join('\0') + '\0', null, { addSpecialTokens: false });
      const dec = await tok.decode(e.getIds(), false);
      const entries = dec.split('\0');
      for (let i = 0; i < part.length; i++) if (entries[i] === '') members.push(part[i].codePointAt(0));
    }
    out[name] = members;
    console.error(name, members.length);
  }
  fs.writeFileSync('/tmp/onig_classes.json', JSON.stringify(out));
})();
