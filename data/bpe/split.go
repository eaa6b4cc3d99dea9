package bpe

import (
	"unicode"

	"cbs/data/internal/bytelevel"
)

// GPT-2 cuts text into pieces before BPE with the pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// Go's regexp has no lookahead, so nextPiece implements it by hand. The alternatives are tried
// in order at each position, each one greedy:
//   - a contraction (case-sensitive) when the piece starts with an apostrophe;
//   - an optional U+0020 then a run of letters, or of numbers, or of other characters (neither
//     whitespace, letter nor number);
//   - a run of whitespace that reaches the end of the text or is followed by more whitespace:
//     `\s+(?!\S)` backs off one character from a run followed by a non-space, which leaves the
//     last space of the run to be glued to the next word;
//   - otherwise a single whitespace character before a non-space.
//
// \s is JavaScript's definition, as in the reference implementation (npm gpt-3-encoder): it
// includes U+FEFF and excludes U+0085 and U+001C-U+001F. Bytes that are not valid UTF-8 count as
// "other" characters, like U+FFFD, so that any byte string splits and encodes losslessly.

type class uint8

const (
	other class = iota
	space
	letter
	number
)

func runeClass(r rune) class {
	switch {
	case isSpace(r):
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

// isSpace is JavaScript's \s.
func isSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0x00a0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff:
		return true
	}
	return 0x2000 <= r && r <= 0x200a
}

// nextPiece returns the length of the first pre-tokenization piece of s (non-empty).
func nextPiece(s []byte) int {
	if s[0] == '\'' && len(s) >= 2 {
		switch s[1] {
		case 's', 't', 'm', 'd':
			return 2
		case 'r', 'v':
			if len(s) >= 3 && s[2] == 'e' {
				return 3
			}
		case 'l':
			if len(s) >= 3 && s[2] == 'l' {
				return 3
			}
		}
	}
	if s[0] == ' ' && len(s) >= 2 {
		if c, _ := classes.At(s[1:]); c != space {
			return 1 + classes.RunLen(s[1:], c)
		}
	}
	c, n := classes.At(s)
	if c != space {
		return classes.RunLen(s, c)
	}
	// A whitespace run: all of it at the end of the text, else all but its last character (when
	// that leaves something), else the single character.
	last, end := 0, n
	for end < len(s) {
		ci, ni := classes.At(s[end:])
		if ci != space {
			break
		}
		last = end
		end += ni
	}
	if end == len(s) || last == 0 {
		return end
	}
	return last
}
