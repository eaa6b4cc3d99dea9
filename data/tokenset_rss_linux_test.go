package data

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The memory measurement writes token sets of 200 MiB and 2 GiB and is skipped unless
// CBS_TEST_RSS=1. Each set is opened in a child process of its own, so the peak resident set
// size (VmHWM) of one does not hide the other's.
const (
	rssEnv      = "CBS_TEST_RSS"
	rssChildEnv = "CBS_TEST_RSS_CHILD" // the set the child opens, or "memory:N" for N tokens held in memory
	rssSeqLen   = 2048
	rssReads    = 4000
)

// rssReport is what a child measured, in KiB but for the times.
type rssReport struct {
	Tokens   int64   `json:"tokens"`
	Before   int64   `json:"before_kib"` // VmRSS before opening
	HWM      int64   `json:"hwm_kib"`    // peak resident set size
	RSS      int64   `json:"rss_kib"`    // resident set size at the end
	Anon     int64   `json:"anon_kib"`   // of which anonymous memory (the Go heap, stacks)
	File     int64   `json:"file_kib"`   // of which file-backed pages (the test binary)
	OpenSec  float64 `json:"open_s"`
	ReadSec  float64 `json:"read_s"`
	Checksum int64   `json:"checksum"`
}

// TestTokenSetMemory: a training process reading a token set holds memory that does not grow
// with the set: a 2 GiB set and a 200 MiB one give the same peak resident set size, well below
// either file, while the same 200 MiB of tokens held in memory cost their size and more.
func TestTokenSetMemory(t *testing.T) {
	if child := os.Getenv(rssChildEnv); child != "" {
		rssChild(t, child)
		return
	}
	if os.Getenv(rssEnv) != "1" {
		t.Skipf("writes 2.2 GiB to a temporary folder; set %s=1 to run", rssEnv)
	}
	base := t.TempDir()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(base, &fs); err != nil {
		t.Fatal(err)
	}
	if free := int64(fs.Bavail) * fs.Bsize; free < 3<<30 {
		t.Skipf("%s has %d MiB free; the measurement needs 3 GiB", base, free>>20)
	}
	sizes := []int64{100 << 20, 1 << 30} // uint16 tokens: 200 MiB and 2 GiB
	reports := map[int64]rssReport{}
	for _, n := range sizes {
		dir := filepath.Join(base, fmt.Sprint(n))
		start := time.Now()
		writeRandomSet(t, dir, n)
		var bytes int64
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if info, err := e.Info(); err == nil {
				bytes += info.Size()
			}
		}
		t.Logf("wrote %d tokens, %d MiB in %d shards, in %.1fs", n, bytes>>20, len(entries)-1, time.Since(start).Seconds())
		r := runRSSChild(t, dir)
		reports[n] = r
		t.Logf("token set of %5d MiB: peak RSS %4d MiB (before opening %d MiB; at the end %d MiB: %d MiB anonymous, %d MiB file-backed); open %.3fs, %d sequences read in %.2fs",
			bytes>>20, r.HWM>>10, r.Before>>10, r.RSS>>10, r.Anon>>10, r.File>>10, r.OpenSec, rssReads, r.ReadSec)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	mem := runRSSChild(t, fmt.Sprintf("memory:%d", sizes[0]))
	t.Logf("the same 200 MiB of tokens held in memory (FromTokens): peak RSS %d MiB (%d MiB anonymous at the end)", mem.HWM>>10, mem.Anon>>10)

	small, large := reports[sizes[0]], reports[sizes[1]]
	if d := large.HWM - small.HWM; d > 16<<10 || d < -16<<10 {
		t.Errorf("peak RSS %d MiB for 2 GiB, %d MiB for 200 MiB: it depends on the size of the set", large.HWM>>10, small.HWM>>10)
	}
	if large.HWM > 64<<10 {
		t.Errorf("peak RSS %d MiB reading a 2 GiB set", large.HWM>>10)
	}
}

// writeRandomSet writes n random byte-tokenizer tokens as a token set in dir, streaming.
func writeRandomSet(t *testing.T, dir string, n int64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := newTokenWriter(dir, ByteTokenizer{}, "byte", DefaultShardTokens)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(uint64(n), 1))
	buf := make([]int32, 1<<20)
	for left := n; left > 0; {
		k := min(int64(len(buf)), left)
		for i := range buf[:k] {
			buf[i] = int32(r.Uint32N(ByteVocab))
		}
		if err := w.write(buf[:k]); err != nil {
			t.Fatal(err)
		}
		left -= k
	}
	if _, err := w.finish(TokenIndex{}); err != nil {
		t.Fatal(err)
	}
}

func runRSSChild(t *testing.T, arg string) rssReport {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestTokenSetMemory$", "-test.v")
	cmd.Env = append(os.Environ(), rssChildEnv+"="+arg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	for line := range strings.SplitSeq(string(out), "\n") {
		if js, ok := strings.CutPrefix(strings.TrimSpace(line), "RSS "); ok {
			var r rssReport
			if err := json.Unmarshal([]byte(js), &r); err != nil {
				t.Fatal(err)
			}
			return r
		}
	}
	t.Fatalf("child printed no report:\n%s", out)
	return rssReport{}
}

// rssChild opens the corpus the way a training run does (Open, the unigram entropy it logs,
// the eval set), reads rssReads random training sequences and reports its memory.
func rssChild(t *testing.T, arg string) {
	var r rssReport
	r.Before = procStatus(t)["VmRSS"]
	start := time.Now()
	cfg := SourceConfig{SeqLen: rssSeqLen, EvalTokens: 1 << 20, Seed: 1}
	var c *Corpus
	var err error
	if n, ok := strings.CutPrefix(arg, "memory:"); ok {
		size, _ := strconv.ParseInt(n, 10, 64)
		tokens := make([]int32, size)
		rnd := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range tokens {
			tokens[i] = int32(rnd.Uint32N(ByteVocab))
		}
		c, err = FromTokens(cfg, tokens)
	} else {
		cfg.Source, cfg.Path = SourceTokens, arg
		c, err = Open(cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	_ = c.UnigramEntropy()
	for _, s := range c.EvalSeqs() {
		r.Checksum += int64(s[0])
	}
	r.OpenSec = time.Since(start).Seconds()
	start = time.Now()
	rnd := rand.New(rand.NewPCG(7, 7))
	cur := c.Cursor(0)
	buf := make([]int32, rssSeqLen)
	for range rssReads {
		cur.Next = rnd.Int64N(4 * c.NumTrainSeqs())
		cur.Read(buf)
		r.Checksum += int64(buf[rssSeqLen/2])
	}
	r.ReadSec = time.Since(start).Seconds()
	st := procStatus(t)
	r.Tokens, r.HWM, r.RSS, r.Anon, r.File = c.NumTokens(), st["VmHWM"], st["VmRSS"], st["RssAnon"], st["RssFile"]
	b, _ := json.Marshal(r)
	fmt.Printf("RSS %s\n", b)
}

// procStatus reads the kB fields of /proc/self/status.
func procStatus(t *testing.T) map[string]int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if v, found := strings.CutSuffix(strings.TrimSpace(v), " kB"); ok && found {
			out[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return out
}
