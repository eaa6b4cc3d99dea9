package cpu

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// checkRun runs n tasks on p and fails unless each ran exactly once.
func checkRun(t *testing.T, p *pool, n int) {
	t.Helper()
	counts := make([]atomic.Int32, n)
	p.run(n, func(i int) { counts[i].Add(1) })
	for i := range counts {
		if c := counts[i].Load(); c != 1 {
			t.Fatalf("threads %d, %d tasks: task %d ran %d times", p.threads, n, i, c)
		}
	}
}

func TestPoolRunsEveryTaskOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		p := newPool(threads)
		for _, n := range []int{0, 1, 2, 3, 17, 1000} {
			for range 50 {
				checkRun(t, p, n)
			}
		}
		p.stop()
		checkRun(t, p, 100) // a stopped pool still runs everything, on the caller
	}
}

// Models sharing a backend run concurrently: one run has the helpers, the others start
// goroutines of their own; a run inside a task does its tasks too.
func TestPoolConcurrentAndNestedRuns(t *testing.T) {
	p := newPool(2)
	defer p.stop()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				checkRun(t, p, 33)
			}
		})
	}
	wg.Wait()
	var inner atomic.Int32
	p.run(4, func(int) { p.run(5, func(int) { inner.Add(1) }) })
	if inner.Load() != 20 {
		t.Fatalf("nested runs ran %d inner tasks, want 20", inner.Load())
	}
}

// BenchmarkPoolRun times runs of 16 equal tasks of a dependent floating-point chain: with
// threads 2 a run should take half the time of threads 1 once the tasks outweigh waking a
// helper.
func BenchmarkPoolRun(b *testing.B) {
	var sink [16]float64
	for _, threads := range []int{1, 2} {
		p := newPool(threads)
		for _, work := range []int{1000, 10000, 100000} {
			b.Run(fmt.Sprintf("threads%d/chain%d", threads, work), func(b *testing.B) {
				for b.Loop() {
					p.run(16, func(i int) {
						x := 1.0
						for range work {
							x = x*1.0000001 + 1e-9
						}
						sink[i] = x
					})
				}
			})
		}
		p.stop()
	}
}
