package hftok

import (
	"bytes"
	"sort"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized *bool  `json:"normalized"`
	Special    bool   `json:"special"`
}

// matcher finds added tokens in text as Hugging Face tokenizers does: the leftmost match, the
// longest one there; a single_word token only where no word character touches it (the match is
// dropped, not retried shorter); lstrip and rstrip tokens absorb the whitespace beside them.
type matcher struct {
	byFirst [256][]pattern // candidates by first byte, longest first
	first   int            // the only first byte, or -1
	empty   bool
}

// pattern is the text an added token matches: its content, or its normalized content.
type pattern struct {
	text []byte
	tok  *addedToken
}

func newMatcher(patterns []pattern) *matcher {
	m := &matcher{first: -1, empty: true}
	firsts := map[byte]bool{}
	for _, p := range patterns {
		if len(p.text) == 0 {
			continue
		}
		m.byFirst[p.text[0]] = append(m.byFirst[p.text[0]], p)
		firsts[p.text[0]] = true
		m.empty = false
	}
	for b := range m.byFirst {
		l := m.byFirst[b]
		sort.SliceStable(l, func(i, j int) bool { return len(l[i].text) > len(l[j].text) })
	}
	if len(firsts) == 1 {
		for b := range firsts {
			m.first = int(b)
		}
	}
	return m
}

// segment is a part of the text: an added token (tok != nil) or text to tokenize.
type segment struct {
	text []byte
	tok  *addedToken
}

// split cuts text into segments, appending them to out.
func (m *matcher) split(out []segment, text []byte) []segment {
	if m.empty {
		return append(out, segment{text: text})
	}
	done := 0 // text[:done] is in out
	for i := 0; i < len(text); {
		if m.first >= 0 {
			k := bytes.IndexByte(text[i:], byte(m.first))
			if k < 0 {
				break
			}
			i += k
		}
		var hit *pattern
		for k, p := range m.byFirst[text[i]] {
			if bytes.HasPrefix(text[i:], p.text) {
				hit = &m.byFirst[text[i]][k]
				break
			}
		}
		if hit == nil {
			i++
			continue
		}
		start, stop := i, i+len(hit.text)
		tok := hit.tok
		if tok.SingleWord && (endsWithWord(text[:start]) || startsWithWord(text[stop:])) {
			i = stop
			continue
		}
		if tok.LStrip {
			start = max(done, start-trailingSpace(text[:start]))
		}
		if tok.RStrip {
			stop += leadingSpace(text[stop:])
		}
		if done < start {
			out = append(out, segment{text: text[done:start]})
		}
		out = append(out, segment{text: text[start:stop], tok: tok})
		done, i = stop, stop
	}
	if done < len(text) {
		out = append(out, segment{text: text[done:]})
	}
	return out
}

// isWord is the regex class \w: alphabetic, marks, decimal digits, connector punctuation and
// the joiners.
func isWord(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.In(r, unicode.Nd, unicode.Nl, unicode.Pc, unicode.Other_Alphabetic) ||
		r == 0x200c || r == 0x200d
}

func endsWithWord(s []byte) bool {
	r, n := utf8.DecodeLastRune(s)
	return n > 0 && r != utf8.RuneError && isWord(r)
}

func startsWithWord(s []byte) bool {
	r, n := utf8.DecodeRune(s)
	return n > 0 && r != utf8.RuneError && isWord(r)
}

// trailingSpace is the byte length of the whitespace that ends s.
func trailingSpace(s []byte) int {
	n := 0
	for len(s) > n {
		r, k := utf8.DecodeLastRune(s[:len(s)-n])
		if r == utf8.RuneError || !unicode.IsSpace(r) {
			break
		}
		n += k
	}
	return n
}

// leadingSpace is the byte length of the whitespace that starts s.
func leadingSpace(s []byte) int {
	n := 0
	for n < len(s) {
		r, k := utf8.DecodeRune(s[n:])
		if r == utf8.RuneError || !unicode.IsSpace(r) {
			break
		}
		n += k
	}
	return n
}
