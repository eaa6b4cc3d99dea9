package sweep

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"cbs/branch"
)

// board shows the running branches: on a terminal, one redrawn line each (tokens, loss,
// tokens/s, ETA); otherwise a plain line per branch every logEvery.
type board struct {
	mu       sync.Mutex
	w        io.Writer
	terminal bool
	rows     map[string]branch.Progress
	lastLog  map[string]time.Time
	drawn    int
	done     chan struct{}
}

const logEvery = 10 * time.Second

func newBoard(w io.Writer, terminal bool) *board {
	b := &board{w: w, terminal: terminal, rows: map[string]branch.Progress{}, lastLog: map[string]time.Time{}, done: make(chan struct{})}
	if terminal {
		go func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					b.mu.Lock()
					b.redraw()
					b.mu.Unlock()
				case <-b.done:
					return
				}
			}
		}()
	}
	return b
}

func (b *board) stop() {
	close(b.done)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.terminal {
		b.redraw()
	}
}

func (b *board) update(p branch.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rows[p.ID] = p
	if !b.terminal && (time.Since(b.lastLog[p.ID]) >= logEvery || p.Step == p.Steps) {
		b.lastLog[p.ID] = time.Now()
		fmt.Fprintln(b.w, line(p))
	}
}

func (b *board) finish(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.terminal {
		b.redraw()
	}
	delete(b.rows, id)
}

func (b *board) logf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.clear()
	fmt.Fprintf(b.w, format+"\n", args...)
}

// logWriter passes a branch's log lines through the board, so they do not tear the bars.
func (b *board) logWriter() io.Writer { return boardWriter{b} }

type boardWriter struct{ b *board }

func (w boardWriter) Write(p []byte) (int, error) {
	w.b.logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (b *board) clear() {
	if b.terminal && b.drawn > 0 {
		fmt.Fprintf(b.w, "\x1b[%dA\x1b[J", b.drawn)
		b.drawn = 0
	}
}

func (b *board) redraw() {
	b.clear()
	ids := make([]string, 0, len(b.rows))
	for id := range b.rows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		fmt.Fprintln(b.w, line(b.rows[id]))
	}
	b.drawn = len(ids)
}

func line(p branch.Progress) string {
	frac := float64(p.Tokens) / float64(p.Budget)
	const width = 20
	n := int(frac * width)
	bar := strings.Repeat("#", n) + strings.Repeat(".", width-n)
	// A branch at its budget is done: its last line says so rather than "ETA 0s".
	eta := "ETA ?"
	switch {
	case p.Tokens >= p.Budget:
		eta = "done"
	case p.TokensPerS > 0:
		eta = "ETA " + (time.Duration(float64(p.Budget-p.Tokens)/p.TokensPerS) * time.Second).Round(time.Second).String()
	}
	eval := ""
	if !math.IsNaN(p.EvalLoss) {
		eval = fmt.Sprintf(" eval %.4f", p.EvalLoss)
	}
	return fmt.Sprintf("%-12s [%s] %s/%s loss %.4f%s %6.0f tok/s %s", p.ID, bar,
		branch.Tokens(p.Tokens).Human(), branch.Tokens(p.Budget).Human(), p.TrainLoss, eval, p.TokensPerS, eta)
}
