package cpu

import (
	"sync"
	"sync/atomic"
)

// pool runs tasks on up to threads goroutines. Work is always cut into the same tasks whatever
// the thread count, and every task writes only its own outputs, so results are bit-identical for
// any number of threads.
type pool struct{ threads int }

// run calls f(i) for every task i in [0, n).
func (p pool) run(n int, f func(i int)) {
	if p.threads <= 1 || n <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	workers := min(p.threads, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	work := func() {
		for {
			i := int(next.Add(1) - 1)
			if i >= n {
				return
			}
			f(i)
		}
	}
	wg.Add(workers - 1)
	for w := 1; w < workers; w++ {
		go func() { defer wg.Done(); work() }()
	}
	work()
	wg.Wait()
}

// chunks is the number of tasks of at most size items covering n items.
func chunks(n, size int) int { return (n + size - 1) / size }

// span returns the item range of task i.
func span(i, size, n int) (lo, hi int) { return i * size, min((i+1)*size, n) }

// scratch is a reusable float32 buffer. The backend may be shared by models running
// concurrently, so buffers come from a sync.Pool rather than fields of the backend.
type scratch struct{ buf []float32 }

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// getScratch returns a buffer of n elements with arbitrary contents; putScratch returns it.
func getScratch(n int) *scratch {
	s := scratchPool.Get().(*scratch)
	if cap(s.buf) < n {
		s.buf = make([]float32, n)
	}
	s.buf = s.buf[:n]
	return s
}

func putScratch(s *scratch) { scratchPool.Put(s) }
