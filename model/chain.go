package model

import (
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// Chain decodes n greedy tokens in every row without the host between two
// steps. Row b starts from tokens[b] at position pos[b] (its newest token,
// not yet in the cache). Each step returns its argmax tokens and the next
// positions as a device tensor, and that tensor is the next step's input.
// So the host enqueues step i+1 before it reads step i's tokens. On a
// backend whose execution returns once the work is queued, the device then
// runs the steps back to back, and the host's launch cost hides behind them.
// out[i][b] is row b's token after step i.
func (s *Stepper) Chain(tokens, pos []int32, n int) (out [][]int32, err error) {
	defer catch(&err, "chain")
	if err := s.chainCheck(tokens, pos, n); err != nil {
		return nil, err
	}
	if s.chain == nil {
		if s.chain, err = s.newExec(s.chainStep); err != nil {
			return nil, err
		}
	}
	state := chainState(tokens, pos)
	defer func() { state.FinalizeAll() }()
	if s.loopable() {
		if out, ok, err := s.chainLoop(state, n); ok || err != nil {
			return out, err
		}
	}
	out = make([][]int32, 0, n)
	for i := range n {
		outs, err := s.execDonating(s.chain, state)
		if err != nil {
			return nil, err
		}
		if i > 0 { // step i-1's tokens, read while step i runs
			out = append(out, chainTokens(state))
		}
		state.FinalizeAll()
		state = outs[0]
	}
	return append(out, chainTokens(state)), nil
}

// chainCheck validates a chain's start and frees the last step's routes
// (a chain is the stepper's next step).
func (s *Stepper) chainCheck(tokens, pos []int32, n int) error {
	if len(tokens) != s.rows || len(pos) != s.rows {
		return fmt.Errorf("%d tokens and %d positions for %d rows", len(tokens), len(pos), s.rows)
	}
	if n < 1 {
		return fmt.Errorf("%d steps, want at least 1", n)
	}
	for b := range tokens {
		if err := s.check(b, tokens[b:b+1], []int32{pos[b]}, 0, 1); err != nil {
			return err
		}
		if last := int(pos[b]) + n - 1; last >= s.capacity {
			return fmt.Errorf("row %d would reach position %d, outside the cache capacity %d", b, last, s.capacity)
		}
	}
	if s.pending != nil {
		s.pending.FinalizeAll()
		s.pending = nil
	}
	return nil
}

// chainState is a chain's first input, [rows, 2]: token, position.
func chainState(tokens, pos []int32) *tensors.Tensor {
	flat := make([]int32, 0, 2*len(tokens))
	for b := range tokens {
		flat = append(flat, tokens[b], pos[b])
	}
	return tensors.FromFlatDataAndDimensions(flat, len(tokens), 2)
}

// chainStep: in = state [rows, 2] (token, position), caches… → caches…,
// state' [rows, 2] (the argmax token, position + 1).
func (s *Stepper) chainStep(scope *gm.Scope, in []*graph.Node) []*graph.Node {
	state := in[0]
	g := state.Graph()
	B := state.Shape().Dim(0)
	tokens := graph.Slice(state, graph.AxisRange(), graph.AxisElem(0)) // [B, 1]
	pos := graph.Slice(state, graph.AxisRange(), graph.AxisElem(1))    // [B, 1]
	last := graph.Zeros(g, shapes.Make(dtypes.Int32, B))
	res, cache := s.forward(scope, tokens, pos, last, s.layerCaches(in[1:]))
	next := graph.Reshape(graph.ArgMax(res[0], -1, dtypes.Int32), B, 1) // [B, 1]; ties: the first id
	return append(flatCaches(cache), graph.Concatenate([]*graph.Node{next, graph.AddScalar(pos, 1)}, 1))
}

// loopable reports whether Chain runs as one loop on the device
// (Options.DeviceLoop). It needs a backend with While whose loop body holds
// no closure of its own: GoMLX v0.28.2 makes every closure a child of the
// main function, so the sort behind TopK cannot sit in the body, and one-
// query steps must select by digits (or by radix select, without
// NativeTopK). Which backends can, CanLoop says.
func (s *Stepper) loopable() bool {
	return s.opts.DeviceLoop && (!s.opts.NativeTopK || s.opts.DigitTopK) && CanLoop(s.backend)
}

// CanLoop reports whether backend runs Options.DeviceLoop's loops: XLA
// (told by DynamicUpdateSlice; While itself is not asked for, as go-xla
// v0.4.1 implements it but leaves it out of its capabilities), or a backend
// with a DeviceLoops method that says so. The Go backend as released cannot:
// it compiles a closure before its graph passes rewire the closure's nodes,
// then misses them when it runs ("input … not computed yet").
// internal/testutil dresses it so that it can, for the tests.
func CanLoop(backend compute.Backend) bool {
	if b, ok := backend.(interface{ DeviceLoops() bool }); ok {
		return b.DeviceLoops()
	}
	c := backend.Capabilities()
	return c.Functions && c.Operations[compute.OpTypeDynamicUpdateSlice]
}

// DeviceLoop reports whether Chain and ChainSample run as one loop on the
// device: Options.DeviceLoop was asked for and this backend can run it.
// (ChainSample's truncated draws loop only with NativeTopK.)
func (s *Stepper) DeviceLoop() bool { return s.loopable() }

// LoopedSteps is how many decode steps this stepper has run inside device
// loops: what did run, where DeviceLoop says what may.
func (s *Stepper) LoopedSteps() int64 { return s.looped }

// LoopPrograms is how many device loop programs this stepper has built, one
// per kind, step count and cache shape.
func (s *Stepper) LoopPrograms() int64 { return s.built.Load() }

// WaitLoops waits for the device loops compiling in the background
// (Options.LoopsInBackground) and returns the first of their errors.
func (s *Stepper) WaitLoops() error {
	for _, k := range slices.Sorted(maps.Keys(s.compiles)) {
		c := s.compiles[k]
		if <-c.done; c.err != nil {
			return c.err
		}
	}
	return nil
}

// chainLoop runs Chain's n steps as one program (Options.DeviceLoop); ok is
// false while that program compiles in the background.
func (s *Stepper) chainLoop(state *tensors.Tensor, n int) (out [][]int32, ok bool, err error) {
	res, ok, err := s.runLoop(fmt.Sprintf("greedy/%d", n), n, func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
		return s.greedyLoop(scope, in, n)
	}, state)
	if !ok || err != nil {
		return nil, ok, err
	}
	flat := tensors.MustCopyFlatData[int32](res) // [n, rows, 1]
	res.FinalizeAll()
	out = make([][]int32, n)
	for i := range out {
		out[i] = flat[i*s.rows : (i+1)*s.rows]
	}
	return out, true, nil
}

