package model

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	gm "github.com/gomlx/gomlx/ml/model"
)

// kernelOps are the op types that usually become a kernel of their own on
// XLA (elementwise ops, reshapes, broadcasts and slices fuse into them or
// into loop fusions between them).
var kernelOps = map[string]bool{
	"DotGeneral": true, "Gather": true, "ScatterSum": true, "ScatterMax": true, "ScatterMin": true,
	"DynamicSlice": true, "DynamicUpdateSlice": true, "ReduceSum": true, "ReduceMax": true,
	"ReduceMin": true, "ReduceProduct": true, "ReduceLogicalAnd": true, "ReduceLogicalOr": true,
	"Sort": true, "Concatenate": true, "Transpose": true, "Pad": true, "FusedSoftmax": true,
	"ReduceWindow": true, "ArgMinMax": true,
}

// xlaLike is the Go backend dressed as XLA for graph building only: it
// reports XLA's capabilities (dynamic slices, no fused ops), so the model
// builds the graph it would build for XLA; dynamic slices are stood in for by
// ops of the same shape. Never run what it compiles.
type xlaLike struct{ compute.Backend }

func (b xlaLike) Capabilities() compute.Capabilities {
	c := b.Backend.Capabilities().Clone()
	for op := range c.Operations {
		if strings.HasPrefix(op.String(), "Fused") {
			delete(c.Operations, op)
		}
	}
	c.Operations[compute.OpTypeDynamicSlice] = true
	c.Operations[compute.OpTypeDynamicUpdateSlice] = true
	return c
}

func (b xlaLike) Builder(name string) compute.Builder { return xlaBuilder{b.Backend.Builder(name)} }

type xlaBuilder struct{ compute.Builder }

func (b xlaBuilder) Main() compute.Function { return xlaFunction{b.Builder.Main()} }

type xlaFunction struct{ compute.Function }

func (f xlaFunction) DynamicUpdateSlice(operand, update compute.Value, start []compute.Value) (compute.Value, error) {
	return f.Identity(operand)
}

func (f xlaFunction) DynamicSlice(operand compute.Value, start []compute.Value, dims []int) (compute.Value, error) {
	return f.Slice(operand, make([]int, len(dims)), dims, nil)
}

// decodeOpCounts builds the Stepper's decode step (every row, T = 1) for a
// small DSA model with the given number of layers and counts the graph nodes
// the outputs depend on, by op type.
func decodeOpCounts(t testing.TB, layers, rows int, opts Options, xla bool) map[string]int {
	t.Helper()
	outs, _ := decodeGraph(t, layers, rows, opts, xla)
	counts := map[string]int{}
	seen := map[*graph.Node]bool{}
	var visit func(n *graph.Node)
	visit = func(n *graph.Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		op := n.Type().String()
		if n.Type() == graph.NodeTypeSort {
			op = "Sort"
		}
		counts[op]++
		for _, x := range n.Inputs() {
			visit(x)
		}
	}
	for _, o := range outs {
		visit(o)
	}
	return counts
}

// decodeGraph builds the Stepper's decode step (every row, T = 1) for a
// small DSA model with the given number of layers, as it would be built for
// XLA (xla) or the Go backend, with caches of the Stepper's dtype for that
// backend. It returns the step's outputs (the updated caches first) and its
// inputs (the packed tokens first, then the caches).
func decodeGraph(t testing.TB, layers, rows int, opts Options, xla bool) (outs, ins []*graph.Node) {
	t.Helper()
	s := graphStepper(t, layers, rows, opts, xla)
	// packed tokens, positions, last (T = 1)
	return buildStep(t, s, layers, []shapes.Shape{shapes.Make(dtypes.Int32, rows, 3)}, s.stepAll)
}

