package model

import (
	"fmt"
	"sync/atomic"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// Stepper runs Forward against caches that stay on the device: one buffer
// per layer and kind, [rows, capacity, width], donated to each step so the
// backend can update it in place. A step feeds T new tokens to every row
// (decode, T = 1) or to one row (a prefill chunk); each writes its keys into
// the cache slots of its positions and returns the logits of one position per
// row. The engine builds continuous batching on this; the model's tests use
// it to check cached decode against prefill.
type Stepper struct {
	m        *Model
	backend  compute.Backend
	opts     Options
	rows     int
	capacity int
	perLayer int
	caches   []*tensors.Tensor // layer-major: [latent | rope key], [index key]

	all, one  *gm.Exec                // every row; one dynamic row
	chain     *gm.Exec                // greedy steps fed from the device (Chain), built on first use
	samplers  map[string]*gm.Exec     // steps that draw (ChainSample), by truncation and alternatives, built on first use
	loops     map[string]*gm.Exec     // chains as one program, by kind and step count (Options.DeviceLoop)
	compiles  map[string]*loopCompile // loops compiling or compiled in the background, by kind and shape
	compiling chan struct{}           // held by the one loop compiling in the background
	built     atomic.Int64            // loop programs built
	looped    int64                   // decode steps run inside device loops
	copyRow   *graph.Exec             // CopyRow's program, built on first use
	saveRows  map[int]*graph.Exec     // SaveRow's programs, by slots
	loadRows  map[int]*graph.Exec     // LoadRow's programs, by slots
	nRoutes   int
	pending   *tensors.Tensor // the last step's routes, freed by the next step
}

// StepResult is what a step returns.
type StepResult struct {
	Logits []float32 // [rows or 1, V]: the logits at each row's `last` position
	TopK   [][]int32 // per layer, [rows or 1, T, k'], with Options.CaptureTopK
	K      int       // k' of TopK

	routes *tensors.Tensor // [L_moe, rows or 1, T, K], still on the device
	copied [][]int32
}

// Routes returns, per MoE layer, the routed expert ids [rows or 1, T, K] of
// the step's tokens. They stay on the device until asked for, because each
// device-to-host copy waits for the device and only RL needs them. Ask
// before the stepper's next step, which frees them.
func (r *StepResult) Routes() [][]int32 {
	if r.copied != nil || r.routes == nil {
		return r.copied
	}
	if !r.routes.Ok() {
		panic("model: StepResult.Routes called after the stepper's next step freed them")
	}
	r.copied = unstack(r.routes)
	return r.copied
}

// NewStepper allocates zeroed caches for rows sequences of up to capacity
// tokens. Only the boolean fields of opts apply.
func (m *Model) NewStepper(backend compute.Backend, rows, capacity int, opts Options) (s *Stepper, err error) {
	defer catch(&err, "stepper")
	if rows < 1 || capacity < 1 {
		return nil, fmt.Errorf("stepper: rows %d and capacity %d must be positive", rows, capacity)
	}
	opts.Segments, opts.Routes = nil, nil
	s = &Stepper{m: m, backend: backend, opts: opts, perLayer: 1}
	if m.Config.HasIndexer() {
		s.perLayer = 2
	}
	s.caches = s.zeroCaches(rows, capacity)
	s.rows, s.capacity = rows, capacity
	if s.all, err = s.newExec(s.stepAll); err != nil {
		return nil, err
	}
	s.one, err = s.newExec(s.stepOne)
	return s, err
}

// newExec makes an executor of fn over the model's store that keeps every
// program it compiles, one per shape. GoMLX keeps 32 and then refuses to
// compile another; the engine's shapes are few (rows and capacity in powers
// of two, prefill chunks of a few sizes) but more than 32 over a server's
// life.
func (s *Stepper) newExec(fn func(*gm.Scope, []*graph.Node) []*graph.Node) (*gm.Exec, error) {
	e, err := gm.NewExec(s.backend, s.m.Store, fn)
	if err != nil {
		return nil, err
	}
	return e.SetMaxCache(-1), nil
}

// Rows and Capacity are the cache's current shape.
func (s *Stepper) Rows() int     { return s.rows }
func (s *Stepper) Capacity() int { return s.capacity }

// CacheBytes is the device memory the caches hold.
func (s *Stepper) CacheBytes() int64 { return CacheBytes(s.m, s.rows, s.capacity) }

// CacheBytes is the memory of caches for rows × capacity tokens.
func CacheBytes(m *Model, rows, capacity int) int64 {
	dt := ComputeDType(m.Store.RootScope())
	return int64(rows) * int64(capacity) * int64(m.Config.CacheWidth()) * int64(m.Config.NumHiddenLayers) * int64(dt.Size())
}

func (s *Stepper) widths() []int {
	c := s.m.Config
	w := []int{c.KVLoRARank + c.QKRopeHeadDim}
	if s.perLayer == 2 {
		w = append(w, c.IndexHeadDim)
	}
	return w
}

// cacheDType is the caches' dtype. Where bitcasts are free (backends with
// DynamicUpdateSlice: XLA) caches hold words, the bits of the compute dtype
// as integers, so that a step's write (a scatter or DynamicUpdateSlice)
// takes the donated buffer itself as its operand. XLA copied float caches
// that batched steps scattered into through a bitcast: every cache, twice a
// step (5.6 GB a step at batch 8 and 32K on the H200).
func (s *Stepper) cacheDType() dtypes.DType {
	dt := ComputeDType(s.m.Store.RootScope())
	if s.backend.Capabilities().Operations[compute.OpTypeDynamicUpdateSlice] {
		dt, _ = wordDType(dt)
	}
	return dt
}

// zeroCaches allocates zeroed caches (cacheDType).
func (s *Stepper) zeroCaches(rows, capacity int) []*tensors.Tensor {
	dt := s.cacheDType()
	var cs []*tensors.Tensor
	for range s.m.Config.NumHiddenLayers {
		for _, w := range s.widths() {
			cs = append(cs, tensors.FromShape(shapes.Make(dt, rows, capacity, w)))
		}
	}
	return cs
}

// layerCaches regroups flat cache nodes per layer.
func (s *Stepper) layerCaches(flat []*graph.Node) []LayerCache {
	cache := make([]LayerCache, s.m.Config.NumHiddenLayers)
	for i := range cache {
		c := flat[i*s.perLayer:]
		cache[i] = LayerCache{KV: c[0]}
		if s.perLayer == 2 {
			cache[i].IndexKey = c[1]
		}
	}
	return cache
}

func flatCaches(cs []LayerCache) []*graph.Node {
	var out []*graph.Node
	for _, c := range cs {
		out = append(out, c.KV)
		if c.IndexKey != nil {
			out = append(out, c.IndexKey)
		}
	}
	return out
}

// forward runs the model and lays out the outputs: logits at `last`, caches,
// routes, top-k.
func (s *Stepper) forward(scope *gm.Scope, tokens, pos, last *graph.Node, cache []LayerCache) ([]*graph.Node, []LayerCache) {
	opts := s.opts
	opts.LogitsAt = last
	out := Forward(scope, s.m.Config, tokens, pos, cache, opts)
	B := tokens.Shape().Dim(0)
	logits := graph.ConvertDType(graph.Reshape(out.Logits, B, s.m.Config.VocabSize), dtypes.Float32) // [B, V]
	// Per-layer results leave stacked, one transfer each kind: a device-to-host
	// copy costs tens of microseconds whatever its size, and a decode step
	// has a few milliseconds at most.
	if s.nRoutes != len(out.Routes) { // set by the first build; loops build in the background later
		s.nRoutes = len(out.Routes)
	}
	res := []*graph.Node{logits}
	if len(out.Routes) > 0 {
		res = append(res, graph.Stack(out.Routes, 0)) // [L_moe, B, T, K]
	}
	if s.opts.CaptureTopK && len(out.TopK) > 0 {
		res = append(res, graph.Stack(out.TopK, 0)) // [L, B, T, k']
	}
	return res, out.Cache
}

// The step's small inputs travel packed in one int32 tensor, [rows, 2T+1]:
// tokens, positions, then the `last` index (stepOne appends the row). Every
// host-to-device transfer is waited for before the step may start, and
// such a wait costs about as much as a whole decode step's kernels.
func packInputs(tokens, pos [][]int32, last []int32, extra ...int32) *tensors.Tensor {
	T := len(tokens[0])
	W := 2*T + 1 + len(extra)
	flat := make([]int32, 0, len(tokens)*W)
	for b := range tokens {
		flat = append(flat, tokens[b]...)
		flat = append(flat, pos[b]...)
		flat = append(flat, last[b])
		flat = append(flat, extra...)
	}
	return tensors.FromFlatDataAndDimensions(flat, len(tokens), W)
}

// unpackInputs splits packed [B, 2T+1+extra] into tokens [B, T], pos [B, T],
// last [B].
func unpackInputs(packed *graph.Node, extra int) (tokens, pos, last *graph.Node) {
	B, W := packed.Shape().Dim(0), packed.Shape().Dim(1)
	T := (W - 1 - extra) / 2
	tokens = graph.Slice(packed, graph.AxisRange(), graph.AxisRange(0, T))
	pos = graph.Slice(packed, graph.AxisRange(), graph.AxisRange(T, 2*T))
	last = graph.Reshape(graph.Slice(packed, graph.AxisRange(), graph.AxisElem(2*T)), B)
	return tokens, pos, last
}

// stepAll: in = packed [B, 2T+1], caches…
func (s *Stepper) stepAll(scope *gm.Scope, in []*graph.Node) []*graph.Node {
	tokens, pos, last := unpackInputs(in[0], 0)
	res, cache := s.forward(scope, tokens, pos, last, s.layerCaches(in[1:]))
	return append(flatCaches(cache), res...)
}

// stepOne: in = packed [1, 2T+2] (the row last), caches… — only that row's
// cache is read and written.
func (s *Stepper) stepOne(scope *gm.Scope, in []*graph.Node) []*graph.Node {
	g := in[0].Graph()
	tokens, pos, last := unpackInputs(in[0], 1)
	rowIdx := graph.Reshape(graph.Slice(in[0], graph.AxisRange(), graph.AxisElem(in[0].Shape().Dim(1)-1))) // []
	full := in[1:]
	rowFlat := make([]*graph.Node, len(full))
	// Backends with dynamic slices read and write the row in place; the Go
	// backend gathers it and writes it back by scatters (see overwrite).
	dynamic := g.Backend().Capabilities().Operations[compute.OpTypeDynamicUpdateSlice]
	row := graph.Reshape(rowIdx, 1, 1) // [1, 1]: Gather/Scatter index of one row
	zero := graph.ScalarZero(g, dtypes.Int32)
	start := []*graph.Node{rowIdx, zero, zero}
	for i, c := range full {
		if dynamic {
			dims := c.Shape().Dimensions
			rowFlat[i] = graph.DynamicSlice(c, start, []int{1, dims[1], dims[2]}) // [1, C, W]
		} else {
			rowFlat[i] = graph.Gather(c, row) // [1, C, W]
		}
	}
	res, cache := s.forward(scope, tokens, pos, last, s.layerCaches(rowFlat))
	updated := flatCaches(cache)
	for i, c := range full {
		if dynamic {
			updated[i] = graph.DynamicUpdateSlice(c, updated[i], start)
		} else {
			updated[i] = overwrite(c, row, updated[i], rowFlat[i], writeZeroAdd)
		}
	}
	return append(updated, res...)
}

// Step feeds tokens [rows][T] at positions [rows][T] to every row; last[b]
// picks the position (index into T) whose logits row b returns. Rows with
// nothing to do still run: give them a position whose slot is overwritten
// before it is read (their next position).
func (s *Stepper) Step(tokens, pos [][]int32, last []int32) (res *StepResult, err error) {
	defer catch(&err, "step")
	if len(tokens) != s.rows || len(pos) != s.rows || len(last) != s.rows {
		return nil, fmt.Errorf("step: %d token rows, %d position rows and %d last indices for %d rows", len(tokens), len(pos), len(last), s.rows)
	}
	T := len(tokens[0])
	for b := range tokens {
		if err := s.check(b, tokens[b], pos[b], last[b], T); err != nil {
			return nil, err
		}
	}
	return s.run(s.all, packInputs(tokens, pos, last))
}

// StepRow feeds tokens [T] at positions [T] to one row only (a prefill
// chunk) and returns the logits at index last.
func (s *Stepper) StepRow(row int, tokens, pos []int32, last int32) (res *StepResult, err error) {
	defer catch(&err, "step row")
	if row < 0 || row >= s.rows {
		return nil, fmt.Errorf("step row: row %d outside [0, %d)", row, s.rows)
	}
	if err := s.check(row, tokens, pos, last, len(tokens)); err != nil {
		return nil, err
	}
	packed := packInputs([][]int32{tokens}, [][]int32{pos}, []int32{last}, int32(row))
	return s.run(s.one, packed)
}

func (s *Stepper) check(row int, tokens, pos []int32, last int32, T int) error {
	if T == 0 || len(tokens) != T || len(pos) != T {
		return fmt.Errorf("row %d: %d tokens and %d positions, want %d (> 0)", row, len(tokens), len(pos), T)
	}
	if last < 0 || int(last) >= T {
		return fmt.Errorf("row %d: last index %d outside [0, %d)", row, last, T)
	}
	for t, p := range pos {
		if p < 0 || int(p) >= s.capacity {
			return fmt.Errorf("row %d: position %d is outside the cache capacity %d", row, p, s.capacity)
		}
		if id := tokens[t]; id < 0 || int(id) >= s.m.Config.VocabSize {
			return fmt.Errorf("row %d: token %d is outside the vocabulary [0, %d)", row, id, s.m.Config.VocabSize)
		}
	}
	return nil
}

// run executes with the caches donated and keeps the updated ones. Every
// other device buffer of the step is freed before it returns (the routes at
// the next step), not left to the garbage collector: the device allocator
// then sees the same requests in the same order each step and hands out the
// same addresses, which CUDA graphs need to replay without an update.
func (s *Stepper) run(exec *gm.Exec, packed *tensors.Tensor) (*StepResult, error) {
	defer packed.FinalizeAll()
	if s.pending != nil {
		s.pending.FinalizeAll()
		s.pending = nil
	}
	outs, err := s.execDonating(exec, packed)
	if err != nil {
		return nil, err
	}
	res := &StepResult{Logits: tensors.MustCopyFlatData[float32](outs[0])}
	outs[0].FinalizeAll()
	outs = outs[1:]
	if s.nRoutes > 0 {
		res.routes = outs[0]
		s.pending = outs[0]
		outs = outs[1:]
	}
	if len(outs) > 0 {
		res.TopK = unstack(outs[0])
		res.K = outs[0].Shape().Dim(-1)
		outs[0].FinalizeAll()
	}
	return res, nil
}

// execDonating runs exec on args followed by the caches, donated, keeps
// the updated caches (the first outputs) and returns the other outputs. On
// an error the donated caches are gone, and the stepper starts afresh.
func (s *Stepper) execDonating(exec *gm.Exec, args ...any) ([]*tensors.Tensor, error) {
	for _, c := range s.caches {
		d, err := graph.DonateTensorBuffer(c, s.backend, 0)
		if err != nil {
			return nil, err
		}
		args = append(args, d)
	}
	outs, err := exec.Exec(args...)
	if err != nil {
		s.caches = s.zeroCaches(s.rows, s.capacity)
		return nil, err
	}
	n := len(s.caches)
	s.caches = outs[:n]
	return outs[n:], nil
}

// unstack copies t [L, …] int32 to the host in one transfer and splits it
// along its first axis.
func unstack(t *tensors.Tensor) [][]int32 {
	flat := tensors.MustCopyFlatData[int32](t)
	L := t.Shape().Dim(0)
	n := len(flat) / L
	out := make([][]int32, L)
	for l := range out {
		out[l] = flat[l*n : (l+1)*n : (l+1)*n]
	}
	return out
}

// Resize changes the number of rows and the capacity, keeping the first
// min(rows) rows and min(capacity) slots of every cache on the device.
func (s *Stepper) Resize(rows, capacity int) (err error) {
	defer catch(&err, "resize")
	if rows < 1 || capacity < 1 {
		return fmt.Errorf("resize: rows %d and capacity %d must be positive", rows, capacity)
	}
	if rows == s.rows && capacity == s.capacity {
		return nil
	}
	exec, err := graph.NewExec(s.backend, func(in []*graph.Node) []*graph.Node {
		out := make([]*graph.Node, len(in))
		for i, c := range in {
			dims := c.Shape().Dimensions
			c = graph.Slice(c, graph.AxisRange(0, min(rows, dims[0])), graph.AxisRange(0, min(capacity, dims[1])), graph.AxisRange())
			zero := graph.ScalarZero(c.Graph(), c.DType())
			out[i] = graph.Pad(c, zero,
				compute.PadAxis{End: max(0, rows-dims[0])}, compute.PadAxis{End: max(0, capacity-dims[1])})
		}
		return out
	})
	if err != nil {
		return err
	}
	defer exec.Finalize()
	args := make([]any, len(s.caches))
	for i, c := range s.caches {
		args[i] = c
	}
	outs, err := exec.Exec(args...)
	if err != nil {
		return err
	}
	for _, c := range s.caches {
		c.FinalizeAll()
	}
	s.caches, s.rows, s.capacity = outs, rows, capacity
	return nil
}

// CopyRow copies row from's cache over row to's: to compact a batch, or to
// give a new sequence the cached prefix it shares with another. The rows
// are inputs, so one program serves every pair. On an error the caches
// are gone, as after a failed step.
func (s *Stepper) CopyRow(from, to int) (err error) {
	defer catch(&err, "copy row")
	if from < 0 || from >= s.rows || to < 0 || to >= s.rows {
		return fmt.Errorf("copy row %d to %d: outside [0, %d)", from, to, s.rows)
	}
	if s.copyRow == nil {
		s.copyRow, err = graph.NewExec(s.backend, func(in []*graph.Node) []*graph.Node {
			src, dst, cs := graph.Reshape(in[0], 1, 1), graph.Reshape(in[1], 1, 1), in[2:]
			out := make([]*graph.Node, len(cs))
			for i, c := range cs {
				out[i] = graph.ScatterUpdate(c, dst, graph.Gather(c, src), true, true)
			}
			return out
		})
		if err != nil {
			return err
		}
		s.copyRow.SetMaxCache(-1) // a program per cache shape, as newExec's
	}
	// The caches are donated, as to a step: the scatter can then write the
	// one row in place instead of a new copy of every row.
	args := []any{tensors.FromScalar(int32(from)), tensors.FromScalar(int32(to))}
	for _, c := range s.caches {
		d, err := graph.DonateTensorBuffer(c, s.backend, 0)
		if err != nil {
			return err
		}
		args = append(args, d)
	}
	outs, err := s.copyRow.Exec(args...)
	if err != nil {
		s.caches = s.zeroCaches(s.rows, s.capacity) // the donated caches are gone
		return err
	}
	s.caches = outs
	return nil
}

// Close releases the executors and the caches.
func (s *Stepper) Close() {
	if s.pending != nil {
		s.pending.FinalizeAll()
	}
	s.all.Finalize()
	s.one.Finalize()
	if s.chain != nil {
		s.chain.Finalize()
	}
	for _, e := range s.samplers {
		e.Finalize()
	}
	for _, e := range s.loops {
		e.Finalize() // waits for what compiles in the background
	}
	if s.copyRow != nil {
		s.copyRow.Finalize()
	}
	for _, e := range s.saveRows {
		e.Finalize()
	}
	for _, e := range s.loadRows {
		e.Finalize()
	}
	for _, c := range s.caches {
		c.FinalizeAll()
	}
}