// sampleLoop runs ChainSample's n steps as one program (Options.DeviceLoop);
// ok is false while that program compiles in the background.
func (s *Stepper) sampleLoop(carried []*tensors.Tensor, draws []Draw, kind sampleKind, n int) (out [][]ChainToken, ok bool, err error) {
	res, ok, err := s.runLoop(fmt.Sprintf("sampled/%d/%s", n, kind), n, func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
		return s.sampledLoop(scope, in, n, kind)
	}, carried...)
	if !ok || err != nil {
		return nil, ok, err
	}
	drawn := tensors.MustCopyFlatData[float32](res) // [n, rows, 3 + 2·top]
	res.FinalizeAll()
	out = make([][]ChainToken, n)
	step := len(drawn) / n
	for i := range out {
		out[i] = s.chainTokensDrawn(drawn[i*step:(i+1)*step], draws, kind)
	}
	return out, true, nil
}

// greedyLoop: in = state [rows, 2], caches… → caches…, tokens [n, rows, 1]:
// n chainSteps in one device loop.
func (s *Stepper) greedyLoop(scope *gm.Scope, in []*graph.Node, n int) []*graph.Node {
	rows := in[0].Shape().Dim(0) // not s.rows: the program may build in the background
	return s.deviceLoop(scope, in, 1, n, shapes.Make(dtypes.Int32, rows, 1),
		func(scope *gm.Scope, carried, caches []*graph.Node) ([]*graph.Node, []*graph.Node, *graph.Node) {
			outs := s.chainStep(scope, append(carried, caches...))
			next := outs[len(caches)] // [rows, 2]
			return outs[:len(caches)], []*graph.Node{next}, graph.Slice(next, graph.AxisRange(), graph.AxisElem(0))
		})
}

// sampledLoop: in = state [rows, 2], draws [rows, 7], RNG state, counts
// [rows, V] if penalized, keys [rows, 2] if seeded, caches… → caches…,
// drawn [n, rows, 3 + 2·top]: n sampleSteps in one device loop.
func (s *Stepper) sampledLoop(scope *gm.Scope, in []*graph.Node, n int, kind sampleKind) []*graph.Node {
	rows := in[0].Shape().Dim(0)
	return s.deviceLoop(scope, in, kind.carried(), n, shapes.Make(dtypes.Float32, rows, s.drawnWidth(kind)),
		func(scope *gm.Scope, carried, caches []*graph.Node) ([]*graph.Node, []*graph.Node, *graph.Node) {
			outs := s.sampleStep(scope, append(carried, caches...), kind)
			nc := len(caches)
			// The draws stay as they are; the state, the generator and the
			// counts move on.
			next := []*graph.Node{outs[nc], carried[1], outs[nc+1]}
			next = append(next, outs[nc+2:len(outs)-1]...) // counts and keys, as carried
			return outs[:nc], next, outs[len(outs)-1]
		})
}

// runLoop runs the device loop of this kind (its n steps; fn builds it on
// first use) on args and the caches, which it updates, and returns the
// steps' outputs. With Options.LoopsInBackground, a program not yet
// compiled for this shape starts compiling in the background and ok is
// false: the caller runs the steps another way and nothing was touched.
func (s *Stepper) runLoop(kind string, n int, fn func(*gm.Scope, []*graph.Node) []*graph.Node, args ...*tensors.Tensor) (_ *tensors.Tensor, ok bool, err error) {
	e := s.loops[kind]
	if e == nil {
		build := func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
			s.built.Add(1)
			return fn(scope, in)
		}
		if e, err = s.newExec(build); err != nil {
			return nil, false, err
		}
		if s.loops == nil {
			s.loops = map[string]*gm.Exec{}
		}
		s.loops[kind] = e
	}
	if s.opts.LoopsInBackground {
		if !s.loopReady(e, kind, args) {
			return nil, false, nil
		}
	}
	in := make([]any, len(args))
	for i, a := range args {
		in[i] = a
	}
	outs, err := s.execDonating(e, in...)
	if err != nil {
		return nil, false, err
	}
	s.looped += int64(n)
	return outs[0], true, nil
}

// loopCompile is a device loop's program compiling in the background.
type loopCompile struct {
	done chan struct{} // closed when compiled
	err  error
}

