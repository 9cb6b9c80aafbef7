// HF side of bench/bench_tokenizer: encodes each line of TEXT with tokenizers' encodeBatch (Rust, rayon threads;
// RAYON_NUM_THREADS sets the count) and prints one JSON line {mb_per_s, tokens, seconds}. Best of REPS runs.
// Usage: node bench_hf.js TOKENIZER_JSON TEXT [REPS]
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');
const [tokPath, textPath, repsArg] = process.argv.slice(2);
const reps = Number(repsArg || 3);
const tok = Tokenizer.fromFile(tokPath);
const text = fs.readFileSync(textPath, 'utf8');
const lines = text.split('\n').filter((l) => l.length > 0);
const bytes = lines.reduce((s, l) => s + Buffer.byteLength(l), 0);
(async () => {
  let best = Infinity, tokens = 0;
  await tok.encodeBatch(lines.slice(0, 50), { addSpecialTokens: true });  // warm-up
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    const encs = await tok.encodeBatch(lines, { addSpecialTokens: true });
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    tokens = encs.reduce((s, e) => s + e.getLength(), 0);
    best = Math.min(best, dt);
  }
  console.log(JSON.stringify({ mb_per_s: bytes / best / 1e6, tokens, seconds: best, bytes }));
})().catch((e) => { console.error(e); process.exit(1); });
