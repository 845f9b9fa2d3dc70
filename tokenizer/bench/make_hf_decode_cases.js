// make_hf_decode_cases.js writes random id sequences (byte tokens, so that
// characters are cut, mixed with any tokens) with the text Hugging Face
// tokenizers decodes them to (skip_special_tokens false), for Decode's test.
//
//   node tokenizer/bench/make_hf_decode_cases.js TOKENIZER.json[.gz] N SEED | gzip -9 > testdata/tokenizer/hf_decode_cases.json.gz
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
// byteChar is GPT-2's byte-level spelling of byte b.
function byteChar(b) {
  const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  if (printable) return String.fromCodePoint(b);
  let n = 0;
  for (let c = 0; c < b; c++) if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || (c >= 0xae && c <= 0xff))) n++;
  return String.fromCodePoint(256 + n);
}
(async () => {
  let json = fs.readFileSync(file);
  if (file.endsWith('.gz')) json = zlib.gunzipSync(json);
  const tmp = path.join(os.tmpdir(), 'make_hf_decode_cases_tokenizer.json');
  fs.writeFileSync(tmp, json);
  const tok = Tokenizer.fromFile(tmp);
  const size = tok.getVocabSize(true);
  // The ids of the 256 one-byte tokens.
  const byteIds = [];
  for (let b = 0; b < 256; b++) byteIds.push(tok.tokenToId(byteChar(b)));
  const cases = [];
  for (let i = 0; i < n; i++) {
    const ids = [];
    for (let k = 1 + rnd(10); k > 0; k--) {
      ids.push(rnd(4) === 0 ? rnd(size) : byteIds[rnd(2) === 0 ? 0x80 + rnd(0x80) : rnd(256)]);
    }
    const text = await tok.decode(ids, false);
    cases.push({ ids, text });
  }
  process.stdout.write(JSON.stringify({ note: 'Hugging Face tokenizers 0.23.2 decode(ids, skip_special_tokens=false); see make_hf_decode_cases.js', cases }));
})();
