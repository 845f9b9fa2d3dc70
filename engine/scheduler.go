package engine

import (
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dsv32/dsv32/model"
)

// The scheduler: one goroutine owns the model's Stepper (rows × capacity of
// cache on the device) and interleaves prefill chunks with decode steps.
// Shapes come from small fixed sets (rows and capacity in powers of two,
// prefill chunks of 16, 64, 256, … tokens), so XLA compiles few graphs.

const (
	minChunk    = 16  // smallest prefill chunk; every cache keeps this much slack
	minCapacity = 256 // smallest cache capacity
)

// capacityBucket rounds a slot count up to a power of two ≥ minCapacity.
func capacityBucket(n int) int {
	c := minCapacity
	for c < n {
		c *= 2
	}
	return c
}

// rowsBucket rounds a row count up to a power of two.
func rowsBucket(n int) int {
	r := 1
	for r < n {
		r *= 2
	}
	return r
}

// chunkBucket is the prefill chunk for remaining prompt tokens, given room
// slots left in the row's cache.
func chunkBucket(remaining, limit, room int) int {
	t := minChunk
	for t < remaining && t*4 <= limit && t*4 <= room {
		t *= 4
	}
	return t
}

// Stats describe the engine's current load and totals.
type Stats struct {
	Waiting, Running int   // queued and admitted generations
	Rows, Capacity   int   // the cache's shape
	CacheBytes       int64 // device memory the caches hold
	CacheBudget      int64
	PromptTokens     int64 // totals since start; prompt tokens prefilled
	ReusedTokens     int64 // prompt tokens taken from another row's cache instead (Config.PrefixReuse)
	StoredPrefixes   int   // prefixes kept in host memory (Config.PrefixStore)
	StoredBytes      int64 // the host memory they take
	StoreHits        int64 // requests that took their prefix from there
	WeightChanges    int64 // Engine.WeightsChanged calls
	GeneratedTokens  int64
	DecodeSteps      int64
	ChainedSteps     int64 // decode steps run inside chains (Config.ChainSteps)
	LoopedSteps      int64 // of those, steps run inside one loop on the device (Config.DeviceLoop)
	Requests         int64
}

type statsCounters struct {
	waiting, running, rows, capacity atomic.Int64
	cacheBytes                       atomic.Int64
	prompt, generated, steps, reqs   atomic.Int64
	reused                           atomic.Int64
	stored, storedBytes, storeHits   atomic.Int64
	chained, looped                  atomic.Int64
}

// Stats returns a snapshot.
func (e *Engine) Stats() Stats {
	c := &e.stats
	return Stats{
		Waiting: int(c.waiting.Load()), Running: int(c.running.Load()),
		Rows: int(c.rows.Load()), Capacity: int(c.capacity.Load()),
		CacheBytes: c.cacheBytes.Load(), CacheBudget: e.cfg.MemoryBudget,
		PromptTokens: c.prompt.Load(), ReusedTokens: c.reused.Load(), WeightChanges: e.weights.Load(), GeneratedTokens: c.generated.Load(),
		StoredPrefixes: int(c.stored.Load()), StoredBytes: c.storedBytes.Load(), StoreHits: c.storeHits.Load(),
		DecodeSteps: c.steps.Load(), ChainedSteps: c.chained.Load(), LoopedSteps: c.looped.Load(),
		Requests: c.reqs.Load(),
	}
}

type scheduler struct {
	e       *Engine
	st      *model.Stepper
	rows    []*seq // by cache row; nil = free
	waiting []*seq
	// left is, by cache row, what a free row's cache still holds from the
	// sequence that had it (Config.PrefixReuse).
	left []cached
	// store keeps leftovers on the host once their rows are taken
	// (Config.PrefixStore).
	store prefixStore
}

// cached is a cache row's valid prefix: the tokens at positions [0, n) and,
// if they were recorded, their routes, computed with the weights of
// Engine.WeightsChanged count weights.
type cached struct {
	tokens  []int32
	routes  [][][]int32
	weights int64
}