// loopReady reports whether e's program for args and the caches as they
// are now has compiled, and starts compiling it if nothing has. The program
// is built from the shapes alone (the greedy and sampled loops read no
// stepper field that Resize changes), so the stepper goes on meanwhile.
// One program compiles at a time, so a burst of new shapes does not take
// every core from the steps. A program that fails to compile is logged and
// never ready: its chains keep stepping from the host, and no request
// fails for it (WaitLoops returns the error).
func (s *Stepper) loopReady(e *gm.Exec, kind string, args []*tensors.Tensor) bool {
	key := fmt.Sprintf("%s %dx%d", kind, s.rows, s.capacity)
	c := s.compiles[key]
	if c == nil {
		var in []shapes.Shape
		for _, a := range args {
			in = append(in, a.Shape())
		}
		for _, x := range s.caches {
			in = append(in, x.Shape())
		}
		c = &loopCompile{done: make(chan struct{})}
		if s.compiles == nil {
			s.compiles = map[string]*loopCompile{}
		}
		s.compiles[key] = c
		if s.compiling == nil {
			s.compiling = make(chan struct{}, 1)
		}
		go func() {
			defer close(c.done)
			s.compiling <- struct{}{}
			defer func() { <-s.compiling }()
			start := time.Now()
			if _, err := e.Compile(in...); err != nil {
				c.err = fmt.Errorf("device loop %s: %w", key, err)
				slog.Warn("device loop not compiled; its chains step from the host", "err", c.err)
				return
			}
			slog.Debug("device loop compiled", "loop", key, "seconds", time.Since(start).Seconds())
		}()
	}
	select {
	case <-c.done:
		return c.err == nil
	default:
		return false
	}
}

// loopStep is one step of a device loop: the carried values and the caches
// in; the updated caches, the carried values for the next step and this
// step's output [rows, w] out.
type loopStep func(scope *gm.Scope, carried, caches []*graph.Node) (cachesOut, carriedOut []*graph.Node, out *graph.Node)

// deviceLoop runs step n times in one While: in = carried (k values)…,
// caches… → caches…, outputs [n, rows, w] (each step's out, of shape
// outShape). The loop carries the step counter, the carried values, the
// outputs so far, the caches and every weight: the weights enter the body as
// loop values passed on unchanged, so the body refers to no value outside
// it.
func (s *Stepper) deviceLoop(scope *gm.Scope, in []*graph.Node, k, n int, outShape shapes.Shape, step loopStep) []*graph.Node {
	g := in[0].Graph()
	var vars []*gm.Variable
	var weights []*graph.Node
	for v := range s.m.Store.IterVariables() {
		vars = append(vars, v)
		weights = append(weights, v.NodeValue(g))
	}
	// The loop's own constants are made with ConstTensor, which GoMLX does
	// not cache per graph (as it does Scalar and Zeros): a cached constant
	// made here would be what the closures get when they ask for the same
	// value, a value from outside them.
	accShape := shapes.Make(outShape.DType, append([]int{n}, outShape.Dimensions...)...)
	init := []*graph.Node{graph.ConstTensor(g, tensors.FromScalar(int32(0)))} // step
	init = append(init, in[:k]...)
	init = append(init, graph.ConstTensor(g, tensors.FromShape(accShape))) // outputs [n, rows, w]
	init = append(init, in[k:]...)
	nc := len(in) - k
	init = append(init, weights...)
	params := func(g *graph.Graph) []*graph.Node {
		ps := make([]*graph.Node, len(init))
		for i, x := range init {
			ps[i] = graph.Parameter(g, fmt.Sprintf("loop%d", i), x.Shape())
		}
		return ps
	}
	cond := graph.NewClosure(g, func(g *graph.Graph) []*graph.Node {
		return []*graph.Node{graph.LessThan(params(g)[0], graph.ConstTensor(g, tensors.FromScalar(int32(n))))}
	})
	body := graph.NewClosure(g, func(g *graph.Graph) []*graph.Node {
		ps := params(g)
		i, carried, acc, caches, ws := ps[0], ps[1:1+k], ps[1+k], ps[2+k:2+k+nc], ps[2+k+nc:]
		for j, v := range vars {
			v.SetNodeValue(ws[j])
		}
		cachesOut, carriedOut, out := step(scope, carried, caches)
		at := graph.Equal(graph.Iota(g, shapes.Make(dtypes.Int32, accShape.Dimensions...), 0), i) // [n, rows, w]: this step's slots
		acc = graph.Where(at, graph.BroadcastToShape(graph.ExpandAxes(out, 0), accShape), acc)
		next := append([]*graph.Node{graph.AddScalar(i, 1)}, carriedOut...)
		next = append(next, acc)
		next = append(next, cachesOut...)
		return append(next, ws...)
	})
	// The body pointed the weights at its own values; point them back.
	for j, v := range vars {
		v.SetNodeValue(weights[j])
	}
	final := graph.While(cond, body, init...)
	return append(final[2+k:2+k+nc], final[1+k])
}

// chainTokens copies a chain state's tokens to the host.
func chainTokens(state *tensors.Tensor) []int32 {
	flat := tensors.MustCopyFlatData[int32](state)
	ids := make([]int32, len(flat)/2)
	for b := range ids {
		ids[b] = flat[2*b]
	}
	return ids
}

