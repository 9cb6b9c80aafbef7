// Writes the tokenizer test corpus (the SAME files are read by the node oracle and by the C++ tests).
// Deterministic: fixed strings from tests/text/corpus/*.txt plus generated cases (long whitespace runs,
// invalid UTF-8, a 1 MB mixed document from a fixed-seed PRNG). Usage: node gen_corpus.js OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');

const out = process.argv[2];
if (!out) { console.error('usage: node gen_corpus.js OUT_DIR'); process.exit(2); }
fs.mkdirSync(out, { recursive: true });
const srcDir = path.join(__dirname, '..', '..', 'tests', 'text', 'corpus');

// Hand-written files are copied byte for byte.
const files = [];
for (const f of fs.readdirSync(srcDir).sort()) {
  if (!f.endsWith('.txt')) continue;
  fs.copyFileSync(path.join(srcDir, f), path.join(out, f));
  files.push(f);
}

const { rng } = require('./rng');  // mulberry32: the same stream on every Node version

// Long whitespace runs (spaces, tabs, newlines, CRLF, NBSP, ideographic space) around words.
{
  const r = rng(7);
  const ws = [' ', '\t', '\n', '\r\n', '\u00a0', '\u3000', '\u2009', '\u180e', '\u0085', '\v', '\f'];
  let s = '';
  for (let i = 0; i < 60; i++) {
    const w = ws[Math.floor(r() * ws.length)];
    const n = 1 + Math.floor(r() * (i % 7 === 0 ? 300 : 12));
    s += w.repeat(n) + ['word', 'x', '1', '!', '字', 'é'][i % 6];
  }
  s += ' '.repeat(1000) + '\n'.repeat(200) + 'end   ';
  fs.writeFileSync(path.join(out, 'gen_whitespace.txt'), s);
  files.push('gen_whitespace.txt');
}

// Invalid UTF-8: stray continuation bytes, truncated sequences, overlongs, surrogates, 0xFF, between valid text.
{
  const parts = [
    Buffer.from('valid start '), Buffer.from([0x80]), Buffer.from(' cont '), Buffer.from([0xbf, 0xbf]),
    Buffer.from(' trunc2 '), Buffer.from([0xc3]), Buffer.from(' trunc3 '), Buffer.from([0xe4, 0xb8]),
    Buffer.from(' trunc4 '), Buffer.from([0xf0, 0x9f, 0x98]), Buffer.from(' overlong '), Buffer.from([0xc0, 0xaf]),
    Buffer.from(' surrogate '), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(' ff '), Buffer.from([0xff, 0xfe]),
    Buffer.from(' big '), Buffer.from([0xf4, 0x90, 0x80, 0x80]), Buffer.from(' 中文'), Buffer.from([0xe4]),
    Buffer.from('文 end'), Buffer.from([0xe4, 0xb8]),
  ];
  fs.writeFileSync(path.join(out, 'gen_invalid_utf8.txt'), Buffer.concat(parts));
  files.push('gen_invalid_utf8.txt');
}

// A 1 MB document: paragraphs drawn from the hand-written files with a fixed-seed PRNG.
{
  const r = rng(12345);
  const pool = [];
  for (const f of files) {
    if (f.startsWith('gen_')) continue;
    for (const line of fs.readFileSync(path.join(out, f), 'utf8').split('\n')) if (line.length) pool.push(line);
  }
  const chunks = [];
  let size = 0;
  while (size < 1 << 20) {
    let para = '';
    const n = 1 + Math.floor(r() * 6);
    for (let i = 0; i < n; i++) para += (i ? ' ' : '') + pool[Math.floor(r() * pool.length)];
    para += r() < 0.2 ? '\n\n' : '\n';
    chunks.push(para);
    size += Buffer.byteLength(para);
  }
  fs.writeFileSync(path.join(out, 'gen_big_1mb.txt'), chunks.join(''));
  files.push('gen_big_1mb.txt');
}

fs.writeFileSync(path.join(out, 'index.json'), JSON.stringify({ files }, null, 1));
console.log(`corpus: ${files.length} files in ${out}`);