// graphStepper is a Stepper of a small random DSA model for building graphs
// only (no caches), as for XLA (xla) or the Go backend.
func graphStepper(t testing.TB, layers, rows int, opts Options, xla bool) *Stepper {
	t.Helper()
	src := fmt.Sprintf(`{"model_type":"deepseek_v32","vocab_size":320,"hidden_size":64,"intermediate_size":128,
	"moe_intermediate_size":32,"num_hidden_layers":%d,"first_k_dense_replace":1,"num_attention_heads":4,
	"num_key_value_heads":4,"q_lora_rank":48,"kv_lora_rank":32,"qk_nope_head_dim":16,"qk_rope_head_dim":8,
	"v_head_dim":16,"n_routed_experts":8,"n_shared_experts":1,"num_experts_per_tok":2,"n_group":4,"topk_group":2,
	"routed_scaling_factor":2.5,"index_n_heads":4,"index_head_dim":32,"index_topk":16,
	"max_position_embeddings":4096,"rope_theta":10000,"rms_norm_eps":1e-6,"bos_token_id":0,"eos_token_id":1}`, layers)
	cfg, err := ParseConfig([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewRandom(cfg, 0.02, 1, dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	backend := testutil.Backend(t)
	if backend.Capabilities().Operations[compute.OpTypeDynamicUpdateSlice] {
		// xlaLike dresses the Go backend; on XLA itself the programs run
		// (the chain, row-write and fixture tests).
		t.Skip("graph-structure tests build on the Go backend")
	}
	if xla {
		backend = xlaLike{backend}
		t.Setenv(graph.FusionEnv, "false") // XLA has no fused ops: Softmax decomposes
	}
	return &Stepper{m: m, backend: backend, opts: opts, perLayer: 2, rows: rows, capacity: 64}
}

// buildStep compiles (never runs) fn for s, whose inputs are lead followed
// by the caches, and returns fn's outputs and inputs.
func buildStep(t testing.TB, s *Stepper, layers int, lead []shapes.Shape, fn func(*gm.Scope, []*graph.Node) []*graph.Node) (outs, ins []*graph.Node) {
	t.Helper()
	exec, err := gm.NewExec(s.backend, s.m.Store, func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
		ins = in
		outs = fn(scope, in)
		return outs
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	in := slices.Clone(lead)
	for range layers {
		for _, w := range s.widths() {
			in = append(in, shapes.Make(s.cacheDType(), s.rows, s.capacity, w))
		}
	}
	if _, err := exec.Compile(in...); err != nil {
		t.Fatal(err)
	}
	return outs, ins
}

func kernelTotal(c map[string]int) (k, all int) {
	for op, n := range c {
		if op == "Parameter" || op == "Constant" {
			continue
		}
		all += n
		if kernelOps[op] {
			k += n
		}
	}
	return k, all
}

// TestDecodeOpCounts reports the decode step's ops per MoE layer (the
// difference between a 3- and a 2-layer model). DSV32_OPCOUNT=1 prints the
// per-type table.
func TestDecodeOpCounts(t *testing.T) {
	for _, c := range []struct {
		name string
		xla  bool
		opts Options
	}{
		{"XLA graph (native top-k)", true, Options{NativeTopK: true}},
		{"XLA graph (digit top-k)", true, Options{NativeTopK: true, DigitTopK: true}},
		{"Go backend graph (radix top-k)", false, Options{}},
	} {
		name := c.name
		t.Run(name, func(t *testing.T) {
			for _, rows := range []int{1, 4} {
				a, b := decodeOpCounts(t, 2, rows, c.opts, c.xla), decodeOpCounts(t, 3, rows, c.opts, c.xla)
				ka, na := kernelTotal(a)
				kb, nb := kernelTotal(b)
				t.Logf("%s, rows %d: per MoE layer %d kernel-ish ops of %d ops; whole 3-layer step %d of %d",
					name, rows, kb-ka, nb-na, kb, nb)
				if os.Getenv("DSV32_OPCOUNT") != "" {
					var ops []string
					for op := range b {
						ops = append(ops, op)
					}
					sort.Strings(ops)
					var sb strings.Builder
					for _, op := range ops {
						if d := b[op] - a[op]; d != 0 {
							mark := ""
							if kernelOps[op] {
								mark = "*"
							}
							fmt.Fprintf(&sb, " %s%s=%d", mark, op, d)
						}
					}
					t.Logf("  per layer:%s", sb.String())
				}
			}
		})
	}
}

// TestCacheWritesInPlace checks, in the decode step built for XLA, that
// every updated cache is a chain of writes (scatters or dynamic update
// slices) whose operand is the cache parameter itself, with nothing between
// (a bitcast there made XLA copy each cache twice a step), and that the Go
// backend's caches keep the compute dtype.
func TestCacheWritesInPlace(t *testing.T) {
	for _, c := range []struct {
		name  string
		rows  int
		opts  Options
		write graph.NodeType
	}{
		{"one row", 1, Options{NativeTopK: true}, graph.NodeTypeDynamicUpdateSlice},
		{"four rows", 4, Options{NativeTopK: true}, graph.NodeTypeScatterSum},
		{"four rows, row writes", 4, Options{NativeTopK: true, RowWrites: true}, graph.NodeTypeDynamicUpdateSlice},
	} {
		t.Run(c.name, func(t *testing.T) {
			outs, ins := decodeGraph(t, 2, c.rows, c.opts, true)
			caches := ins[1:]
			for i, p := range caches {
				if p.DType().IsFloat() {
					t.Fatalf("cache %d is %s: XLA's caches should be words", i, p.DType())
				}
				n, writes := outs[i], 0
				for n != p {
					if n.Type() != c.write {
						t.Fatalf("cache %d: %s after %d writes, want %s back to the cache parameter", i, n.Type(), writes, c.write)
					}
					n, writes = n.Inputs()[0], writes+1
				}
				if want := max(1, c.rows*boolInt(c.opts.RowWrites)); writes != want {
					t.Errorf("cache %d: %d writes, want %d", i, writes, want)
				}
			}
		})
	}
	_, ins := decodeGraph(t, 2, 4, Options{}, false)
	if dt := ins[1].DType(); dt != dtypes.Float32 {
		t.Errorf("Go backend cache is %s, want float32", dt)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestLoopStepsGraph builds Options.DeviceLoop's programs as for XLA (the
// chain tests run them, on the Go backend as internal/testutil dresses it;
// Stepper.loopable says why it must): n greedy or
// sampled chain steps in one While, returning the updated caches and each
// step's output, with every weight passed through the loop and none left
// marked as changed (else the executor would write the weights back after
// each chain).
func TestLoopStepsGraph(t *testing.T) {
	const layers, rows, n = 2, 2, 5
	opts := Options{NativeTopK: true, DigitTopK: true, DeviceLoop: true}
	s := graphStepper(t, layers, rows, opts, true)
	if !s.loopable() {
		t.Fatal("the device loop is not used for an XLA-like backend with digit selection")
	}
	state := shapes.Make(dtypes.Int32, rows, 2)
	for _, c := range []struct {
		name string
		lead []shapes.Shape
		loop func(*gm.Scope, []*graph.Node) []*graph.Node
		out  shapes.Shape
	}{
		{"greedy", []shapes.Shape{state},
			func(scope *gm.Scope, in []*graph.Node) []*graph.Node { return s.greedyLoop(scope, in, n) },
			shapes.Make(dtypes.Int32, n, rows, 1)},
		{"sampled, truncated", []shapes.Shape{state, shapes.Make(dtypes.Float32, rows, 7), graph.RNGStateShape},
			func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
				return s.sampledLoop(scope, in, n, sampleKind{truncated: true})
			},
			shapes.Make(dtypes.Float32, n, rows, 3)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var changed []string
			outs, ins := buildStep(t, s, layers, c.lead, func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
				outs := c.loop(scope, in)
				for v := range s.m.Store.IterVariables() {
					if v.ChangedInGraph(in[0].Graph()) {
						changed = append(changed, v.Path())
					}
				}
				return outs
			})
			if len(changed) > 0 {
				t.Errorf("weights left marked as changed by the loop: %v", changed)
			}
			caches := ins[len(c.lead):]
			if len(outs) != len(caches)+1 {
				t.Fatalf("%d outputs, want the %d caches and the steps' outputs", len(outs), len(caches))
			}
			for i, cache := range caches {
				if !outs[i].Shape().Equal(cache.Shape()) {
					t.Errorf("cache %d comes back %s, went in %s", i, outs[i].Shape(), cache.Shape())
				}
			}
			if got := outs[len(caches)].Shape(); !got.Equal(c.out) {
				t.Errorf("steps' outputs %s, want %s", got, c.out)
			}
			for _, o := range outs {
				if in := o.Inputs(); o.Type() != graph.NodeTypeSplitNode || len(in) != 1 || in[0].Type() != graph.NodeTypeWhile {
					t.Errorf("an output comes from a %s, want one of the While's results", o.Type())
				}
			}
		})
	}
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"sort selection", Options{NativeTopK: true, DeviceLoop: true}},
		{"not asked", Options{NativeTopK: true, DigitTopK: true}},
	} {
		if graphStepper(t, layers, rows, c.opts, true).loopable() {
			t.Errorf("%s: the device loop would be used", c.name)
		}
	}
	plain, err := compute.NewWithConfig("go") // as released, not as internal/testutil dresses it
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Finalize()
	if CanLoop(plain) {
		t.Error("the Go backend would run the device loop")
	}
}