// held is what row i's cache holds that a new request may reuse: its
// running sequence's prefix, or what the last one left, if computed with
// the current weights.
func (s *scheduler) held(i int) cached {
	c := s.left[i]
	if r := s.rows[i]; r != nil {
		c = cached{tokens: r.tokens[:r.fed], weights: r.weights}
		if r.req.RecordRoutes {
			c.routes = r.routes
		}
	}
	if c.weights != s.e.weights.Load() {
		return cached{}
	}
	return c
}

func (e *Engine) loop() {
	defer e.wg.Done()
	s := &scheduler{e: e, store: prefixStore{budget: e.cfg.PrefixStore}}
	defer func() {
		s.store.close()
		for _, q := range append(s.waiting, s.rows...) {
			if q != nil {
				q.finish(FinishCancelled, ErrClosed)
			}
		}
		if s.st != nil {
			s.st.Close()
		}
	}()
	for {
		idle := len(s.waiting) == 0 && s.running() == 0
		if idle {
			select {
			case q := <-e.submit:
				s.enqueue(q)
			case <-e.quit:
				return
			}
		}
		// Take every submission that is already there.
	drain:
		for {
			select {
			case q := <-e.submit:
				s.enqueue(q)
			case <-e.quit:
				return
			default:
				break drain
			}
		}
		s.dropCancelled()
		if err := s.admit(); err != nil {
			s.failAll(err)
			continue
		}
		if err := s.follow(); err != nil {
			s.failAll(err)
			continue
		}
		if mixed, err := s.mixed(); err != nil {
			s.failAll(err)
			continue
		} else if !mixed {
			if err := s.prefillOne(); err != nil {
				s.failAll(err)
				continue
			}
			if err := s.decode(); err != nil {
				s.failAll(err)
				continue
			}
		}
		s.publish()
	}
}

func (s *scheduler) enqueue(q *seq) {
	s.e.stats.reqs.Add(1)
	s.waiting = append(s.waiting, q)
	s.publish()
}

func (s *scheduler) running() int {
	n := 0
	for _, q := range s.rows {
		if q != nil {
			n++
		}
	}
	return n
}

func (s *scheduler) publish() {
	c := &s.e.stats
	c.waiting.Store(int64(len(s.waiting)))
	c.running.Store(int64(s.running()))
	if s.st != nil {
		c.rows.Store(int64(s.st.Rows()))
		c.capacity.Store(int64(s.st.Capacity()))
		c.cacheBytes.Store(s.st.CacheBytes())
	}
	c.stored.Store(int64(len(s.store.entries)))
	c.storedBytes.Store(s.store.used)
}

// dropCancelled finishes generations whose caller went away.
func (s *scheduler) dropCancelled() {
	kept := s.waiting[:0]
	for _, q := range s.waiting {
		if q.ctx.Err() != nil {
			q.finish(FinishCancelled, nil)
		} else {
			kept = append(kept, q)
		}
	}
	s.waiting = kept
	for _, q := range s.rows {
		if q != nil && q.ctx.Err() != nil {
			q.finish(FinishCancelled, nil)
			s.release(q)
		}
	}
}

// release frees q's row, remembering what its cache holds.
func (s *scheduler) release(q *seq) {
	s.rows[q.row] = nil
	c := cached{tokens: q.tokens[:q.fed:q.fed], weights: q.weights}
	if q.req.RecordRoutes && len(q.routes) >= q.fed {
		c.routes = q.routes[:q.fed:q.fed]
	}
	s.left[q.row] = c
}

