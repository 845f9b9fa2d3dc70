package model

import (
	"fmt"
	"slices"

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
		if s.chain, err = gm.NewExec(s.backend, s.m.Store, s.chainStep); err != nil {
			return nil, err
		}
	}
	state := chainState(tokens, pos)
	defer func() { state.FinalizeAll() }()
	out = make([][]int32, 0, n)
	for i := range n {
		args := []any{state}
		for _, c := range s.caches {
			d, err := graph.DonateTensorBuffer(c, s.backend, 0)
			if err != nil {
				return nil, err
			}
			args = append(args, d)
		}
		outs, err := s.chain.Exec(args...)
		if err != nil {
			s.caches = s.zeroCaches(s.rows, s.capacity)
			return nil, err
		}
		nc := len(s.caches)
		s.caches = outs[:nc]
		if i > 0 { // step i-1's tokens, read while step i runs
			out = append(out, chainTokens(state))
		}
		state.FinalizeAll()
		state = outs[nc]
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
}

// ChainSample is Chain with each row drawing its tokens at its own
// temperature: temps[b] > 0 samples from softmax(logits / temps[b]) over the
// whole vocabulary (no truncation) by the Gumbel-max trick, with the device's
// Philox generator seeded by seed; temps[b] == 0 is greedy. The draws follow
// the same distribution as the engine's host sampler, not its random
// stream.
func (s *Stepper) ChainSample(tokens, pos []int32, temps []float32, seed int64, n int) (out [][]ChainToken, err error) {
	defer catch(&err, "chain sample")
	if len(temps) != s.rows {
		return nil, fmt.Errorf("chain sample: %d temperatures for %d rows", len(temps), s.rows)
	}
	for b, t := range temps {
		if !(t >= 0) || t > 100 {
			return nil, fmt.Errorf("chain sample: row %d: temperature %g outside [0, 100]", b, t)
		}
	}
	if err := s.chainCheck(tokens, pos, n); err != nil {
		return nil, err
	}
	if s.sampled == nil {
		if s.sampled, err = gm.NewExec(s.backend, s.m.Store, s.sampleStep); err != nil {
			return nil, err
		}
	}
	rng, err := graph.RNGStateFromSeed(seed)
	if err != nil {
		return nil, err
	}
	temp := tensors.FromFlatDataAndDimensions(slices.Clone(temps), s.rows) // [rows]
	defer temp.FinalizeAll()
	state := chainState(tokens, pos)
	var drawn *tensors.Tensor // [rows, 3]: id, logprob, sample logprob of the last step
	defer func() {
		state.FinalizeAll()
		rng.FinalizeAll()
		if drawn != nil {
			drawn.FinalizeAll()
		}
	}()
	out = make([][]ChainToken, 0, n)
	for i := range n {
		args := []any{state, temp, rng}
		for _, c := range s.caches {
			d, err := graph.DonateTensorBuffer(c, s.backend, 0)
			if err != nil {
				return nil, err
			}
			args = append(args, d)
		}
		outs, err := s.sampled.Exec(args...)
		if err != nil {
			s.caches = s.zeroCaches(s.rows, s.capacity)
			return nil, err
		}
		nc := len(s.caches)
		s.caches = outs[:nc]
		if i > 0 { // step i-1's tokens, read while step i runs
			out = append(out, chainDrawn(drawn))
			drawn.FinalizeAll()
		}
		state.FinalizeAll()
		rng.FinalizeAll()
		state, rng, drawn = outs[nc], outs[nc+1], outs[nc+2]
	}
	return append(out, chainDrawn(drawn)), nil
}

// sampleStep: in = state [rows, 2], temperatures [rows], RNG state, caches…
// → caches…, state', RNG state', drawn [rows, 3] (id, logprob, sample
// logprob, as float32: ids are exact below 2²⁴).
func (s *Stepper) sampleStep(scope *gm.Scope, in []*graph.Node) []*graph.Node {
	state, temps, rng := in[0], in[1], in[2]
	g := state.Graph()
	B, V := state.Shape().Dim(0), s.m.Config.VocabSize
	tokens := graph.Slice(state, graph.AxisRange(), graph.AxisElem(0)) // [B, 1]
	pos := graph.Slice(state, graph.AxisRange(), graph.AxisElem(1))    // [B, 1]
	last := graph.Zeros(g, shapes.Make(dtypes.Int32, B))
	res, cache := s.forward(scope, tokens, pos, last, s.layerCaches(in[3:]))
	logits := res[0]                                                                 // [B, V] float32
	sampling := graph.GreaterThan(temps, graph.ScalarZero(g, dtypes.Float32))        // [B]
	t := graph.Where(sampling, temps, graph.OnesLike(temps))                         // [B]; 1 where greedy
	tempered := graph.Div(logits, graph.InsertAxes(t, -1))                           // [B, V]
	rng, u := graph.RandomUniform(rng, shapes.Make(dtypes.Float32, B, V))            // [B, V] in [0, 1)
	gumbel := graph.Neg(graph.Log(graph.Neg(graph.Log(u))))                          // u = 0 gives −∞: never drawn
	drawnID := graph.ArgMax(graph.Add(tempered, gumbel), -1, dtypes.Int32)           // [B]
	id := graph.Where(sampling, drawnID, graph.ArgMax(logits, -1, dtypes.Int32))     // [B]
	pick := graph.OneHot(id, V, dtypes.Float32)                                      // [B, V]
	logprob := graph.ReduceSum(graph.Mul(graph.LogSoftmax(logits, -1), pick), -1)    // [B]
	sampleLP := graph.ReduceSum(graph.Mul(graph.LogSoftmax(tempered, -1), pick), -1) // [B]
	sampleLP = graph.Where(sampling, sampleLP, graph.ZerosLike(sampleLP))
	next := graph.Concatenate([]*graph.Node{graph.Reshape(id, B, 1), graph.AddScalar(pos, 1)}, 1)
	drawn := graph.Stack([]*graph.Node{graph.ConvertDType(id, dtypes.Float32), logprob, sampleLP}, 1) // [B, 3]
	return append(flatCaches(cache), next, rng, drawn)
}

// chainDrawn copies a sampled chain step's tokens to the host.
func chainDrawn(drawn *tensors.Tensor) []ChainToken {
	flat := tensors.MustCopyFlatData[float32](drawn)
	out := make([]ChainToken, len(flat)/3)
	for b := range out {
		out[b] = ChainToken{ID: int32(flat[3*b]), Logprob: flat[3*b+1], SampleLogprob: flat[3*b+2]}
	}
	return out
}
