package data

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// streamDoc is one document as the token stream holds it: its text and the window of each of
// its tokens.
type streamDoc struct {
	text    string
	windows []int64
}

// streamDocs splits the byte-tokenized stream of c at EOS, the way a reader of the stream sees
// its documents; a document cut by the end of the last whole window keeps what is left.
func streamDocs(c *Corpus) []streamDoc {
	var docs []streamDoc
	var cur streamDoc
	var text []byte
	for pos, id := range c.tokens.int32s() {
		if id == ByteEOS {
			cur.text = string(text)
			docs = append(docs, cur)
			cur, text = streamDoc{}, nil
			continue
		}
		text = append(text, byte(id))
		cur.windows = append(cur.windows, int64(pos/c.SeqLen()))
	}
	return docs
}

// TestDuplicatesCountOnceAndNeverCrossTheSplit builds a files corpus with copies and symlinks
// (GPL -> GPL-3, as licence trees have), and checks that each content is read once, that the
// first name in sorted order keeps it, that the statistics count what was dropped, and that the
// eval split and the training split share no content hash.
func TestDuplicatesCountOnceAndNeverCrossTheSplit(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"func", "return", "package", "licence", "copy", "the", "of", "free", "software", "warranty"}
	unique := map[string]string{} // name -> content, every content distinct
	for i := range 40 {
		var sb strings.Builder
		fmt.Fprintf(&sb, "document %d\n", i)
		for range 20 + rng.IntN(200) {
			sb.WriteString(words[rng.IntN(len(words))] + " ")
		}
		unique[fmt.Sprintf("f%02d.txt", i)] = sb.String()
	}
	unique["GPL-3"] = strings.Repeat("GNU GENERAL PUBLIC LICENSE Version 3\n", 30)
	writeFiles(t, dir, unique)
	// Copies land before and after their original in name order; links point at files of either
	// kind, so which name keeps a content depends on sorting alone.
	copies := map[string]string{"a-copy.txt": "f20.txt", "f05-copy.txt": "f05.txt", "g31.txt": "f31.txt", "z-copy.txt": "f12.txt"}
	links := map[string]string{"GPL": "GPL-3", "COPYING": "GPL-3", "l03.txt": "f03.txt", "l17.txt": "f17.txt", "z-link.txt": "f38.txt", "zz-link.txt": "a-copy.txt"}
	for name, from := range copies {
		writeFiles(t, dir, map[string]string{name: unique[from]})
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Skipf("symlinks: %v", err)
		}
	}
	if err := os.Symlink(".", filepath.Join(dir, "self")); err != nil { // a link to a directory: not a document
		t.Fatal(err)
	}
	dropped := len(copies) + len(links)

	cfg := SourceConfig{Source: SourceFiles, Glob: filepath.Join(dir, "*"), SeqLen: 16, EvalTokens: 2048, Seed: 5}
	c, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var bytes int64
	for _, body := range unique {
		bytes += int64(len(body))
	}
	in := c.Info()
	if in.Documents != len(unique) || in.DuplicatesDropped != dropped || in.SourceBytes != bytes || in.Tokens != bytes+int64(len(unique)) {
		t.Errorf("info: %d documents, %d duplicates dropped, %d bytes, %d tokens; want %d, %d, %d, %d",
			in.Documents, in.DuplicatesDropped, in.SourceBytes, in.Tokens, len(unique), dropped, bytes, bytes+int64(len(unique)))
	}

	// The stream holds each content once, under the first name in sorted order.
	all := map[string]string{}
	for name, body := range unique {
		all[name] = body
	}
	for name, from := range copies {
		all[name] = unique[from]
	}
	for name, target := range links {
		all[name] = all[target]
	}
	names := make([]string, 0, len(all))
	for name := range all {
		names = append(names, name)
	}
	sort.Strings(names)
	var want []string
	seen := map[string]bool{}
	for _, name := range names {
		if !seen[all[name]] {
			seen[all[name]] = true
			want = append(want, all[name])
		}
	}
	docs := streamDocs(c)
	var got []string
	for _, d := range docs {
		got = append(got, d.text)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the stream holds %d documents, want the %d distinct contents in the order of their first names", len(got), len(want))
	}

	// Eval and training by content: a document belongs to a split when any of its tokens lies in
	// one of that split's windows. The same content in both may only be one document whose
	// tokens a block edge cuts, never two copies.
	isEval := map[int64]bool{}
	for _, w := range c.EvalWindows() {
		isEval[w] = true
	}
	evalDocs, trainDocs := map[[32]byte][]int{}, map[[32]byte][]int{}
	for k, d := range docs {
		h := sha256.Sum256([]byte(d.text))
		inEval, inTrain := false, false
		for _, w := range d.windows {
			if w >= c.nWindows {
				continue // after the last whole window: read by neither split
			}
			inEval = inEval || isEval[w]
			inTrain = inTrain || !isEval[w]
		}
		if inEval {
			evalDocs[h] = append(evalDocs[h], k)
		}
		if inTrain {
			trainDocs[h] = append(trainDocs[h], k)
		}
	}
	if len(evalDocs) == 0 || len(trainDocs) == 0 {
		t.Fatalf("%d eval and %d training documents: the test needs both", len(evalDocs), len(trainDocs))
	}
	straddling := 0
	for h, ev := range evalDocs {
		tr, shared := trainDocs[h]
		if !shared {
			continue
		}
		if len(ev) != 1 || len(tr) != 1 || ev[0] != tr[0] {
			t.Errorf("content %x is in eval as documents %v and in training as documents %v", h[:6], ev, tr)
		}
		straddling++
	}
	if straddling > 2*evalBlocksMax {
		t.Errorf("%d documents have tokens in both splits; block edges can cut at most %d", straddling, 2*evalBlocksMax)
	}
	// The training sequences read only training windows.
	for i := range c.NumTrainSeqs() {
		if isEval[c.TrainWindow(i)] {
			t.Fatalf("training sequence %d reads eval window %d", i, c.TrainWindow(i))
		}
	}
}