// admit moves waiting generations into free rows while the caches fit the
// budget, growing rows and capacity in buckets; it shrinks them when load drops.
func (s *scheduler) admit() error {
	for len(s.waiting) > 0 {
		q := s.waiting[0]
		free := s.freeRow(q)
		rows := len(s.rows)
		if free < 0 {
			if rows >= s.e.cfg.MaxBatch {
				break
			}
			rows = min(rowsBucket(rows+1), s.e.cfg.MaxBatch)
			free = len(s.rows)
		}
		need := q.need
		for _, r := range s.rows {
			if r != nil {
				need = max(need, r.need)
			}
		}
		capacity := capacityBucket(need)
		if s.st != nil {
			capacity = max(capacity, s.st.Capacity())
		}
		if model.CacheBytes(s.e.m, rows, capacity) > s.e.cfg.MemoryBudget {
			if s.running() == 0 {
				// Alone it fits one row (checked on submission): shrink first.
				if err := s.keepBeyond(1, capacityBucket(q.need)); err != nil {
					return err
				}
				if err := s.resize(1, capacityBucket(q.need)); err != nil {
					return err
				}
				continue
			}
			break // wait for rows to free up
		}
		if err := s.resize(rows, capacity); err != nil {
			return err
		}
		s.waiting = s.waiting[1:]
		q.row, q.weights = free, s.e.weights.Load()
		if err := s.keep(free, q); err != nil {
			return err
		}
		if err := s.reuse(q); err != nil {
			return err
		}
		s.rows[free], s.left[free] = q, cached{}
		s.lead(q)
	}
	if len(s.waiting) == 0 {
		return s.shrink()
	}
	return nil
}

// idleAt is where free row i may be written for n slots, by a step that
// runs every row: past what its cache still holds for reuse, which is cut
// short if those slots would not fit.
func (s *scheduler) idleAt(i, n int) int {
	c := &s.left[i]
	if p := s.st.Capacity() - n; len(c.tokens) > p {
		c.tokens = c.tokens[:max(p, 0)]
		if c.routes != nil {
			c.routes = c.routes[:len(c.tokens)]
		}
	}
	return len(c.tokens)
}

// freeRow picks a free row for q (−1: none): the one whose leftover shares
// the longest prefix with q's prompt, so that nothing is copied, else the
// one holding the least, so that other leftovers last.
func (s *scheduler) freeRow(q *seq) int {
	free, shared := -1, 0
	for i, r := range s.rows {
		if r != nil {
			continue
		}
		n := commonPrefix(q.req.Prompt, s.held(i).tokens)
		if free < 0 || n > shared || (n == shared && len(s.held(i).tokens) < len(s.held(free).tokens)) {
			free, shared = i, n
		}
	}
	return free
}

// reuse gives q, just placed in row q.row, the longest prefix of its prompt
// that another row's cache holds, running or left behind, if it is at least
// Config.PrefixReuse tokens: it copies that row over q's (unless it is q's
// own row's leftover) and starts q's prefill after it. The prompt's last
// token is always fed, for the logits of the first new token.
func (s *scheduler) reuse(q *seq) error {
	least := s.e.cfg.PrefixReuse
	prompt := q.req.Prompt
	if least < 0 || len(prompt)-1 < least {
		return nil
	}
	best, from := 0, -1
	var routes [][][]int32
	for i := range s.rows {
		c := s.held(i)
		n := commonPrefix(prompt[:len(prompt)-1], c.tokens)
		if q.req.RecordRoutes {
			n = min(n, len(c.routes)) // only positions whose routes are known
		}
		if n > best || (n == best && n > 0 && i == q.row) {
			best, from, routes = n, i, c.routes
		}
	}
	if s.e.cfg.PrefixStore >= 0 {
		e, n := s.store.best(prompt[:len(prompt)-1], q.req.RecordRoutes, q.weights, s.st.Capacity())
		if n > best && n >= least {
			if err := s.st.LoadRow(q.row, e.rc); err != nil {
				return err
			}
			s.store.touch(e)
			q.fed, q.cached = n, n
			if q.req.RecordRoutes {
				q.routes = append(q.routes[:0], e.routes[:n]...)
			}
			s.e.stats.reused.Add(int64(n))
			s.e.stats.storeHits.Add(1)
			return nil
		}
	}
	if best < least {
		return nil
	}
	if from != q.row {
		if err := s.st.CopyRow(from, q.row); err != nil {
			return err
		}
	}
	q.fed, q.cached = best, best
	if q.req.RecordRoutes {
		q.routes = append(q.routes[:0], routes[:best]...)
	}
	s.e.stats.reused.Add(int64(best))
	return nil
}

