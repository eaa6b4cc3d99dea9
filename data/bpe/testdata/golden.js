// Regenerates golden.json, the expected GPT-2 token ids, with the JavaScript implementation in
// the npm package gpt-3-encoder 1.1.4:
//
//	mkdir /tmp/bpeg && cd /tmp/bpeg && npm init -y && npm install gpt-3-encoder@1.1.4
//	NODE_PATH=/tmp/bpeg/node_modules node golden.js > golden.json   (in this directory)
//
// The Go tests only read golden.json; they never need node.
const fs = require('fs');
const path = require('path');
const { encode } = require('gpt-3-encoder');

const fixed = [
  '', ' ', '  ', '\n', '\n\n\n', 'Hello world', 'Hello, world!', 'hello<|endoftext|>world',
  // contractions, including the case-sensitive and misplaced ones
  "I'm sure we'll see they've done it, she'd say it's you're right.",
  "DON'T I'M WE'LL", "'s 't 're 've 'm 'll 'd", "'''s", "rock'n'roll", "''''", " 's", "?'s",
  "it’s curly", "o'clock 're're'", "'", "' ", "x'", "'S", "''ll",
  // letters and numbers outside ASCII
  'naïve café über Straße', 'Привет, мир!', '日本語のテキストです。', '한국어 문장', 'العربية نص',
  'עברית', 'हिन्दी भाषा', 'e\u0301 combining', 'Z̸̢a̵l̷g̶o', 'ǅemal ǈ', 'ʰmodifier',
  '123 4567890 3.14159 1,000,000', '٣٤٥ ⅷ ½ ² x²+y²', '一二三 123abc abc123', '१२३',
  // whitespace: runs, trailing, tabs, newlines, unusual spaces
  'a  b   c    d', '   leading', 'trailing   ', 'trailing \n', 'a\n\nb', 'a \n b', '\t\tindent',
  'a\t b', ' \t \n x', 'line1\r\nline2\r\n', '\u00a0nbsp\u00a0 x', '\u3000ideographic\u3000\u3000x',
  '\u2028 sep \u2029', '\ufeffBOM', '\u0085next', 'vt\u000bff\u000c', '\u001c\u001d\u001e\u001f x',
  '\u200b zero width', '\u2003em space\u2003 x', 'x \u00a0y', '  \n  \n', ' \t', '\t ', '\n ',
  ' '.repeat(50) + 'x', 'x' + ' '.repeat(33), '\n'.repeat(20) + 'end', '\t'.repeat(7) + 'return',
  // emoji and symbols
  '👍🏽 🎉🎉', '👨‍👩‍👧‍👦 family', 'flags 🇫🇷🇩🇪', '😀😃😄', '→ ← ∑ ∫ ≈ ≠', '©®™', '\u00ad soft hyphen',
  // punctuation runs
  '!!!???...', ',,,,,,,,', ',,, ,,,', ', ,', ',,a,,', '..."\'"', '<<>>&&||', '/* */ // ## @@',
  // identifiers, URLs
  'abc123def', 'CamelCaseIdentifier', 'snake_case_name', 'URL: https://example.com/path?q=1&r=2#frag',
  'email@example.com', 'a' + 'a'.repeat(80), '3141592653589793238462643383279502884197169399375105820974944',
  'antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis',
  // Go source
  'func main() {\n\tfmt.Println("hello, 世界")\n}\n',
  'for i := 0; i < n; i++ {\n\t\tx[i] += y[i] * 2\n\t}',
  'if err != nil {\n\t\treturn nil, fmt.Errorf("read %s: %w", path, err)\n\t}',
  '// Comment with    spaces\n\tx := []int{1, 2, 3}\n', 'a&&b||c!=d<<=e>>f', 'map[string]interface{}{}',
  'const maxHeader = 100_000_000\n', '\tcase r >= 0x20 && r < 0x7f:\n',
];

// Whole source files of this repository, as longer realistic inputs.
for (const f of ['../../../internal/atomicio/atomicio.go', '../../../internal/safetensors/safetensors_test.go']) {
  fixed.push(fs.readFileSync(path.join(__dirname, f), 'utf-8'));
}

// Random strings over a pool chosen to exercise every alternative of the split pattern.
const pool = [
  ' ', ' ', ' ', ' ', ' ', '  ', '\t', '\n', '\n', '\r', '\u00a0', '\u3000', "'", "'s", "'t", "'re",
  "'ll", "'ve", "'d", "'m", 's', 't', 'a', 'b', 'Z', 'e', 'é', 'ß', '日', 'Ж', '0', '1', '9', '٣',
  '½', '.', ',', '!', '(', ')', '{', '}', '_', '-', '"', '😀', '\u0301', '\u0085', '\ufeff',
  '\u001c', '\u000b', 'the', 'ing', 'tion', '123', '  ', '\n\n',
];
let seed = 12345;
function rand(n) {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed >>> 8) % n;
}
for (let i = 0; i < 400; i++) {
  let s = '';
  const len = 1 + rand(30);
  for (let j = 0; j < len; j++) s += pool[rand(pool.length)];
  fixed.push(s);
}

process.stdout.write('[\n' + fixed.map(text => JSON.stringify({ text, ids: encode(text) })).join(',\n') + '\n]\n');
