// make_hf_cases.js writes testdata/tokenizer/hf_cases.json.gz: random strings
// with the ids Hugging Face tokenizers (the Rust library, through its npm
// binding) gives them, for tokenizer's differential test.
//
//   npm install tokenizers@0.23.2
//   node tokenizer/bench/make_hf_cases.js TOKENIZER.json[.gz] N SEED > /tmp/hf_cases.json
//   gzip -9 < /tmp/hf_cases.json > testdata/tokenizer/hf_cases.json.gz
const { Tokenizer } = require('tokenizers');
const fs = require('fs');
const zlib = require('zlib');
const os = require('os');
const path = require('path');

let [file, n, seed] = process.argv.slice(2);
n = parseInt(n || '2000');
let state = BigInt(parseInt(seed || '1'));
function rnd(k) { // xorshift64*, deterministic
  state ^= state << 13n; state &= (1n << 64n) - 1n;
  state ^= state >> 7n;
  state ^= state << 17n; state &= (1n << 64n) - 1n;
  return Number(state % BigInt(k));
}
const pick = a => a[rnd(a.length)];
const words = ['the', 'Hello', 'world', 'naïve', 'café', 'func', 'return', 'x', 'API', 'iPhone', 'don\'t', 'we\'ll',
  'привет', 'мир', 'مرحبا', 'नमस्ते', 'दुनिया', '한국어', 'ภาษาไทย', 'Ελληνικά', 'עברית', 'ﾊﾝｶｸ', 'ｆｕｌｌ'];
const pieces = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', '\r', '\u00a0', '\u3000', '\u2028', '\u0085', '\u000b', '\u000c',
  '\u200b', '\u200d', '\ufeff', '0', '7', '42', '1234567', '٣٤٥', '²', '½', 'Ⅻ', '.', ',', '!', '?', '...', '->', '&&', '(', ')',
  '{', '}', '[', ']', '"', '\'', '`', '#', '$', '%', '_', '-', '=', '+', '*', '/', '\\', '|', '~', '^', '@', ':', ';', '<', '>',
  '。', '，', '、', '「', '」', '・', 'ー', '\u3040', '\u3099', '\u309b', '\u30a0', '\u30ff', '\u309f', '々',
  '价格', '今天天气很好', '中文', '龥', '\u9fa6', '\u9fff', 'こんにちは', 'カタカナ', 'ｶﾀｶﾅ',
  '\u0301', 'e\u0301', '\u0915\u094d\u0937', '🙂', '👍🏽', '👨‍👩‍👧', '🚀', '🇯🇵', '€', '∑', '√', '©', '™', '\u00ad',
  '<｜User｜>', '<｜Assistant｜>', '<think>', '</think>', '<｜end▁of▁sentence｜>', '<｜begin▁of▁sentence｜>',
  '<|EOT|>', '<｜', '｜>', '<think', '</think', '<｜DSML｜', '<｜tool▁sep｜>', '<｜place▁holder▁no▁5｜>', '<｜▁pad▁｜>'];
function randomRune() {
  for (;;) {
    const r = rnd(4) === 0 ? 0x10000 + rnd(0x30000) : rnd(0x10000);
    if (r >= 0xd800 && r < 0xe000) continue;
    return String.fromCodePoint(r);
  }
}
function randomText() {
  const k = 1 + rnd(12);
  let s = '';
  for (let i = 0; i < k; i++) {
    switch (rnd(6)) {
      case 0: s += pick(words); break;
      case 1: s += ' ' + pick(words); break;
      case 2: s += randomRune(); break;
      case 3: s += pick(pieces).repeat(rnd(8) === 0 ? 1 + rnd(40) : 1); break;
      default: s += pick(pieces);
    }
  }
  return s;
}
(async () => {
  let json = fs.readFileSync(file);
  if (file.endsWith('.gz')) json = zlib.gunzipSync(json);
  const tmp = path.join(os.tmpdir(), 'make_hf_cases_tokenizer.json');
  fs.writeFileSync(tmp, json);
  const tok = Tokenizer.fromFile(tmp);
  const cases = [];
  for (let i = 0; i < n; i++) {
    const text = randomText();
    const e = await tok.encode(text, null, { addSpecialTokens: false });
    cases.push({ text, ids: Array.from(e.getIds()) });
  }
  process.stdout.write(JSON.stringify({ note: 'ids from Hugging Face tokenizers 0.23.2 (npm binding), add_special_tokens=false; see make_hf_cases.js', cases }));
})();