// ChainToken is a token a chain drew on the device.
type ChainToken struct {
	ID int32
	// Logprob is log π(ID) under the model's own distribution (temperature 1).
	Logprob float32
	// SampleLogprob is its log-probability under the tempered distribution
	// it was drawn from (0 for a greedy row).
	SampleLogprob float32
	// Top are the row's Draw.Top likeliest tokens under the model's
	// distribution, in descending order (ties: lower id first).
	Top []Alternative
	// Routes[l] are the K experts MoE layer l routed the step's input token
	// (the one fed, not ID) to, with Draw.Routes.
	Routes [][]int32
	// Kept are the ids the draw's truncation kept, ascending, with
	// Draw.Kept, when it kept fewer than the whole vocabulary.
	Kept []int32
}

// Alternative is one of the likeliest tokens at a step (ChainToken.Top).
type Alternative struct {
	ID      int32
	Logprob float32
}

// MaxTop is the most alternatives a chain reports per token (Draw.Top), as
// OpenAI's top_logprobs allows.
const MaxTop = 20

// Draw is how a chain row draws its tokens (ChainSample).
type Draw struct {
	Temperature float32 // 0: greedy (the other fields are then ignored)
	TopK        int     // keep the TopK likeliest tokens (0: off)
	MinP        float32 // keep tokens with p ≥ MinP·p_max (0: off)
	TopP        float32 // keep the smallest prefix with mass ≥ TopP (0 or 1: off)
	Top         int     // report the Top likeliest tokens with each token (0–MaxTop), greedy rows too
	// Presence and Frequency penalise, when sampling, the tokens Counts says
	// the row generated before (and those the chain draws): the logits lose
	// Frequency·count + Presence for each, as OpenAI's penalties.
	Presence, Frequency float32
	Counts              map[int32]int
	// Seeded draws take their noise from Seed and the index of the token
	// (Drawn, the tokens the request drew before the chain) instead of the
	// chain's generator: the same tokens as the host's seeded sampler
	// (SeededGumbel), whatever else runs.
	Seeded bool
	Seed   uint64
	Drawn  int
	// Routes asks for each step's routed expert ids (ChainToken.Routes).
	Routes bool
	// Kept asks for the set each truncated draw kept (ChainToken.Kept).
	Kept bool
}

// penalises reports whether the row's draws are penalised.
func (d Draw) penalises() bool { return d.Temperature > 0 && (d.Presence != 0 || d.Frequency != 0) }

// seeded reports whether the row's noise comes from its seed.
func (d Draw) seeded() bool { return d.Temperature > 0 && d.Seeded }

// sampleKind is what a ChainSample program is made for: truncated draws
// (top-k, min-p, top-p), alternatives to report (top), penalties, seeds.
type sampleKind struct {
	truncated bool
	top       int
	penalized bool
	seeded    bool
	routes    bool
	kept      bool
}

func (k sampleKind) String() string {
	return fmt.Sprintf("%t/%d/%t/%t/%t/%t", k.truncated, k.top, k.penalized, k.seeded, k.routes, k.kept)
}

// carried is how many values a step of this kind carries to the next: the
// state, the draws, the generator, then the counts if penalized and the
// seeds' keys and draw indices if seeded.
func (k sampleKind) carried() int {
	n := 3
	if k.penalized {
		n++
	}
	if k.seeded {
		n++
	}
	return n
}

func (d Draw) truncates() bool {
	return d.Temperature > 0 && (d.TopK > 0 || d.MinP > 0 || (d.TopP > 0 && d.TopP < 1))
}

