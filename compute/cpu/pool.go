package cpu

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pool runs tasks on the calling goroutine and up to threads-1 helper goroutines. Work is
// always cut into the same tasks whatever the thread count, and every task writes only its own
// outputs, so results are bit-identical for any number of threads.
//
// The helpers live as long as the pool and spin for a short while after each run before they
// sleep: a training step makes hundreds of runs a few hundred microseconds apart, and waking a
// sleeping thread took 50-85 us on the 2-vCPU machines measured, a helper that joined that late
// losing most of a short run (docs/performance.md).
type pool struct {
	threads int
	h       *helpers // nil when threads <= 1
}

func newPool(threads int) *pool {
	p := &pool{}
	p.resize(threads)
	return p
}

// resize stops the helpers and starts threads-1 new ones; not while a run is in progress.
func (p *pool) resize(threads int) {
	p.stop()
	p.threads, p.h = threads, nil
	if threads > 1 {
		p.h = startHelpers(threads - 1)
	}
}

// stop ends the helpers once they are idle; the pool then runs every task on the caller.
func (p *pool) stop() {
	if p.h != nil {
		p.h.stop()
	}
}

// run calls f(i) for every task i in [0, n).
func (p *pool) run(n int, f func(i int)) {
	if p.threads <= 1 || n <= 1 {
		for i := 0; i < n; i++ {
			f(i)
		}
		return
	}
	j := &job{n: n, f: f}
	if p.h == nil || !p.h.busy.CompareAndSwap(false, true) {
		// One run at a time uses the helpers; a concurrent one (models sharing the backend)
		// starts goroutines of its own.
		j.spawn(min(p.threads, n) - 1)
		return
	}
	p.h.post(j)
	j.work()
	// Helpers that joined are finishing their last task; the ones that did not join yet will
	// find no task left and must not be waited for.
	for j.active.Load() != 0 {
		spinPause()
	}
	// The job's closure may hold the backend; idle helpers must not keep it reachable.
	p.h.current.Store(nil)
	p.h.busy.Store(false)
}

// spawn runs the job on the caller and on extra new goroutines.
func (j *job) spawn(extra int) {
	var wg sync.WaitGroup
	for range extra {
		wg.Go(j.work)
	}
	j.work()
	wg.Wait()
}

// job is one run's tasks, handed out by an atomic counter. Each run has its own, so a helper
// that wakes after the run ended finds it exhausted rather than a later run's counters.
type job struct {
	n      int
	f      func(i int)
	next   atomic.Int64
	active atomic.Int32 // helpers inside work
}

func (j *job) work() {
	for {
		i := int(j.next.Add(1) - 1)
		if i >= j.n {
			return
		}
		j.f(i)
	}
}

// join runs the job's remaining tasks on a helper, if any are left.
func (j *job) join() {
	j.active.Add(1)
	if j.next.Load() < int64(j.n) {
		j.work()
	}
	j.active.Add(-1)
}

// helperSpin is how long a helper polls for the next run before it sleeps.
const helperSpin = 200 * time.Microsecond

// helpers are the goroutines of a pool. epoch counts posted jobs; a helper that sees it change
// joins the current job.
type helpers struct {
	busy     atomic.Bool
	epoch    atomic.Uint64
	current  atomic.Pointer[job]
	stopped  atomic.Bool
	sleeping atomic.Int32
	mu       sync.Mutex
	cond     *sync.Cond
}

func startHelpers(n int) *helpers {
	h := &helpers{}
	h.cond = sync.NewCond(&h.mu)
	for range n {
		go h.loop()
	}
	return h
}

func (h *helpers) post(j *job) {
	h.current.Store(j)
	h.epoch.Add(1)
	if h.sleeping.Load() > 0 {
		h.mu.Lock()
		h.cond.Broadcast()
		h.mu.Unlock()
	}
}

func (h *helpers) stop() {
	h.stopped.Store(true)
	h.epoch.Add(1)
	h.mu.Lock()
	h.cond.Broadcast()
	h.mu.Unlock()
}

func (h *helpers) loop() {
	seen := h.epoch.Load()
	for {
		seen = h.await(seen)
		if h.stopped.Load() {
			return
		}
		if j := h.current.Load(); j != nil {
			j.join()
		}
	}
}

// await returns the epoch once it differs from seen: polled for helperSpin, then asleep on
// the condition variable. The sleeping count is raised before the epoch is read again, and
// post reads it after raising the epoch, so no post is missed.
func (h *helpers) await(seen uint64) uint64 {
	deadline := time.Now().Add(helperSpin)
	for polls := 0; ; polls++ {
		if e := h.epoch.Load(); e != seen {
			return e
		}
		if polls&63 == 63 && time.Now().After(deadline) {
			break
		}
		spinPause()
	}
	h.mu.Lock()
	h.sleeping.Add(1)
	e := h.epoch.Load()
	for e == seen {
		h.cond.Wait()
		e = h.epoch.Load()
	}
	h.sleeping.Add(-1)
	h.mu.Unlock()
	return e
}

// spinPause yields the processor for a moment while polling, so a poller never keeps the
// goroutine it waits for off the CPU when there are fewer processors than goroutines.
func spinPause() { runtime.Gosched() }

// chunks is the number of tasks of at most size items covering n items.
func chunks(n, size int) int { return (n + size - 1) / size }

// span returns the item range of task i.
func span(i, size, n int) (lo, hi int) { return i * size, min((i+1)*size, n) }

// scratch is a reusable float32 buffer. The backend may be shared by models running
// concurrently, so buffers come from a sync.Pool rather than fields of the backend.
type scratch struct{ buf []float32 }

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// getScratch returns a buffer of n elements with arbitrary contents; putScratch returns it.
func getScratch(n int) *scratch { return getFrom(&scratchPool, n) }

func putScratch(s *scratch) { scratchPool.Put(s) }

// getFrom takes a buffer of n elements from p, growing it if it is short.
func getFrom(p *sync.Pool, n int) *scratch {
	s := p.Get().(*scratch)
	if cap(s.buf) < n {
		s.buf = make([]float32, n)
	}
	s.buf = s.buf[:n]
	return s
}
