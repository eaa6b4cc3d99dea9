// Package data supplies the tokens every branch of a sweep trains and evaluates on: tokenizers,
// corpus sources, the deterministic training stream with its cursor, the frozen eval set, MDM
// masks, and .npy and shard file I/O.
//
// # Why it is shaped this way
//
// Branches that differ only in batch size must see the same data in the same order with the
// same per-sequence randomness (docs/science.md, section 1). So nothing here depends on a step number
// or a batch size:
//
//   - A Corpus cuts its token stream into windows of SeqLen tokens. A fixed set of windows,
//     spread through the stream in up to 16 contiguous blocks, is the held-out eval split;
//     the rest are training windows. The two never share a token position.
//   - Training sequence i (an absolute int64 index, any i >= 0) is a pure function of the
//     corpus, the seed and i: epoch i / NumTrainSeqs visits every training window once, in a
//     permutation keyed by (seed, epoch). A run's data cursor is the index of its next
//     sequence, one int64 (see Cursor); a fork starts at its parent's cursor.
//   - MDMMask draws the noise level t and the masked positions of a sequence from a random
//     stream keyed by (seed, purpose, index): "train-mask" with the training sequence index,
//     "eval-mask" with the eval sequence index, so eval masks are frozen.
//
// # Sources
//
// SourceConfig.Source picks one:
//
//   - synthetic: a sample of a sparse random Markov chain (Markov) whose entropy rate is known
//     exactly, so a trained loss can be compared with the best achievable one.
//   - files: the text files matching a glob, sorted by path.
//   - goroot: the non-test .go files of the Go toolchain's src tree (testdata excluded), sorted
//     by path: a real corpus of about 70M bytes wherever cbs can be built.
//   - npy: an exact token array, a 1-D stream or [N, L] sequences.
//   - tokens: a token set, the shards and index that Tokenize (`cbs data tokenize`) writes from
//     text files under the rules of the text sources below. Its tokens are read from the files
//     window by window and never held in memory, so a corpus larger than memory trains with
//     memory that does not grow with it; the split, the order, replicas, the fingerprint and
//     the unigram entropy are those of the same tokens held in memory.
//
// Text sources join their documents as doc1 EOS doc2 EOS ... docN EOS, without BOS. A file whose
// bytes repeat an earlier one's in that order (a copy, a symlink, a vendored package, a table
// generated per platform) is left out and counted in Info.DuplicatesDropped: each content has one
// position in the stream, so no text is evaluated at one position and trained on at another. A
// document can still straddle the edge of an eval block, its text on one side of the edge
// trained on and on the other evaluated. With a cache directory text sources are tokenized once
// and stored as a shard (see WriteShard for the layout), keyed by the sha256 of the names and
// contents of the files kept and the tokenizer name.
//
// A run that reads more training tokens than the training split holds sees the data again;
// RepeatWarning says so, with the number of epochs, and TrainTokens measures the split for a
// plan without tokenizing a byte-tokenized text source.
//
// A corpus's Fingerprint is a sha256 of the tokenizer name and the exact token stream, for run
// manifests. Tokenizers other than "byte" register themselves with RegisterTokenizer; "gpt2"
// lives in package cbs/data/bpe. A tokenizer named by the path of a Hugging Face tokenizer.json
// (Qwen2's and Qwen3's byte-level BPE, for one) is loaded by package cbs/data/hftok; its name is
// "hf-" and a hash of the file, and its EOS, the document separator, is the file's
// <|endoftext|> where it has one (package hftok says how each special id is chosen).
package data
