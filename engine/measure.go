package engine

import (
	"fmt"
	"sort"
	"time"

	"github.com/dsv32/dsv32/model"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// Measurements behind `dsv32 bench`: decode step time at a position, chunked
// prefill time, and the device's copy bandwidth, from which each decode step
// gets its memory-bandwidth floor (bytes of weights and cache it must read).

// DecodeTiming is the cost of one decode step of B rows at position Pos.
type DecodeTiming struct {
	Batch, Pos, Steps int
	Dense             bool
	StepMS            float64 // median wall time of one step
	TokensPerSecond   float64 // Batch / step time
	WeightBytes       int64   // weights one step reads (experts actually routed to)
	CacheBytes        int64   // cache one step reads
}

// MeasureDecode times steps decode steps of batch rows at positions pos,
// pos+1, … after warm-up (compilation excluded). Cache contents do not change
// the work, so the cache is left as allocated.
func MeasureDecode(m *model.Model, backend compute.Backend, batch, pos, steps int, opts model.Options) (DecodeTiming, error) {
	dense := opts.Dense
	capacity := pos + steps + 8
	st, err := m.NewStepper(backend, batch, capacity, opts)
	if err != nil {
		return DecodeTiming{}, err
	}
	defer st.Close()
	tokens := make([][]int32, batch)
	p := make([][]int32, batch)
	last := make([]int32, batch)
	var times []float64
	var lastRes *model.StepResult
	for i := -2; i < steps; i++ { // two warm-up steps
		at := pos + max(i, 0)
		for b := range batch {
			tokens[b] = []int32{int32((b*7919 + at*31) % m.Config.VocabSize)}
			p[b] = []int32{int32(at)}
		}
		t0 := time.Now()
		res, err := st.Step(tokens, p, last)
		if err != nil {
			return DecodeTiming{}, err
		}
		if i >= 0 {
			times = append(times, time.Since(t0).Seconds()*1000)
			lastRes = res
		}
	}
	sort.Float64s(times)
	ms := times[len(times)/2]
	w, c := StepBytes(m, batch, pos+1, dense, lastRes.Routes())
	return DecodeTiming{Batch: batch, Pos: pos, Steps: steps, Dense: dense, StepMS: ms,
		TokensPerSecond: float64(batch) / ms * 1000, WeightBytes: w, CacheBytes: c}, nil
}

// ChainTiming is what MeasureChain measured.
type ChainTiming struct {
	StepMS  float64 // wall time per step of a compiled chain
	FirstMS float64 // wall time of the first chain of as many steps, compiling its programs
}

// MeasureChain times decoding of steps tokens per row at positions pos,
// pos+1, … by Stepper.Chain (a zero draw: greedy) or ChainSample (every row
// drawing as d says), each step fed from the device, and returns the wall
// time per step once compiled (what a decode step costs when the host does
// not sit between steps) and the first chain's wall time (what compiling
// costs the first request to chain).
func MeasureChain(m *model.Model, backend compute.Backend, batch, pos, steps int, d model.Draw, opts model.Options) (ChainTiming, error) {
	st, err := m.NewStepper(backend, batch, pos+steps+8, opts)
	if err != nil {
		return ChainTiming{}, err
	}
	defer st.Close()
	tokens := make([]int32, batch)
	p := make([]int32, batch)
	for b := range batch {
		tokens[b] = int32((b*7919 + pos*31) % m.Config.VocabSize)
		p[b] = int32(pos)
	}
	run := func(n int) (float64, error) {
		t0 := time.Now()
		if d.Temperature == 0 {
			_, err := st.Chain(tokens, p, n)
			return time.Since(t0).Seconds() * 1000, err
		}
		draws := make([]model.Draw, batch)
		for b := range draws {
			draws[b] = d
		}
		_, err := st.ChainSample(tokens, p, draws, 1, n)
		return time.Since(t0).Seconds() * 1000, err
	}
	// The first chain compiles. A device loop's program is made for its step
	// count, so the warm-up runs as many steps as the timed chain.
	var t ChainTiming
	if t.FirstMS, err = run(steps); err != nil {
		return ChainTiming{}, err
	}
	ms, err := run(steps)
	if err != nil {
		return ChainTiming{}, err
	}
	t.StepMS = ms / float64(steps)
	if opts.DeviceLoop && st.LoopedSteps() != 2*int64(steps) {
		// A timing of the host's chain must not pass for the loop's.
		return ChainTiming{}, fmt.Errorf("chains asked to loop on the device ran %d of %d steps in loops", st.LoopedSteps(), 2*steps)
	}
	return t, nil
}

// StepBytes counts what one decode step of batch rows over S keys must read:
// every weight except the embedding table and unused routed experts (routes,
// per MoE layer [batch·K], say which were used; nil assumes K per row), plus
// each row's indexer keys and its attended latents and rope keys.
func StepBytes(m *model.Model, batch, S int, dense bool, routes [][]int32) (weights, cache int64) {
	cfg := m.Config
	size := int64(model.ComputeDType(m.Store.RootScope()).Size())
	n := cfg.Count()
	expert := n.ExpertParams
	weights = (n.Total - n.RoutedExperts - int64(cfg.VocabSize*cfg.HiddenSize) + int64(batch*cfg.HiddenSize)) * size
	for l := range cfg.NumMoELayers() {
		used := min(batch*cfg.NumExpertsPerTok, cfg.NumRoutedExperts)
		if l < len(routes) {
			seen := map[int32]bool{}
			for _, e := range routes[l] {
				seen[e] = true
			}
			used = len(seen)
		}
		weights += int64(used) * expert * size
	}
	keys := int64(min(S, cfg.IndexTopK))
	if dense || !cfg.HasIndexer() {
		keys = int64(S)
	}
	perRow := keys * int64(cfg.KVLoRARank+cfg.QKRopeHeadDim)
	if cfg.HasIndexer() && !dense {
		perRow += int64(S) * int64(cfg.IndexHeadDim)
	}
	cache = int64(batch) * perRow * int64(cfg.NumHiddenLayers) * size
	return weights, cache
}

// MeasurePrefill times a chunked prefill of n tokens into one row (chunks of
// at most chunk tokens; the last may be shorter).
func MeasurePrefill(m *model.Model, backend compute.Backend, n, chunk int, opts model.Options) (ms float64, err error) {
	if n < 1 || chunk < 1 {
		return 0, fmt.Errorf("prefill of %d tokens in chunks of %d: both must be positive", n, chunk)
	}
	chunk = min(chunk, n)
	st, err := m.NewStepper(backend, 1, n+chunk, opts)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	step := func(at, size int) error {
		tokens := make([]int32, size)
		pos := make([]int32, size)
		for i := range tokens {
			tokens[i] = int32((at + i) * 7 % m.Config.VocabSize)
			pos[i] = int32(at + i)
		}
		_, err := st.StepRow(0, tokens, pos, int32(size-1))
		return err
	}
	// Compile both chunk shapes first: full chunks and the shorter last one.
	if err := step(0, chunk); err != nil {
		return 0, err
	}
	if r := n % chunk; r > 0 {
		if err := step(0, r); err != nil {
			return 0, err
		}
	}
	t0 := time.Now()
	for at := 0; at < n; at += chunk {
		if err := step(at, min(chunk, n-at)); err != nil {
			return 0, err
		}
	}
	return time.Since(t0).Seconds() * 1000, nil
}

// MeasureBandwidth times reading and writing a large buffer on the device
// (y = x + 1 over bytes of bfloat16) and returns bytes moved per second.
// Each run ends by reading one element of its output to the host, so the
// wall time covers the device's work whether or not execution waits for it
// (go-xla as released waits; an asynchronous build returns once queued), plus
// a small launch and copy overhead. Each run's output is the next run's donated
// input: the traffic is then one read and one write whether or not the
// backend aliases donated inputs (with aliasing but no donation, PJRT would
// first copy the input, and the probe would report half the bandwidth).
func MeasureBandwidth(backend compute.Backend, bytes int64) (float64, error) {
	n := int(bytes / 2)
	exec, err := graph.NewExec(backend, func(x *graph.Node) (y, first *graph.Node) {
		y = graph.AddScalar(x, 1)
		return y, graph.Slice(y, graph.AxisRange(0, 1)) // [1]: read back, it waits for y
	})
	if err != nil {
		return 0, err
	}
	defer exec.Finalize()
	x := tensors.FromShape(shapes.Make(dtypes.BFloat16, n))
	defer func() { x.FinalizeAll() }()
	var best float64
	for i := range 6 {
		d, err := graph.DonateTensorBuffer(x, backend, 0)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		out, err := exec.Exec(d)
		if err != nil {
			return 0, err
		}
		if err := readBack(out[1]); err != nil {
			return 0, err
		}
		dt := time.Since(t0).Seconds()
		out[1].FinalizeAll()
		x = out[0]
		if i > 0 && (best == 0 || dt < best) {
			best = dt
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("bandwidth: no timing")
	}
	return float64(2*bytes) / best, nil
}

// MeasureForward times one forward pass of n tokens (batch 1, no cache) after
// warm-up: the prefill a training step or a scorer runs.
func MeasureForward(m *model.Model, backend compute.Backend, n int, opts model.Options) (ms float64, err error) {
	exec, err := gm.NewExec(backend, m.Store, func(scope *gm.Scope, tokens, pos *graph.Node) *graph.Node {
		o := opts
		o.LogitsAt = graph.Const(tokens.Graph(), []int32{int32(n - 1)})
		return model.Forward(scope, m.Config, tokens, pos, nil, o).Logits
	})
	if err != nil {
		return 0, err
	}
	defer exec.Finalize()
	tokens := make([]int32, n)
	pos := make([]int32, n)
	for i := range tokens {
		tokens[i] = int32(i * 7 % m.Config.VocabSize)
		pos[i] = int32(i)
	}
	tt, pt := tensors.FromFlatDataAndDimensions(tokens, 1, n), tensors.FromFlatDataAndDimensions(pos, 1, n)
	var times []float64
	for i := range 4 {
		t0 := time.Now()
		out, err := exec.Exec(tt, pt)
		if err != nil {
			return 0, err
		}
		if err := readBack(out[0]); err != nil { // waits for the device, however execution returns
			return 0, err
		}
		out[0].FinalizeAll()
		if i > 0 {
			times = append(times, time.Since(t0).Seconds()*1000)
		}
	}
	sort.Float64s(times)
	return times[len(times)/2], nil
}

// readBack copies t to the host, which waits for the program that writes it.
func readBack(t *tensors.Tensor) error {
	return t.ConstBytes(func([]byte) {})
}