// ChainSample is Chain with each row drawing its tokens as draws[b] says:
// from softmax(logits / T) after penalties, truncated by top-k, then
// min-p, then top-p in the order of descending probability (ties: lower id
// first), as the engine's host sampler truncates. The draw is the
// Gumbel-max trick over the kept tokens: with the device's Philox
// generator seeded by seed, so that the tokens follow the host sampler's
// distribution but not its random stream; or, for Draw.Seeded rows, with
// the seed's own noise (SeededGumbel), the host sampler's too. Each token
// comes with its log-probabilities and, as asked, alternatives, routes and
// kept set.
func (s *Stepper) ChainSample(tokens, pos []int32, draws []Draw, seed int64, n int) (out [][]ChainToken, err error) {
	defer catch(&err, "chain sample")
	if len(draws) != s.rows {
		return nil, fmt.Errorf("%d draws for %d rows", len(draws), s.rows)
	}
	var kind sampleKind
	params := make([]float32, 0, 7*s.rows) // [rows, 7]: temperature, top-k, min-p, top-p, presence, frequency, seeded
	for b, d := range draws {
		switch {
		case !(d.Temperature >= 0) || d.Temperature > 100:
			return nil, fmt.Errorf("row %d: temperature %g outside [0, 100]", b, d.Temperature)
		case d.TopK < 0:
			return nil, fmt.Errorf("row %d: top-k %d is negative", b, d.TopK)
		case !(d.MinP >= 0) || d.MinP > 1:
			return nil, fmt.Errorf("row %d: min-p %g outside [0, 1]", b, d.MinP)
		case !(d.TopP >= 0) || d.TopP > 1:
			return nil, fmt.Errorf("row %d: top-p %g outside [0, 1]", b, d.TopP)
		case d.Top < 0 || d.Top > MaxTop:
			return nil, fmt.Errorf("row %d: %d alternatives outside [0, %d]", b, d.Top, MaxTop)
		case !(math.Abs(float64(d.Presence)) <= 2) || !(math.Abs(float64(d.Frequency)) <= 2):
			return nil, fmt.Errorf("row %d: penalties %g and %g outside [-2, 2]", b, d.Presence, d.Frequency)
		}
		if d.Top > 0 {
			kind.top = min(MaxTop, s.m.Config.VocabSize) // one program for every count asked for
		}
		kind.truncated = kind.truncated || d.truncates()
		kind.penalized = kind.penalized || d.penalises()
		kind.seeded = kind.seeded || d.seeded()
		kind.routes = kind.routes || d.Routes
		kind.kept = kind.kept || (d.Kept && d.truncates())
		seeded := float32(0)
		if d.seeded() {
			seeded = 1
		}
		params = append(params, d.Temperature, float32(min(d.TopK, s.m.Config.VocabSize)), d.MinP, d.TopP, d.Presence, d.Frequency, seeded)
	}
	if err := s.chainCheck(tokens, pos, n); err != nil {
		return nil, err
	}
	exec := s.samplers[kind.String()]
	if exec == nil {
		step := func(scope *gm.Scope, in []*graph.Node) []*graph.Node { return s.sampleStep(scope, in, kind) }
		if exec, err = s.newExec(step); err != nil {
			return nil, err
		}
		if s.samplers == nil {
			s.samplers = map[string]*gm.Exec{}
		}
		s.samplers[kind.String()] = exec
	}
	rng, err := graph.RNGStateFromSeed(seed)
	if err != nil {
		return nil, err
	}
	how := tensors.FromFlatDataAndDimensions(params, s.rows, 7)
	defer how.FinalizeAll()
	// The values the steps carry: state, draws, generator, counts.
	carried := []*tensors.Tensor{chainState(tokens, pos), how, rng}
	if kind.penalized {
		V := s.m.Config.VocabSize
		counts := make([]float32, s.rows*V) // [rows, V]
		for b, d := range draws {
			for id, c := range d.Counts {
				if id >= 0 && int(id) < V {
					counts[b*V+int(id)] = float32(c)
				}
			}
		}
		carried = append(carried, tensors.FromFlatDataAndDimensions(counts, s.rows, V))
	}
	if kind.seeded {
		keys := make([]uint32, 2*s.rows) // [rows, 2]: key, index of the next draw
		for b, d := range draws {
			keys[2*b], keys[2*b+1] = SeedKey(d.Seed), uint32(d.Drawn)
		}
		carried = append(carried, tensors.FromFlatDataAndDimensions(keys, s.rows, 2))
	}
	defer func() {
		for i, t := range carried {
			if i != 1 { // how is freed above
				t.FinalizeAll()
			}
		}
	}()
	if s.loopable() && (!kind.truncated || s.opts.NativeTopK) {
		// A truncated draw without digits sorts the vocabulary: no loop.
		out, ok, err := s.sampleLoop(carried, draws, kind, n)
		if ok || err != nil {
			return out, err
		}
	}
	var drawn *tensors.Tensor // [rows, 3 + 2·top]: id, logprob, sample logprob, alternatives of the last step
	defer func() {
		if drawn != nil {
			drawn.FinalizeAll()
		}
	}()
	out = make([][]ChainToken, 0, n)
	for i := range n {
		args := make([]any, len(carried))
		for j, t := range carried {
			args[j] = t
		}
		outs, err := s.execDonating(exec, args...) // the carried values (but the draws), then drawn
		if err != nil {
			return nil, err
		}
		if i > 0 { // step i-1's tokens, read while step i runs
			out = append(out, s.chainDrawn(drawn, draws, kind))
			drawn.FinalizeAll()
		}
		next := []*tensors.Tensor{outs[0], how, outs[1]}
		next = append(next, outs[2:len(outs)-1]...) // counts and keys, as carried
		for j, t := range carried {
			if j != 1 {
				t.FinalizeAll()
			}
		}
		carried, drawn = next, outs[len(outs)-1]
	}
	return append(out, s.chainDrawn(drawn, draws, kind)), nil
}

