package bytelevel

import "unicode/utf8"

// Classes sorts characters into a pre-tokenizer's classes (letters, numbers, whitespace, ...),
// over which it cuts text into runs. Each tokenizer defines its own classes, as the regex engine
// of its reference does (GPT-2's JavaScript \s is not Unicode's White_Space); what they share is
// reading them: an ASCII byte, nearly every character of most text, from a table, any other rune
// from the tokenizer's function, and a byte that is not valid UTF-8 as a character of its own in
// the class Invalid, so that any byte string splits.
type Classes[C ~uint8] struct {
	ascii   [utf8.RuneSelf]C
	of      func(rune) C
	invalid C
}

// NewClasses reads classes with of, and gives an invalid byte the class invalid.
func NewClasses[C ~uint8](of func(rune) C, invalid C) *Classes[C] {
	cs := &Classes[C]{of: of, invalid: invalid}
	for c := range cs.ascii {
		cs.ascii[c] = of(rune(c))
	}
	return cs
}

// At returns the class and byte length of the character at the start of s (non-empty).
func (cs *Classes[C]) At(s []byte) (C, int) {
	if c := s[0]; c < utf8.RuneSelf {
		return cs.ascii[c], 1
	}
	r, n := utf8.DecodeRune(s)
	if r == utf8.RuneError && n == 1 {
		return cs.invalid, 1
	}
	return cs.of(r), n
}

// RunLen is the length of the run of characters of class c at the start of s.
func (cs *Classes[C]) RunLen(s []byte, c C) int {
	i := 0
	for i < len(s) {
		ci, n := cs.At(s[i:])
		if ci != c {
			break
		}
		i += n
	}
	return i
}
