package hftok

import (
	"unicode"

	"cbs/data/internal/bytelevel"
)

// The pre-tokenizer cuts normalized text into pieces, each encoded by BPE on its own. A
// tokenizer.json gives the cut as a regular expression; Go's regexp has no lookahead, so the
// patterns below are implemented by hand, one function each. Every function returns the length
// of the first piece of s (non-empty) and follows the semantics of the regex engine Hugging Face
// tokenizers uses (Oniguruma): the alternatives are tried in order at each position, each one
// greedy with backtracking, and
//   - \s is Unicode White_Space (unicode.IsSpace): U+0009-U+000D, U+0020, U+0085, U+00A0 and the
//     Zs, Zl and Zp characters; not U+FEFF;
//   - \p{L} and \p{N} are Go's Unicode tables (unicode.IsLetter, unicode.IsNumber), so a
//     character assigned after the Unicode version of the Go release (unicode.Version) is in
//     none of the classes;
//   - (?i:...) folds case, which lets the long s U+017F match "s";
//   - a byte that is not valid UTF-8 (Go's input may hold any bytes) is a character of its own
//     in none of those classes, like U+FFFD.
//
// Qwen2 and Qwen3 split with
//
//	(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// and Llama 3 with the same pattern but \p{N}{1,3}. GPT-2's ByteLevel pre-tokenizer (use_regex)
// splits with
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

const (
	patternQwen   = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternLlama3 = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	patternGPT2   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// splitters maps each supported pattern to its implementation.
var splitters = map[string]func([]byte) int{
	patternQwen:   func(s []byte) int { return nextQwen(s, 1) },
	patternLlama3: func(s []byte) int { return nextQwen(s, 3) },
	patternGPT2:   nextGPT2,
}

type class uint8

const (
	other   class = iota
	letter        // \p{L}
	number        // \p{N}
	space         // \s other than \r and \n
	newline       // \r or \n
)

func runeClass(r rune) class {
	switch {
	case r == '\r' || r == '\n':
		return newline
	case unicode.IsSpace(r):
		return space
	case unicode.IsLetter(r):
		return letter
	case unicode.IsNumber(r):
		return number
	}
	return other
}

// classes reads the classes of the characters of a text.
var classes = bytelevel.NewClasses(runeClass, other)

func isSpaceClass(c class) bool { return c == space || c == newline }

// contraction returns the length of the contraction suffix at the start of s (the text after an
// apostrophe): s, t, re, ve, m, ll or d, folding case when fold is set; 0 when there is none.
func contraction(s []byte, fold bool) int {
	if len(s) == 0 {
		return 0
	}
	lower := func(c byte) byte {
		if fold && 'A' <= c && c <= 'Z' {
			return c + 'a' - 'A'
		}
		return c
	}
	switch lower(s[0]) {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if len(s) >= 2 && lower(s[1]) == 'e' {
			return 2
		}
	case 'l':
		if len(s) >= 2 && lower(s[1]) == 'l' {
			return 2
		}
	case 0xc5: // U+017F LATIN SMALL LETTER LONG S folds to s
		if fold && len(s) >= 2 && s[1] == 0xbf {
			return 2
		}
	}
	return 0
}

// whitespace returns, for the run of \s characters at the start of s: its end, the start of its
// last character, the end of its last \r or \n (0 when it has none) and its length in characters.
func whitespace(s []byte) (end, last, nlEnd, count int) {
	for end < len(s) {
		c, n := classes.At(s[end:])
		if !isSpaceClass(c) {
			break
		}
		last = end
		end += n
		count++
		if c == newline {
			nlEnd = end
		}
	}
	return end, last, nlEnd, count
}

// nextQwen is the Qwen pattern, with \p{N}{1,digits} in place of \p{N}.
func nextQwen(s []byte, digits int) int {
	// (?i:'s|'t|'re|'ve|'m|'ll|'d)
	if s[0] == '\'' {
		if n := contraction(s[1:], true); n > 0 {
			return 1 + n
		}
	}
	c0, n0 := classes.At(s)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	switch c0 {
	case letter:
		return classes.RunLen(s, letter)
	case other, space:
		if n0 < len(s) {
			if c1, _ := classes.At(s[n0:]); c1 == letter {
				return n0 + classes.RunLen(s[n0:], letter)
			}
		}
	case number:
		// \p{N}{1,digits}
		i := n0
		for k := 1; k < digits && i < len(s); k++ {
			c, n := classes.At(s[i:])
			if c != number {
				break
			}
			i += n
		}
		return i
	}
	//  ?[^\s\p{L}\p{N}]+[\r\n]*
	start := -1
	if c0 == other {
		start = 0
	} else if s[0] == ' ' && len(s) > 1 {
		if c1, _ := classes.At(s[1:]); c1 == other {
			start = 1
		}
	}
	if start >= 0 {
		i := start + classes.RunLen(s[start:], other)
		for i < len(s) && (s[i] == '\r' || s[i] == '\n') {
			i++
		}
		return i
	}
	// Only whitespace is left: c0 is space or newline.
	end, last, nlEnd, count := whitespace(s)
	switch {
	case nlEnd > 0: // \s*[\r\n]+ ends at the run's last newline
		return nlEnd
	case end == len(s) || count == 1: // \s+(?!\S) at the end of the text, else \s+
		return end
	default: // \s+(?!\S) leaves the last character to the next piece
		return last
	}
}

// nextGPT2 is GPT-2's pattern.
func nextGPT2(s []byte) int {
	if s[0] == '\'' {
		if n := contraction(s[1:], false); n > 0 {
			return 1 + n
		}
	}
	if s[0] == ' ' && len(s) > 1 {
		if c1, _ := classes.At(s[1:]); !isSpaceClass(c1) {
			return 1 + classes.RunLen(s[1:], c1)
		}
	}
	c0, _ := classes.At(s)
	if !isSpaceClass(c0) {
		return classes.RunLen(s, c0)
	}
	end, last, _, count := whitespace(s)
	if end == len(s) || count == 1 {
		return end
	}
	return last
}