// sampleStep: in = state [rows, 2], draws [rows, 7] (temperature, top-k,
// min-p, top-p, presence and frequency penalties, seeded), RNG state,
// counts [rows, V] (penalized only), keys [rows, 2] uint32 (seeded only:
// key, index of the draw), caches… → caches…, state', RNG state', counts',
// keys' (as in), drawn [rows, 3 + 2·top] (id, logprob, sample logprob,
// then top pairs of id and logprob of the likeliest tokens; as float32: ids
// are exact below 2²⁴). With truncated, each row keeps only what its
// top-k, min-p and top-p leave; without, nothing is cut.
func (s *Stepper) sampleStep(scope *gm.Scope, in []*graph.Node, kind sampleKind) []*graph.Node {
	state, how, rng := in[0], in[1], in[2]
	truncated, top := kind.truncated, kind.top
	g := state.Graph()
	B, V := state.Shape().Dim(0), s.m.Config.VocabSize
	tokens := graph.Slice(state, graph.AxisRange(), graph.AxisElem(0)) // [B, 1]
	pos := graph.Slice(state, graph.AxisRange(), graph.AxisElem(1))    // [B, 1]
	last := graph.Zeros(g, shapes.Make(dtypes.Int32, B))
	res, cache := s.forward(scope, tokens, pos, last, s.layerCaches(in[kind.carried():]))
	logits := res[0]                                                                                   // [B, V] float32
	param := func(i int) *graph.Node { return graph.Slice(how, graph.AxisRange(), graph.AxisElem(i)) } // [B, 1]
	temp := param(0)
	sampling := graph.GreaterThan(temp, graph.ScalarZero(g, dtypes.Float32)) // [B, 1]
	adj := logits                                                            // what is sampled from: penalised
	var counts *graph.Node
	if kind.penalized {
		counts = in[3] // [B, V]
		seen := graph.ConvertDType(graph.GreaterThan(counts, graph.ZerosLike(counts)), dtypes.Float32)
		adj = graph.Sub(logits, graph.Add(graph.Mul(counts, param(5)), graph.Mul(seen, param(4))))
	}
	// The order of the cut is the tempered logits' x, not the rounded
	// log-probabilities': x − log Σ eˣ in float32 can tie what x does not,
	// and the host and the trainer's sampling-mask monitor rank by x.
	x := graph.Div(adj, graph.Where(sampling, temp, graph.OnesLike(temp))) // [B, V] tempered logits
	lp := graph.LogSoftmax(x, -1)                                          // [B, V] tempered
	rng, u := graph.RandomUniform(rng, shapes.Make(dtypes.Float32, B, V))  // [B, V] in [0, 1)
	gumbel := graph.Neg(graph.Log(graph.Neg(graph.Log(u))))                // u = 0 gives −∞: never drawn
	var keys *graph.Node
	if kind.seeded {
		keys = in[kind.carried()-1] // [B, 2]
		key := graph.Reshape(graph.Slice(keys, graph.AxisRange(), graph.AxisElem(0)), B)
		t := graph.Reshape(graph.Slice(keys, graph.AxisRange(), graph.AxisElem(1)), B)
		seeded := graph.GreaterThan(param(6), graph.ScalarZero(g, dtypes.Float32)) // [B, 1]
		gumbel = graph.Where(graph.BroadcastToDims(seeded, B, V), seededGumbel(key, t, V), gumbel)
	}
	var drawnID, sampleLP *graph.Node // [B]
	var keptIDs *graph.Node           // [B, V] bool, in vocabulary order: what each truncated draw kept
	if !truncated {
		drawnID = graph.ArgMax(graph.Add(lp, gumbel), -1, dtypes.Int32)
		sampleLP = graph.ReduceSum(graph.Mul(lp, graph.OneHot(drawnID, V, dtypes.Float32)), -1)
	} else if s.opts.NativeTopK && s.opts.DigitTopK {
		keptIDs = keptDigits(lp, x, param(1), param(2), param(3))
		masked := graph.Where(keptIDs, lp, graph.Infinity(g, dtypes.Float32, -1)) // [B, V]
		drawnID = graph.ArgMax(graph.Add(masked, gumbel), -1, dtypes.Int32)
		sampleLP = graph.Sub(graph.ReduceSum(graph.Mul(lp, graph.OneHot(drawnID, V, dtypes.Float32)), -1), graph.Reshape(logSumExp(masked), B))
	} else {
		sortedX, order := graph.TopK(x, V, -1)                          // [B, V] descending, ties: lower id first
		sorted := graph.Sub(sortedX, graph.Reshape(logSumExp(x), B, 1)) // [B, V]: their log-probabilities
		kept := keptMask(sorted, param(1), param(2), param(3))
		masked := graph.Where(kept, sorted, graph.Infinity(g, dtypes.Float32, -1)) // [B, V]
		// Each rank's slot in vocabulary order: (b, order[b, r]), [B, V, 2].
		var ids *graph.Node
		if kind.kept || kind.seeded {
			rows := graph.Iota(g, shapes.Make(dtypes.Int32, B, V, 1), 0)
			ids = graph.Concatenate([]*graph.Node{rows, graph.ExpandAxes(graph.ConvertDType(order, dtypes.Int32), -1)}, -1)
		}
		if kind.kept {
			// From rank order back to ids: scatter each rank's flag to its id.
			keptIDs = graph.GreaterThan(graph.ScatterSum(graph.Zeros(g, shapes.Make(dtypes.Float32, B, V)), ids,
				graph.ConvertDType(kept, dtypes.Float32), false, true), graph.ScalarZero(g, dtypes.Float32))
		}
		if kind.seeded {
			gumbel = graph.Gather(gumbel, ids) // seeded noise belongs to token ids: put it in rank order too
		}
		at := graph.ArgMax(graph.Add(masked, gumbel), -1, dtypes.Int32) // [B]: a rank
		pick := graph.OneHot(at, V, dtypes.Float32)
		drawnID = graph.ConvertDType(graph.ReduceSum(graph.Mul(graph.ConvertDType(order, dtypes.Float32), pick), -1), dtypes.Int32)
		z := logSumExp(masked) // log of the kept mass
		sampleLP = graph.Sub(graph.ReduceSum(graph.Mul(sorted, pick), -1), z)
	}
	flat := func(x *graph.Node) *graph.Node { return graph.Reshape(x, B) }
	id := graph.Where(flat(sampling), drawnID, graph.ArgMax(logits, -1, dtypes.Int32)) // [B]
	own := graph.LogSoftmax(logits, -1)                                                // [B, V]: the model's distribution
	logprob := graph.ReduceSum(graph.Mul(own, graph.OneHot(id, V, dtypes.Float32)), -1)
	sampleLP = graph.Where(flat(sampling), sampleLP, graph.ZerosLike(sampleLP))
	next := graph.Concatenate([]*graph.Node{graph.Reshape(id, B, 1), graph.AddScalar(pos, 1)}, 1)
	cols := []*graph.Node{graph.ConvertDType(id, dtypes.Float32), logprob, sampleLP}
	cols = append(cols, likeliest(own, top)...)
	drawn := graph.Stack(cols, 1) // [B, 3 + 2·top]
	if kind.routes && len(res) > 1 {
		routes := res[1] // [L_moe, B, 1, K]
		L, K := routes.Shape().Dim(0), routes.Shape().Dim(3)
		flat := graph.Reshape(graph.TransposeAllDims(graph.Reshape(routes, L, B, K), 1, 0, 2), B, L*K) // [B, L·K]
		drawn = graph.Concatenate([]*graph.Node{drawn, graph.ConvertDType(flat, dtypes.Float32)}, 1)
	}
	if kind.kept {
		drawn = graph.Concatenate([]*graph.Node{drawn, packBits(keptIDs)}, 1)
	}
	outs := append(flatCaches(cache), next, rng)
	if kind.penalized {
		outs = append(outs, graph.Add(counts, graph.OneHot(id, V, dtypes.Float32))) // the drawn token counts from the next step on
	}
	if kind.seeded {
		step := graph.Concatenate([]*graph.Node{graph.Zeros(g, shapes.Make(dtypes.Uint32, B, 1)), graph.Ones(g, shapes.Make(dtypes.Uint32, B, 1))}, 1)
		outs = append(outs, graph.Add(keys, step)) // the next draw's index
	}
	return append(outs, drawn)
}