// keep copies what free row i's cache holds to the prefix store before the
// row is written over for next (nil: for nothing yet): unless next's prompt
// continues it, the store holds it already, or it is shorter than
// PrefixReuse would take. What next will take from the store counts as
// just used, so making room does not evict it.
func (s *scheduler) keep(i int, next *seq) error {
	least := s.e.cfg.PrefixReuse
	if s.e.cfg.PrefixStore < 0 || least < 0 || i >= len(s.rows) || s.rows[i] != nil {
		return nil
	}
	var prompt []int32
	if next != nil {
		prompt = next.req.Prompt
		if e, n := s.store.best(prompt[:len(prompt)-1], next.req.RecordRoutes, next.weights, s.st.Capacity()); n >= least {
			s.store.touch(e)
		}
	}
	c := s.held(i)
	if len(c.tokens) < max(least, 1) || commonPrefix(prompt, c.tokens) == len(c.tokens) || s.store.holds(c) {
		return nil
	}
	rc, err := s.st.SaveRow(i, len(c.tokens))
	if err != nil {
		return err
	}
	s.store.add(c, rc)
	return nil
}

// keepBeyond keeps, before the caches shrink to rows × capacity, what the
// free rows that go and the slots that go hold.
func (s *scheduler) keepBeyond(rows, capacity int) error {
	for i := range s.rows {
		if i >= rows || len(s.left[i].tokens) > capacity {
			if err := s.keep(i, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// lead makes q, just placed and given no cached prefix, follow the
// prefilling row whose prompt shares the longest prefix with q's (at least
// Config.PrefixReuse tokens, not fed yet): q feeds nothing until that row
// has fed them, then copies them (follow). So the samples of one prompt
// submitted together (a GRPO rollout) prefill it once.
func (s *scheduler) lead(q *seq) {
	least := s.e.cfg.PrefixReuse
	prompt := q.req.Prompt
	if least < 0 || q.fed > 0 || len(prompt)-1 < least {
		return
	}
	for _, r := range s.rows {
		if r == nil || r == q || r.lead != nil || !r.prefilling() || r.weights != q.weights || (q.req.RecordRoutes && !r.req.RecordRoutes) {
			continue
		}
		if n := commonPrefix(prompt[:len(prompt)-1], r.req.Prompt); n >= least && n > q.leadAt {
			q.lead, q.leadAt = r, n
		}
	}
}

// follow gives each row waiting on a leader the prefix once the leader has
// fed it; a row whose leader left (finished or cancelled) looks again for
// what the caches hold.
func (s *scheduler) follow() error {
	for _, q := range s.rows {
		if q == nil || q.lead == nil {
			continue
		}
		l := q.lead
		switch {
		case l.row < 0 || l.row >= len(s.rows) || s.rows[l.row] != l:
			q.lead, q.leadAt = nil, 0
			if err := s.reuse(q); err != nil {
				return err
			}
		case l.fed >= q.leadAt:
			if err := s.st.CopyRow(l.row, q.row); err != nil {
				return err
			}
			q.fed, q.cached = q.leadAt, q.leadAt
			if q.req.RecordRoutes {
				q.routes = append(q.routes[:0], l.routes[:q.fed]...)
			}
			s.e.stats.reused.Add(int64(q.fed))
			q.lead, q.leadAt = nil, 0
		}
	}
	return nil
}

// commonPrefix is the length of the longest common prefix of a and b.
func commonPrefix(a, b []int32) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// resize makes the stepper rows × capacity, keeping rows in place.
func (s *scheduler) resize(rows, capacity int) error {
	if s.st == nil {
		st, err := s.e.m.NewStepper(s.e.backend, rows, capacity, model.Options{Dense: s.e.cfg.Dense, NativeTopK: s.e.cfg.NativeTopK, DigitTopK: s.e.cfg.DigitTopK,
			DeviceLoop: s.e.cfg.DeviceLoop, LoopsInBackground: !s.e.cfg.WaitForLoops})
		if err != nil {
			return err
		}
		s.st = st
	} else if rows != s.st.Rows() || capacity != s.st.Capacity() {
		if err := s.st.Resize(rows, capacity); err != nil {
			return err
		}
	}
	for len(s.rows) < rows {
		s.rows = append(s.rows, nil)
		s.left = append(s.left, cached{})
	}
	s.rows, s.left = s.rows[:rows], s.left[:rows]
	for i, c := range s.left {
		if n := s.st.Capacity(); len(c.tokens) > n {
			s.left[i] = cached{tokens: c.tokens[:n], weights: c.weights} // the slots past the capacity are gone
			if c.routes != nil {
				s.left[i].routes = c.routes[:n]
			}
		}
	}
	return nil
}

// shrink compacts running rows to the front and halves rows or capacity
// while at most half of them is used.
func (s *scheduler) shrink() error {
	if s.st == nil {
		return nil
	}
	n := s.running()
	rows := rowsBucket(max(n, 1))
	need := 0
	for _, q := range s.rows {
		if q != nil {
			need = max(need, q.need)
		}
	}
	capacity := capacityBucket(need)
	if rows*2 > len(s.rows) && capacity*2 > s.st.Capacity() {
		return nil // not worth a copy
	}
	// Move rows at or beyond the new size into free rows below it.
	for i := rows; i < len(s.rows); i++ {
		q := s.rows[i]
		if q == nil {
			continue
		}
		to := -1 // the free row holding the least for reuse
		for j := range rows {
			if s.rows[j] == nil && (to < 0 || len(s.left[j].tokens) < len(s.left[to].tokens)) {
				to = j
			}
		}
		if to < 0 {
			return errors.New("engine: no free row to compact into")
		}
		if err := s.keep(to, nil); err != nil {
			return err
		}
		if err := s.st.CopyRow(i, to); err != nil {
			return err
		}
		s.rows[to], s.rows[i], q.row = q, nil, to
		s.left[to], s.left[i] = cached{}, cached{}
	}
	capacity = max(capacity, minCapacity)
	if err := s.keepBeyond(rows, capacity); err != nil {
		return err
	}
	return s.resize(rows, capacity)
}

// mixed runs one step in which every prefilling row feeds its next prompt
// chunk and every decoding row its next token, padded to a common chunk T:
// when prompts arrive together (a GRPO rollout), they are prefilled in one
// call instead of one call each. Padding sits at positions after each row's
// tokens, in slots written again before they are read. It reports false,
// doing nothing, when no row is prefilling or the step would exceed
// MixedTokens or a row's cache; prefillOne and decode run instead.
func (s *scheduler) mixed() (bool, error) {
	if s.e.cfg.MixedTokens < 0 {
		return false, nil
	}
	B, capacity := len(s.rows), 0
	if s.st != nil {
		capacity = s.st.Capacity()
	}
	remaining, room := 0, capacity
	for _, q := range s.rows {
		switch {
		case q == nil:
		case q.lead != nil:
			room = min(room, capacity-q.fed)
		case q.prefilling():
			remaining = max(remaining, len(q.req.Prompt)-q.fed)
			room = min(room, capacity-q.fed)
		default:
			room = min(room, capacity-q.fed)
		}
	}
	if remaining == 0 {
		return false, nil
	}
	// The chunk shrinks to fit the budget: two steps of 16 beat a call per row.
	T := chunkBucket(remaining, min(s.e.cfg.PrefillChunk, s.e.cfg.MixedTokens/B), room)
	if T > room || B*T > s.e.cfg.MixedTokens {
		return false, nil
	}
	tokens := make([][]int32, B)
	pos := make([][]int32, B)
	last := make([]int32, B)
	fed := make([]int, B) // tokens of row b that are real
	for b, q := range s.rows {
		tokens[b], pos[b] = make([]int32, T), make([]int32, T)
		var base int
		switch {
		case q == nil:
			base = s.idleAt(b, T)
		case q.lead != nil:
			base = q.fed // feeds nothing: its row is copied over once its leader has fed the prefix
		case q.prefilling():
			base = q.fed
			fed[b] = copy(tokens[b], q.req.Prompt[q.fed:])
		default:
			base = q.fed
			tokens[b][0], fed[b] = q.tokens[q.fed], 1
		}
		for i := range pos[b] {
			pos[b][i] = int32(base + i)
		}
		last[b] = int32(max(fed[b]-1, 0))
	}
	res, err := s.st.Step(tokens, pos, last)
	if err != nil {
		return true, err
	}
	s.e.stats.steps.Add(1)
	V := s.e.m.Config.VocabSize
	var draw []*seq
	var rowLogits [][]float32
	for b, q := range s.rows {
		if q == nil {
			continue
		}
		if q.req.RecordRoutes {
			q.routes = append(q.routes, splitRoutes(res.Routes(), B, T, fed[b], b)...)
		}
		wasPrefill := q.prefilling()
		q.fed += fed[b]
		if wasPrefill {
			s.e.stats.prompt.Add(int64(fed[b]))
			if q.prefilling() {
				continue
			}
		}
		draw = append(draw, q)
		rowLogits = append(rowLogits, res.Logits[b*V:(b+1)*V])
	}
	s.sampleAll(draw, rowLogits)
	return true, nil
}

// prefillOne feeds the next chunk of one prefilling row (the oldest).
func (s *scheduler) prefillOne() error {
	var q *seq
	for _, r := range s.rows {
		if r != nil && r.prefilling() && r.lead == nil && (q == nil || r.start.Before(q.start)) {
			q = r
		}
	}
	if q == nil {
		return nil
	}
	prompt := q.req.Prompt
	remaining := len(prompt) - q.fed
	T := chunkBucket(remaining, s.e.cfg.PrefillChunk, s.st.Capacity()-q.fed)
	n := min(T, remaining)
	tokens := make([]int32, T)
	pos := make([]int32, T)
	copy(tokens, prompt[q.fed:q.fed+n])
	for i := range pos {
		pos[i] = int32(q.fed + i) // padding runs on into slots the next tokens overwrite
	}
	res, err := s.st.StepRow(q.row, tokens, pos, int32(n-1))
	if err != nil {
		return err
	}
	if q.req.RecordRoutes {
		q.routes = append(q.routes, splitRoutes(res.Routes(), 1, T, n, 0)...)
	}
	q.fed += n
	s.e.stats.prompt.Add(int64(n))
	if !q.prefilling() {
		s.sample(q, res.Logits)
	}
	return nil
}

// decode runs one step for every row with a token to feed.
func (s *scheduler) decode() error {
	active := false
	for _, q := range s.rows {
		if q != nil && !q.prefilling() {
			active = true
		}
	}
	if !active {
		return nil
	}
	if k := s.chainable(); k > 1 {
		return s.chain(k)
	}
	B := len(s.rows)
	tokens := make([][]int32, B)
	pos := make([][]int32, B)
	last := make([]int32, B)
	for i, q := range s.rows {
		switch {
		case q == nil:
			tokens[i], pos[i] = []int32{0}, []int32{int32(s.idleAt(i, 1))}
		case q.prefilling():
			tokens[i], pos[i] = []int32{0}, []int32{int32(q.fed)} // the next chunk rewrites this slot
		default:
			tokens[i], pos[i] = []int32{q.tokens[q.fed]}, []int32{int32(q.fed)}
		}
	}
	res, err := s.st.Step(tokens, pos, last)
	if err != nil {
		return err
	}
	s.e.stats.steps.Add(1)
	V := s.e.m.Config.VocabSize
	var draw []*seq
	var rowLogits [][]float32
	for i, q := range s.rows {
		if q == nil || q.prefilling() {
			continue
		}
		if q.req.RecordRoutes {
			q.routes = append(q.routes, splitRoutes(res.Routes(), B, 1, 1, i)...)
		}
		q.fed++
		draw = append(draw, q)
		rowLogits = append(rowLogits, res.Logits[i*V:(i+1)*V])
	}
	s.sampleAll(draw, rowLogits)
	return nil
}

// chainable returns how many steps may run back to back on the device now
// (0 or 1: none): no running request is prefilling or, without the
// backend's TopK, samples, and no row's chain would pass
// its token budget or the cache. Requests still waiting after admit wait for
// a row or for memory, which only a finishing request frees; the budget cap
// means none finishes by length inside a chain, so only a stop token can
// make a waiting request wait for the chain's end.
func (s *scheduler) chainable() int {
	k := s.e.cfg.ChainSteps
	if k <= 1 {
		return 0
	}
	for _, q := range s.rows {
		if q == nil {
			continue
		}
		if q.prefilling() || (!s.e.cfg.NativeTopK && q.sampler.p.Temperature > 0) {
			// Without the backend's TopK (the Go backend, where "device" and
			// host are the same cores) a draw in the graph takes many small
			// ops, and the cut sorts the vocabulary: drawing on the host is
			// faster there. Greedy rows chain everywhere.
			return 0
		}
		// The chain's last step writes position fed+k−1 and yields the
		// (len(out)+k)-th token.
		k = min(k, q.maxTokens-len(q.out), s.st.Capacity()-q.fed)
	}
	if s.st.DeviceLoop() {
		k = loopSteps(k)
	}
	return k
}

// loopSteps rounds a chain's k steps down to a power of two when the chain
// runs as one loop on the device: each step count is a program of its own,
// so chains of up to ChainSteps steps compile at most log₂ ChainSteps
// (a one-step "chain" is an ordinary step).
func loopSteps(k int) int {
	if k < 1 {
		return k
	}
	return 1 << (bits.Len(uint(k)) - 1)
}

// chain runs k decode steps on the device (model.Stepper.Chain when every
// row is greedy and none asks for log-probabilities, ChainSample otherwise) and then gives each row its tokens
// in order. A row that finishes part-way drops the rest of its tokens; its
// cache row is free by then.
func (s *scheduler) chain(k int) error {
	B := len(s.rows)
	tokens := make([]int32, B)
	pos := make([]int32, B)
	draws := make([]model.Draw, B)
	sampled := false
	for i, q := range s.rows {
		if q == nil {
			pos[i] = int32(s.idleAt(i, k)) // a free row decodes token 0
			continue
		}
		tokens[i], pos[i] = q.tokens[q.fed], int32(q.fed)
		draws[i] = q.sampler.draw()
		draws[i].Routes, draws[i].Kept = q.req.RecordRoutes, q.req.RecordKept
		sampled = sampled || draws[i].Temperature > 0 || q.sampler.wantsLogprob() || q.req.RecordRoutes
	}
	var ids [][]Token
	var routes [][][][]int32 // [step][row]: the routes of the position the row fed
	looped := s.st.LoopedSteps()
	if sampled {
		drawn, err := s.st.ChainSample(tokens, pos, draws, int64(s.e.seed.Add(0x9e3779b97f4a7c15)), k)
		if err != nil {
			return err
		}
		for _, step := range drawn {
			row := make([]Token, B)
			fed := make([][][]int32, B)
			for b, d := range step {
				row[b] = Token{ID: d.ID, Logprob: d.Logprob, SampleLogprob: d.SampleLogprob, Kept: d.Kept}
				for _, a := range d.Top {
					row[b].Top = append(row[b].Top, TokenLogprob{ID: a.ID, Logprob: a.Logprob})
				}
				fed[b] = d.Routes
			}
			ids = append(ids, row)
			routes = append(routes, fed)
		}
	} else {
		greedy, err := s.st.Chain(tokens, pos, k)
		if err != nil {
			return err
		}
		for _, step := range greedy {
			row := make([]Token, B)
			for b, id := range step {
				row[b] = Token{ID: id}
			}
			ids = append(ids, row)
		}
	}
	s.e.stats.steps.Add(int64(k))
	s.e.stats.chained.Add(int64(k))
	s.e.stats.looped.Add(s.st.LoopedSteps() - looped)
	rows := slices.Clone(s.rows)
	for j, step := range ids {
		for i, q := range rows {
			if q == nil || s.rows[i] != q || q.ctx.Err() != nil {
				continue // free, finished earlier in the chain, or cancelled (dropped next)
			}
			if q.req.RecordRoutes {
				q.routes = append(q.routes, routes[j][i])
			}
			q.fed++
			s.accept(q, q.sampler.take(step[i]))
		}
	}
	return nil
}

// sample draws q's next token and finishes q if it is done.
func (s *scheduler) sample(q *seq, logits []float32) {
	s.accept(q, q.sampler.next(logits))
}

// sampleAll draws the next token of every q at once, on up to GOMAXPROCS
// cores: a draw reads the whole vocabulary (129,280 log-probabilities for
// V3.2), milliseconds a row, and each row's sampler is its own (its RNG,
// its scratch), so the tokens are those of drawing one row after another.
// The rows then take their tokens in order.
func (s *scheduler) sampleAll(qs []*seq, logits [][]float32) {
	toks := make([]Token, len(qs))
	if len(qs) == 1 {
		toks[0] = qs[0].sampler.next(logits[0])
	} else {
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range min(len(qs), runtime.GOMAXPROCS(0)) {
			wg.Go(func() {
				for i := int(next.Add(1) - 1); i < len(qs); i = int(next.Add(1) - 1) {
					toks[i] = qs[i].sampler.next(logits[i])
				}
			})
		}
		wg.Wait()
	}
	for i, q := range qs {
		s.accept(q, toks[i])
	}
}

// accept gives q its next token and finishes q if it is done.
func (s *scheduler) accept(q *seq, t Token) {
	s.e.stats.generated.Add(1)
	if f, done := q.accept(t); done {
		q.finish(f, nil)
		s.release(q)
	}
}

// splitRoutes takes routes [layer][B·T·K] and returns, for row b, the first
// n positions as [pos][layer][K].
func splitRoutes(routes [][]int32, B, T, n, b int) [][][]int32 {
	if len(routes) == 0 {
		return make([][][]int32, n)
	}
	K := len(routes[0]) / (B * T)
	out := make([][][]int32, n)
	for p := range n {
		out[p] = make([][]int32, len(routes))
		for l, r := range routes {
			at := (b*T + p) * K
			out[p][l] = append([]int32(nil), r[at:at+K]...)
		}
	}
	return out
}

// failAll ends every generation with err (the stepper's state is unknown).
func (s *scheduler) failAll(err error) {
	s.e.logger().Error("step failed", "err", err)
	err = fmt.Errorf("engine: %w", err)
	for i, q := range s.rows {
		if q != nil {
			q.finish(FinishCancelled, err)
			s.rows[i] = nil
		}
	}
	for _, q := range s.waiting {
		q.finish(FinishCancelled, err)
	}
	s.waiting = nil
	if s.st != nil {
		s.st.Close()
		s.st = nil
		s.rows, s.left = nil, nil
	}
}
