package model

import (
	"fmt"
	"sync"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// Executing Forward: one-shot prefill for inspection and tests, and a
// cache-carrying step executor for decoding. GoMLX panics while building
// graphs; these entry points turn that into errors.

// Prefill is the result of one prefill of a single sequence.
type Prefill struct {
	Logits []float32   // [T, V]
	TopK   [][]int32   // per layer, [T·k'] row-major
	K      int         // k' = min(index_topk, T), the width of each TopK row
	Hidden [][]float32 // hidden_0 … hidden_L, each [T, D], with CaptureHidden
	Routes [][]int32   // per MoE layer, [T·K]
}

// prefills keeps RunPrefill's programs, one executor per backend and
// options, each with a program per length: on XLA a compile takes seconds,
// and the tests' references prefill again and again.
type prefills struct {
	mu    sync.Mutex
	execs map[prefillKey]*prefillExec
}

// prefillsMade guards Model.prefills for models not made by newModel.
var prefillsMade sync.Mutex

type prefillKey struct {
	backend compute.Backend
	opts    string // the options, printed without their graph nodes
}

type prefillExec struct {
	exec                   *gm.Exec
	nTop, nHidden, nRoutes int // set when a program is built (the same for every length)
}

// RunPrefill runs Forward on ids (no cache) and copies the outputs out.
// Only the boolean fields of opts apply. It keeps each program it compiles
// for later calls of the same length and options.
func (m *Model) RunPrefill(backend compute.Backend, ids []int32, opts Options) (res *Prefill, err error) {
	defer catch(&err, "prefill")
	T := len(ids)
	if T == 0 {
		return nil, fmt.Errorf("prefill: no tokens")
	}
	for i, id := range ids {
		if id < 0 || int(id) >= m.Config.VocabSize {
			return nil, fmt.Errorf("prefill: token %d at position %d is outside the vocabulary [0, %d)", id, i, m.Config.VocabSize)
		}
	}
	opts.Segments, opts.Routes, opts.TokenMask, opts.LogitsAt = nil, nil, nil, nil
	prefillsMade.Lock()
	if m.prefills == nil { // a Model not made by this package
		m.prefills = &prefills{}
	}
	prefillsMade.Unlock()
	m.prefills.mu.Lock() // one prefill at a time: the program's counts are set while it builds
	defer m.prefills.mu.Unlock()
	key := prefillKey{backend, fmt.Sprintf("%+v", opts)}
	p := m.prefills.execs[key]
	if p == nil {
		p = &prefillExec{}
		p.exec, err = gm.NewExec(backend, m.Store, func(scope *gm.Scope, tokens, pos *graph.Node) []*graph.Node {
			out := Forward(scope, m.Config, tokens, pos, nil, opts)
			p.nTop, p.nHidden, p.nRoutes = len(out.TopK), len(out.Hidden), len(out.Routes)
			outs := []*graph.Node{graph.ConvertDType(out.Logits, dtypes.Float32)}
			outs = append(outs, out.TopK...)
			for _, h := range out.Hidden {
				outs = append(outs, graph.ConvertDType(h, dtypes.Float32))
			}
			return append(outs, out.Routes...)
		})
		if err != nil {
			return nil, err
		}
		p.exec.SetMaxCache(-1)
		if m.prefills.execs == nil {
			m.prefills.execs = map[prefillKey]*prefillExec{}
		}
		m.prefills.execs[key] = p
	}
	pos := make([]int32, T)
	for i := range pos {
		pos[i] = int32(i)
	}
	outs, err := p.exec.Exec(tensors.FromFlatDataAndDimensions(ids, 1, T), tensors.FromFlatDataAndDimensions(pos, 1, T))
	if err != nil {
		return nil, err
	}
	nTop, nHidden, nRoutes := p.nTop, p.nHidden, p.nRoutes // set when the first program built
	defer func(all []*tensors.Tensor) {
		for _, t := range all {
			t.FinalizeAll()
		}
	}(outs)
	res = &Prefill{Logits: tensors.MustCopyFlatData[float32](outs[0])}
	outs = outs[1:]
	for _, t := range outs[:nTop] {
		res.TopK = append(res.TopK, tensors.MustCopyFlatData[int32](t))
		res.K = t.Shape().Dim(-1)
	}
	outs = outs[nTop:]
	for _, t := range outs[:nHidden] {
		res.Hidden = append(res.Hidden, tensors.MustCopyFlatData[float32](t))
	}
	for _, t := range outs[nHidden : nHidden+nRoutes] {
		res.Routes = append(res.Routes, tensors.MustCopyFlatData[int32](t))
	}
	return res, nil
}

// catch turns a panic raised while building or running a graph into an error.
func catch(err *error, what string) {
	if r := recover(); r != nil {
		if e, ok := r.(error); ok {
			*err = fmt.Errorf("%s: %w", what, e)
		} else {
			*err = fmt.Errorf("%s: %v", what, r)
		}
	}
}