// likeliest returns the k likeliest tokens of lp [B, V], as pairs of id (as
// float32) and value [B], in descending order, ties to the lower id (the
// host's order): k passes of ArgMax, each masking what it found, since a
// device loop cannot hold a sort.
func likeliest(lp *graph.Node, k int) []*graph.Node {
	out := make([]*graph.Node, 0, 2*k)
	for range k {
		at := graph.ArgMax(lp, -1, dtypes.Int32) // [B]; ties: the first id
		out = append(out, graph.ConvertDType(at, dtypes.Float32), graph.ReduceMax(lp, -1))
		hit := graph.Equal(graph.Iota(lp.Graph(), shapes.Make(dtypes.Int32, lp.Shape().Dimensions...), 1), graph.ExpandAxes(at, -1)) // [B, V]
		lp = graph.Where(hit, graph.Infinity(lp.Graph(), dtypes.Float32, -1), lp)
	}
	return out
}

// keptMask marks, in log-probabilities sorted in descending order [B, V],
// what top-k, then min-p, then top-p keep (each [B, 1]; 0 is off), as the
// host sampler's cut does: top-k keeps the first k; min-p those of them
// within log(min-p) of the first (at least one); top-p, of those, every
// token whose preceding mass is still under top-p.
func keptMask(sorted, topK, minP, topP *graph.Node) *graph.Node {
	g := sorted.Graph()
	B, V := sorted.Shape().Dim(0), sorted.Shape().Dim(1)
	rank := graph.ConvertDType(graph.Iota(g, shapes.Make(dtypes.Int32, B, V), 1), dtypes.Float32) // [B, V]
	zero := graph.ScalarZero(g, dtypes.Float32)
	kept := graph.LogicalOr(graph.Equal(topK, zero), graph.LessThan(rank, topK))
	first := graph.Slice(sorted, graph.AxisRange(), graph.AxisElem(0)) // [B, 1]
	floor := graph.Add(first, graph.Log(graph.Where(graph.GreaterThan(minP, zero), minP, graph.OnesLike(minP))))
	kept = graph.LogicalAnd(kept, graph.LogicalOr(graph.Equal(minP, zero), graph.GreaterOrEqual(sorted, floor)))
	kept = graph.LogicalOr(kept, graph.Equal(rank, zero)) // min-p keeps at least one
	// Mass before each token: an exclusive prefix sum of the kept
	// probabilities (the host adds tokens while the mass is under top-p).
	before := graph.Sub(prefixSum(graph.Where(kept, graph.Exp(sorted), graph.ZerosLike(sorted))), graph.Exp(sorted))
	on := graph.LogicalAnd(graph.GreaterThan(topP, zero), graph.LessThan(topP, graph.OnesLike(topP)))
	return graph.LogicalAnd(kept, graph.LogicalOr(graph.LogicalNot(on), graph.LessThan(before, topP)))
}

// keptDigits marks in vocabulary order what keptMask marks in sorted order,
// without sorting (Options.DigitTopK). The host's cut keeps the first n
// tokens of the descending order (ties: lower id first), n the least that
// top-k, min-p and top-p allow, each a prefix of that order: top-k the first
// k; min-p the tokens within log(min-p) of the best; top-p those whose mass
// ahead is still under top-p. Top-k's and top-p's ends are thresholds that
// digitSearch finds (by count and by mass), ties at them taken in id order.
// lp [B, V] log-probabilities, ranked by x [B, V] (the tempered logits,
// whose order lp keeps but for ties its rounding makes); topK, minP, topP
// [B, 1] (0: off) → [B, V] bool.
func keptDigits(lp, x, topK, minP, topP *graph.Node) *graph.Node {
	g := lp.Graph()
	V := lp.Shape().Dim(1)
	zero := graph.ScalarZero(g, dtypes.Float32)
	key := unsignedKeys(x)                     // [B, V]
	count := func(b *graph.Node) *graph.Node { // [B, 1] int32
		return graph.ReduceAndKeep(graph.ConvertDType(b, dtypes.Int32), graph.ReduceSum, -1)
	}
	k := graph.Where(graph.Equal(topK, zero), graph.Scalar(g, dtypes.Float32, float64(V)), topK) // [B, 1]
	tauK := digitSearch(key, nil, k)                                                             // the k-th largest key
	kept := firstAtThreshold(key, tauK, graph.Sub(graph.ConvertDType(k, dtypes.Int32), count(graph.GreaterThan(key, tauK))))
	best := graph.ReduceAndKeep(lp, graph.ReduceMax, -1) // [B, 1]
	floor := graph.Add(best, graph.Log(graph.Where(graph.GreaterThan(minP, zero), minP, graph.OnesLike(minP))))
	kept = graph.LogicalAnd(kept, graph.LogicalOr(graph.Equal(minP, zero), graph.GreaterOrEqual(lp, floor)))
	// Top-p: the group of equal values at which the mass from the top first
	// reaches top-p is cut inside, token by token in id order; every group
	// above is whole, every group below gone.
	p := graph.Exp(lp)                // [B, V]
	tauP := digitSearch(key, p, topP) // [B, 1]
	at := graph.Equal(key, tauP)
	ahead := graph.ReduceAndKeep(graph.Where(graph.GreaterThan(key, tauP), p, graph.ZerosLike(p)), graph.ReduceSum, -1) // [B, 1]
	pAt := graph.ReduceAndKeep(graph.Where(at, p, graph.ZerosLike(p)), graph.ReduceMax, -1)                             // [B, 1]: the group's value
	mass := graph.Add(ahead, graph.Mul(graph.ConvertDType(graph.AddScalar(blockScan(at), -1), dtypes.Float32), pAt))    // ahead of each tie
	topped := graph.LogicalOr(graph.GreaterThan(key, tauP), graph.LogicalAnd(at, graph.LessThan(mass, topP)))
	on := graph.LogicalAnd(graph.GreaterThan(topP, zero), graph.LessThan(topP, graph.OnesLike(topP)))
	return graph.LogicalAnd(kept, graph.LogicalOr(graph.LogicalNot(on), topped))
}

