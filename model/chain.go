package model

import (
	"fmt"

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
	if len(tokens) != s.rows || len(pos) != s.rows {
		return nil, fmt.Errorf("chain: %d tokens and %d positions for %d rows", len(tokens), len(pos), s.rows)
	}
	if n < 1 {
		return nil, fmt.Errorf("chain: %d steps, want at least 1", n)
	}
	for b := range tokens {
		if err := s.check(b, tokens[b:b+1], []int32{pos[b]}, 0, 1); err != nil {
			return nil, err
		}
		if last := int(pos[b]) + n - 1; last >= s.capacity {
			return nil, fmt.Errorf("chain: row %d would reach position %d, outside the cache capacity %d", b, last, s.capacity)
		}
	}
	if s.chain == nil {
		if s.chain, err = gm.NewExec(s.backend, s.m.Store, s.chainStep); err != nil {
			return nil, err
		}
	}
	if s.pending != nil {
		s.pending.FinalizeAll()
		s.pending = nil
	}
	flat := make([]int32, 0, 2*s.rows)
	for b := range tokens {
		flat = append(flat, tokens[b], pos[b])
	}
	state := tensors.FromFlatDataAndDimensions(flat, s.rows, 2) // [rows, 2]: token, position
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
