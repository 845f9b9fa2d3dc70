package model

import (
	"fmt"
	"slices"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	gm "github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/model/initializer"
)

// The building blocks every layer uses: weights named as in the HF
// checkpoint, linear maps with PyTorch's [out, in] weights, and the norms.

// weight returns the variable `name` of scope as a node of dtype dt (the
// compute dtype), creating it in the store's parameter dtype with the given
// initialiser when the store does not hold it yet: bf16 compute over float32
// master weights is a cast here, and gradients flow back through it. Shapes
// follow the HF checkpoint ([out, in] for linear maps).
func weight(scope *gm.Scope, g *graph.Graph, dt dtypes.DType, init gm.VariableInitializer, name string, dims ...int) *graph.Node {
	if init == nil {
		init = scope.Initializer()
	}
	path := gm.JoinPath(scope.Scope(), name)
	v := existing(scope.Store(), path, dims...)
	if v == nil {
		v = scope.Store().VariableWithShape(path, shapes.Make(ParamDType(scope), dims...), init)
	}
	n := v.NodeValue(g)
	if n.DType() != dt {
		n = graph.ConvertDType(n, dt)
	}
	return n
}

// existing returns the store's variable at path, nil if there is none, and
// panics if its dimensions are not dims. It only reads: Store.VariableWithShape
// writes to a variable it finds, and device loops build their programs in
// the background while other programs build (Options.LoopsInBackground).
func existing(store *gm.Store, path string, dims ...int) *gm.Variable {
	v := store.GetVariable(path)
	if v != nil && !slices.Equal(v.Shape().Dimensions, dims) {
		panic(fmt.Errorf("variable %s has shape %s, want dimensions %v", path, v.Shape(), dims))
	}
	return v
}

// linear is y = x · Wᵀ with W [out, in] at scope/weight; x [..., in] → [..., out].
func linear(scope *gm.Scope, x *graph.Node, out int) *graph.Node {
	in := x.Shape().Dim(-1)
	w := weight(scope, x.Graph(), x.DType(), nil, "weight", out, in) // [out, in]
	return graph.DotGeneral(x, []int{x.Rank() - 1}, nil, w, []int{1}, nil)
}

// rmsNorm is w ⊙ x / sqrt(mean(x²) + ε), computed in float32 (dsa.md §3.1).
func rmsNorm(scope *gm.Scope, x *graph.Node, eps float64) *graph.Node {
	d := x.Shape().Dim(-1)
	w := weight(scope, x.Graph(), x.DType(), initializer.One, "weight", d) // [d]
	x32 := graph.ConvertDType(x, dtypes.Float32)
	variance := graph.ReduceAndKeep(graph.Square(x32), graph.ReduceMean, -1)
	y := graph.Div(x32, graph.Sqrt(graph.AddScalar(variance, eps)))
	return graph.Mul(graph.ConvertDType(y, x.DType()), graph.ExpandLeftToRank(w, x.Rank()))
}

// layerNorm is LayerNorm with weight and bias (the indexer's k_norm, dsa.md §4.1).
func layerNorm(scope *gm.Scope, x *graph.Node, eps float64) *graph.Node {
	d := x.Shape().Dim(-1)
	w := weight(scope, x.Graph(), x.DType(), initializer.One, "weight", d) // [d]
	b := weight(scope, x.Graph(), x.DType(), initializer.Zero, "bias", d)  // [d]
	x32 := graph.ConvertDType(x, dtypes.Float32)
	// One pass: the mean and the mean square reduce the same input, so XLA
	// makes them one kernel (the two-pass variance needs the mean first). In
	// float32 over the indexer's 128 dims the cancellation is harmless; the
	// clamp keeps a rounding below zero out of the square root.
	mean := graph.ReduceAndKeep(x32, graph.ReduceMean, -1)
	meanSq := graph.ReduceAndKeep(graph.Square(x32), graph.ReduceMean, -1)
	variance := graph.Max(graph.Sub(meanSq, graph.Square(mean)), graph.ZerosLike(mean))
	centred := graph.Sub(x32, mean)
	y := graph.Div(centred, graph.Sqrt(graph.AddScalar(variance, eps)))
	return graph.Add(graph.Mul(graph.ConvertDType(y, x.DType()), graph.ExpandLeftToRank(w, x.Rank())), graph.ExpandLeftToRank(b, x.Rank()))
}

// swiGLU is down(silu(gate(x)) ⊙ up(x)), DeepSeek's MLP and expert (dsa.md §5).
func swiGLU(scope *gm.Scope, x *graph.Node, inner int) *graph.Node {
	d := x.Shape().Dim(-1)
	gate := linear(scope.At("gate_proj"), x, inner) // [..., inner]
	up := linear(scope.At("up_proj"), x, inner)     // [..., inner]
	h := graph.Mul(graph.Mul(gate, graph.Sigmoid(gate)), up)
	return linear(scope.At("down_proj"), h, d) // [..., D]
}