// logSumExp over the last axis of x [B, V] with at least one finite entry
// per row (−∞ entries count as nothing).
func logSumExp(x *graph.Node) *graph.Node {
	mx := graph.ReduceAndKeep(x, graph.ReduceMax, -1) // [B, 1]
	return graph.Add(graph.Reshape(mx, x.Shape().Dim(0)), graph.Log(graph.ReduceSum(graph.Exp(graph.Sub(x, mx)), -1)))
}

// drawnWidth is the width of a sampled step's drawn values: id, logprob,
// sample logprob, top pairs, then L_moe·K route ids with routes, then the
// kept sets' bits, 16 a value, with kept.
func (s *Stepper) drawnWidth(kind sampleKind) int {
	w := 3 + 2*kind.top
	if kind.routes {
		w += s.routesWidth()
	}
	if kind.kept {
		w += (s.m.Config.VocabSize + 15) / 16
	}
	return w
}

func (s *Stepper) routesWidth() int { return s.m.Config.NumMoELayers() * s.m.Config.NumExpertsPerTok }

// packBits packs mask [B, V] into [B, ⌈V/16⌉] float32, 16 bits a value
// (exact: below 2¹⁶), bit j of value w the flag of id 16w+j.
func packBits(mask *graph.Node) *graph.Node {
	g := mask.Graph()
	B, V := mask.Shape().Dim(0), mask.Shape().Dim(1)
	W := (V + 15) / 16
	f := graph.Pad(graph.ConvertDType(mask, dtypes.Float32), graph.ScalarZero(g, dtypes.Float32),
		compute.PadAxis{}, compute.PadAxis{End: 16*W - V}) // [B, 16W]
	weights := make([]float32, 16)
	for j := range weights {
		weights[j] = float32(int(1) << j)
	}
	w := graph.BroadcastToDims(graph.Reshape(graph.Const(g, weights), 1, 1, 16), B, W, 16)
	return graph.ReduceSum(graph.Mul(graph.Reshape(f, B, W, 16), w), -1) // [B, W]
}

// chainDrawn copies a sampled chain step's tokens to the host.
func (s *Stepper) chainDrawn(drawn *tensors.Tensor, draws []Draw, kind sampleKind) []ChainToken {
	return s.chainTokensDrawn(tensors.MustCopyFlatData[float32](drawn), draws, kind)
}

// chainTokensDrawn reads one step's drawn values [rows, drawnWidth] (see
// sampleStep), keeping draws[b].Top alternatives of row b, and its routes
// if it asked.
func (s *Stepper) chainTokensDrawn(flat []float32, draws []Draw, kind sampleKind) []ChainToken {
	out := make([]ChainToken, len(draws))
	w := len(flat) / len(draws)
	K := s.m.Config.NumExpertsPerTok
	for b := range out {
		d := flat[b*w : (b+1)*w]
		out[b] = ChainToken{ID: int32(d[0]), Logprob: d[1], SampleLogprob: d[2]}
		for j := range min(draws[b].Top, kind.top) {
			out[b].Top = append(out[b].Top, Alternative{ID: int32(d[3+2*j]), Logprob: d[4+2*j]})
		}
		rest := d[3+2*kind.top:]
		if kind.routes {
			r := rest[:s.routesWidth()]
			rest = rest[s.routesWidth():]
			for l := range len(r) / K {
				if !draws[b].Routes {
					break
				}
				ids := make([]int32, K)
				for k := range ids {
					ids[k] = int32(r[l*K+k])
				}
				out[b].Routes = append(out[b].Routes, ids)
			}
		}
		if kind.kept && draws[b].Kept && draws[b].truncates() {
			V := s.m.Config.VocabSize
			var kept []int32
			for w, v := range rest[:(V+15)/16] {
				for x, j := int(v), 0; x != 0; x, j = x>>1, j+1 {
					if x&1 == 1 && 16*w+j < V {
						kept = append(kept, int32(16*w+j))
					}
				}
			}
			if len(kept) < V {
				out[b].Kept = kept
			}
		}
	}
	return out
}
