package data

import (
	"context"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"cbs/internal/atomicio"
)

// TokenizeOptions says how Tokenize writes a token set.
type TokenizeOptions struct {
	// Tokenizer is a name NewTokenizer accepts.
	Tokenizer string
	// ShardTokens is the tokens per shard file; 0 means DefaultShardTokens.
	ShardTokens int64
	// Progress, if not nil, is called after each document is read with the bytes of input read
	// so far and the total.
	Progress func(done, total int64)
}

// Tokenize turns text files into a token set in out that data.source = "tokens" reads: inputs are
// files, folders (walked recursively, leaving out names that start with a dot) and glob
// patterns. The documents follow the rules of the files source: sorted by path, a file whose
// bytes repeat an earlier one's left out, and an EOS after each, so the stream is the one
// data.glob would give for the same files. Only one batch of documents is in memory at a time.
//
// The set is written in a folder beside out and renamed into place when complete: out holds the
// previous set, or none, until then, and a run that stops early leaves nothing a reader accepts.
// out must be missing, empty, or a token set, which is replaced.
func Tokenize(ctx context.Context, inputs []string, out string, opt TokenizeOptions) (*TokenIndex, error) {
	if opt.ShardTokens == 0 {
		opt.ShardTokens = DefaultShardTokens
	}
	tok, err := NewTokenizer(opt.Tokenizer)
	if err != nil {
		return nil, err
	}
	docs, total, err := listInputs(inputs)
	if err != nil {
		return nil, err
	}
	if err := checkOutDir(out); err != nil {
		return nil, err
	}
	if err := atomicio.CleanStale(out); err != nil {
		return nil, err
	}
	tmp, err := atomicio.TempDir(out)
	if err != nil {
		return nil, err
	}
	committed := false
	defer func() {
		if !committed {
			os.RemoveAll(tmp)
		}
	}()
	w, err := newTokenWriter(tmp, tok, opt.Tokenizer, opt.ShardTokens)
	if err != nil {
		return nil, err
	}
	defer w.abort()
	enc := newDocEncoder(tok, w.write)
	var done int64
	in, err := scanDocuments(docs, func(d document, duplicate bool) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		done += int64(len(d.data))
		if !duplicate {
			if err := enc.add(d); err != nil {
				return err
			}
		}
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
		return nil
	})
	if err == nil {
		err = enc.flush()
	}
	if err != nil {
		return nil, err
	}
	idx, err := w.finish(TokenIndex{
		Documents: len(docs) - in.duplicates, DuplicatesDropped: in.duplicates,
		SourceBytes: in.bytes, InputSHA256: hex.EncodeToString(in.digest),
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := atomicio.CommitDir(tmp, out); err != nil {
		return nil, err
	}
	committed = true
	return idx, nil
}

// listInputs expands the inputs of Tokenize into documents named by their slash-separated path
// as given, each file once, and sums their sizes.
func listInputs(inputs []string) ([]document, int64, error) {
	if len(inputs) == 0 {
		return nil, 0, fmt.Errorf("no input files")
	}
	var docs []document
	var total int64
	seen := map[string]bool{}
	add := func(path string, st fs.FileInfo) {
		path = filepath.Clean(path)
		if seen[path] {
			return
		}
		seen[path] = true
		docs = append(docs, document{name: filepath.ToSlash(path), path: path})
		total += st.Size()
	}
	for _, in := range inputs {
		matches, err := filepath.Glob(in)
		if err != nil {
			return nil, 0, fmt.Errorf("%q: %w", in, err)
		}
		if len(matches) == 0 {
			if _, err := os.Stat(in); err != nil {
				return nil, 0, err
			}
			matches = []string{in} // a name with glob characters in it
		}
		for _, m := range matches {
			st, err := os.Stat(m)
			if err != nil {
				return nil, 0, err
			}
			switch {
			case st.Mode().IsRegular():
				add(m, st)
			case st.IsDir():
				err := filepath.WalkDir(m, func(path string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					if path != m && strings.HasPrefix(d.Name(), ".") {
						if d.IsDir() {
							return filepath.SkipDir
						}
						return nil
					}
					if d.IsDir() {
						return nil
					}
					st, err := os.Stat(path) // a link to a file counts as the file
					if err != nil {
						return err
					}
					if st.Mode().IsRegular() {
						add(path, st)
					}
					return nil
				})
				if err != nil {
					return nil, 0, err
				}
			}
		}
	}
	if len(docs) == 0 {
		return nil, 0, fmt.Errorf("%s: no regular files", strings.Join(inputs, " "))
	}
	return docs, total, nil
}

// checkOutDir refuses an output folder that holds anything but a token set, which Tokenize
// would delete when it replaces the folder.
func checkOutDir(out string) error {
	entries, err := os.ReadDir(out)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := ReadTokenIndex(out); err != nil {
		return fmt.Errorf("%s holds files and is not a token set: give a new or empty folder (%v)", out, err)
	}
	for _, e := range entries {
		if e.Name() != TokenIndexFile && !isShardName(e.Name()) {
			return fmt.Errorf("%s is a token set but also holds %s, which replacing the set would delete: give a new or empty folder", out, e.Name())
		}
	}
	return nil
}

// isShardName reports whether name is that of a shard file.
func isShardName(name string) bool {
	num, ok1 := strings.CutPrefix(name, "shard-")
	num, ok2 := strings.CutSuffix(num, ".tok")
	return ok1 && ok2 && num != "" && strings.Trim(num, "0123456789") == ""
}
