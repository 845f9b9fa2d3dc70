package train

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
	"github.com/gomlx/gomlx/ml/model/initializer"

	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/train/data"
)

// Trainer owns a model's weights and the optimizer state beside them in one
// store, and runs optimizer steps: Step takes Accum micro-batches of
// Batch rows each. Axes: B rows, T tokens, E routed experts, L layers.
//
// Store layout: the model's variables (float32 master weights, paths
// mirroring HF names), and under /optimizer: m/<path> and v/<path> (AdamW
// moments, float32), acc/<path> (gradient accumulators, float32, zero
// between steps; only with Accum > 1) and step (int64, optimizer steps
// taken, for bias correction).
type Trainer struct {
	cfg     Config
	m       *model.Model
	backend compute.Backend

	accumExec *gm.Exec // forward + backward of one micro-batch, added into acc/
	stepExec  *gm.Exec // the last micro-batch, then clip + AdamW
	evalExec  *gm.Exec // forward only

	step    int // optimizer steps taken
	nKL     int // outputs of each graph, counted when it is built
	nBal    int
	nLoad   int
	biasVar []string // per MoE layer, the router's correction bias
}

const optScope = "/optimizer"

// New makes a trainer for m. The model's weights must be float32 (the
// master copy); cfg.DType sets the dtype activations are computed in.
func New(backend compute.Backend, m *model.Model, cfg Config) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	mc := m.Config
	if cfg.Stage != Pretrain && !mc.HasIndexer() {
		return nil, fmt.Errorf("train: stage %s needs a model with the lightning indexer (model_type deepseek_v32, not %q)", cfg.Stage, mc.ModelType)
	}
	if model.ParamDType(m.Store.RootScope()) != dtypes.Float32 {
		return nil, fmt.Errorf("train: the weights are %s; training keeps float32 master weights (load with dtype float32, compute in bf16 with dtype bf16)", model.ParamDType(m.Store.RootScope()))
	}
	if cfg.DType == "bf16" {
		model.SetComputeDType(m.Store, dtypes.BFloat16)
	} else {
		model.SetComputeDType(m.Store, dtypes.Float32)
	}
	t := &Trainer{cfg: cfg, m: m, backend: backend}
	for i := range mc.NumHiddenLayers {
		if mc.IsMoE(i) {
			t.biasVar = append(t.biasVar, fmt.Sprintf("/model/layers/%d/mlp/gate/e_score_correction_bias", i))
		}
	}
	if v := m.Store.GetVariable(optScope + "/step"); v == nil {
		if _, err := m.Store.CreateVariable(optScope+"/step", tensors.FromValue(int64(0))); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}
	var err error
	if t.stepExec, err = gm.NewExec(backend, m.Store, func(s *gm.Scope, in []*graph.Node) []*graph.Node { return t.graph(s, in, true) }); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if t.accumExec, err = gm.NewExec(backend, m.Store, func(s *gm.Scope, in []*graph.Node) []*graph.Node { return t.graph(s, in, false) }); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if t.evalExec, err = gm.NewExec(backend, m.Store, t.evalGraph); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return t, nil
}

// Config returns the run's configuration.
func (t *Trainer) Config() Config { return t.cfg }

// Model returns the model being trained.
func (t *Trainer) Model() *model.Model { return t.m }

// StepsDone is the number of optimizer steps taken.
func (t *Trainer) StepsDone() int { return t.step }

// Finalize frees the compiled graphs.
func (t *Trainer) Finalize() {
	t.stepExec.Finalize()
	t.accumExec.Finalize()
	t.evalExec.Finalize()
}

// losses is one forward pass's losses.
type losses struct {
	total, lm *graph.Node
	kl        []*graph.Node // per layer, Σ_t KL / (B·T)
	balance   []*graph.Node // per MoE layer
	load      []*graph.Node // per MoE layer [E]
}

// forward runs the model on a batch and builds the stage's loss.
// in: tokens, targets, positions, segments [B, T] int32, loss weights [B, T]
// float32, and optionally the LM loss's scale in the total (a scalar, see
// Step).
func (t *Trainer) forward(scope *gm.Scope, in []*graph.Node) losses {
	tokens, targets, pos, seg, w := in[0], in[1], in[2], in[3], in[4]
	g := tokens.Graph()
	B, T := tokens.Shape().Dim(0), tokens.Shape().Dim(1)
	st := t.cfg.Stage
	opts := model.Options{
		Dense:       st.dense(),
		Segments:    seg,
		TokenMask:   graph.ConvertDType(graph.NotEqual(seg, graph.ScalarZero(g, dtypes.Int32)), dtypes.Float32), // [B, T]: padding routes nothing
		BalanceLoss: t.cfg.Alpha > 0,
		NativeTopK:  t.cfg.Native,
	}
	if t.m.Config.HasIndexer() && st != Pretrain {
		opts.IndexerLoss = model.SparseIndexerLoss
		if st == DSAWarmup {
			opts.IndexerLoss = model.WarmupIndexerLoss
		}
	}
	out := model.Forward(scope, t.m.Config, tokens, pos, nil, opts)
	var l losses
	l.lm = model.LMLoss(out.Logits, targets, w)
	l.load = out.Load
	// The KL is the model's sum over query positions (dsa.md §9), divided
	// by B·T so that its scale, and its share of the clipped global norm,
	// does not grow with the batch.
	var klSum *graph.Node
	for _, kl := range out.IndexerKL {
		k := graph.DivScalar(kl, float64(B*T))
		l.kl = append(l.kl, k)
		klSum = addOr(klSum, k)
	}
	var balSum *graph.Node
	for _, b := range out.Balance {
		l.balance = append(l.balance, b)
		balSum = addOr(balSum, b)
	}
	switch st {
	case DSAWarmup:
		l.total = klSum
	default:
		l.total = l.lm
		if len(in) > 5 {
			l.total = graph.Mul(l.lm, in[5])
		}
		if klSum != nil {
			l.total = graph.Add(l.total, klSum)
		}
	}
	if balSum != nil && st != DSAWarmup {
		l.total = graph.Add(l.total, graph.MulScalar(balSum, t.cfg.Alpha))
	}
	return l
}

func addOr(sum, x *graph.Node) *graph.Node {
	if sum == nil {
		return x
	}
	return graph.Add(sum, x)
}

// outputs lists a forward pass's reported values, recording their counts.
func (t *Trainer) outputs(l losses) []*graph.Node {
	t.nKL, t.nBal, t.nLoad = len(l.kl), len(l.balance), len(l.load)
	outs := []*graph.Node{l.total, l.lm}
	outs = append(outs, l.kl...)
	outs = append(outs, l.balance...)
	return append(outs, l.load...)
}

// trainable lists the stage's variables that the graph uses, in the
// model's table order: only these are differentiated.
func (t *Trainer) trainable(g *graph.Graph) []*gm.Variable {
	var vs []*gm.Variable
	for _, mv := range t.m.Config.Vars(false) {
		v := t.m.Store.GetVariable(mv.Path)
		if v != nil && t.cfg.Stage.trains(mv.Path) && v.InUseByGraph(g) {
			vs = append(vs, v)
		}
	}
	return vs
}

// optVar returns the optimizer variable kind/<path>, zero-initialised.
func (t *Trainer) optVar(kind string, v *gm.Variable) *gm.Variable {
	return t.m.Store.VariableWithShape(optScope+"/"+kind+v.Path(), shapes.Make(dtypes.Float32, v.Shape().Dimensions...), initializer.Zero)
}

// graph is one micro-batch's forward and backward pass: in is the batch
// (forward's five inputs), in[5] the LM loss's scale and, with apply,
// in[6] the learning rate. Without apply it adds the gradients into the
// accumulators; with apply (the last micro-batch) it averages them with the
// accumulated ones, clips, and takes the AdamW step. Outputs: total loss,
// LM loss, KL per layer, balance per MoE layer, load per MoE layer, and
// with apply the gradient norm before clipping.
func (t *Trainer) graph(scope *gm.Scope, in []*graph.Node, apply bool) []*graph.Node {
	g := in[0].Graph()
	l := t.forward(scope, in[:6])
	vars := t.trainable(g)
	nodes := make([]*graph.Node, len(vars))
	for i, v := range vars {
		nodes[i] = v.NodeValue(g)
	}
	grads := graph.Gradient(l.total, nodes...)
	outs := t.outputs(l)
	if !apply {
		for i, v := range vars {
			acc := t.optVar("acc", v)
			acc.SetNodeValue(graph.Add(acc.NodeValue(g), grads[i]))
		}
		return outs
	}
	if t.cfg.Accum > 1 {
		inv := 1 / float64(t.cfg.Accum)
		for i, v := range vars {
			acc := t.optVar("acc", v)
			grads[i] = graph.MulScalar(graph.Add(acc.NodeValue(g), grads[i]), inv)
			acc.SetNodeValue(graph.ZerosLike(grads[i]))
		}
	}
	norm := t.adamW(g, vars, grads, in[6])
	return append(outs, norm)
}

// adamW clips the gradients to the global norm Clip and takes one AdamW
// step (Loshchilov & Hutter; PyTorch's order: decay, then the Adam update):
//
//	m ← β1·m + (1−β1)·g        v ← β2·v + (1−β2)·g²
//	p ← p·(1 − lr·λ) − lr · (m/(1−β1^t)) / (√(v/(1−β2^t)) + ε)
//
// with λ = Decay for matrices and 0 for norms, biases and embeddings
// (decays). It returns the global gradient norm before clipping.
func (t *Trainer) adamW(g *graph.Graph, vars []*gm.Variable, grads []*graph.Node, lr *graph.Node) *graph.Node {
	f32 := func(x float64) *graph.Node { return graph.Scalar(g, dtypes.Float32, x) }
	var sumSq *graph.Node
	for _, gr := range grads {
		sumSq = addOr(sumSq, graph.ReduceAllSum(graph.Square(gr)))
	}
	norm := graph.Sqrt(sumSq)
	if t.cfg.Clip > 0 { // torch.nn.utils.clip_grad_norm_: scale by min(1, clip/(norm+1e-6))
		scale := graph.Min(f32(1), graph.Div(f32(t.cfg.Clip), graph.Add(norm, f32(1e-6))))
		for i := range grads {
			grads[i] = graph.Mul(grads[i], scale)
		}
	}
	stepVar := t.m.Store.GetVariable(optScope + "/step")
	step := graph.Add(stepVar.NodeValue(g), graph.Scalar(g, dtypes.Int64, 1))
	stepVar.SetNodeValue(step)
	tf := graph.ConvertDType(step, dtypes.Float32)
	b1, b2 := t.cfg.Beta1, t.cfg.Beta2
	bc1 := graph.Sub(f32(1), graph.Pow(f32(b1), tf))
	bc2 := graph.Sub(f32(1), graph.Pow(f32(b2), tf))
	lr = graph.ConvertDType(lr, dtypes.Float32)
	for i, v := range vars {
		gr := grads[i]
		mv, vv := t.optVar("m", v), t.optVar("v", v)
		m := graph.Add(graph.MulScalar(mv.NodeValue(g), b1), graph.MulScalar(gr, 1-b1))
		s := graph.Add(graph.MulScalar(vv.NodeValue(g), b2), graph.MulScalar(graph.Square(gr), 1-b2))
		mv.SetNodeValue(m)
		vv.SetNodeValue(s)
		upd := graph.Div(graph.Div(m, bc1), graph.Add(graph.Sqrt(graph.Div(s, bc2)), f32(t.cfg.Eps)))
		p := v.NodeValue(g)
		if t.cfg.Decay > 0 && decays(v.Path(), v.Shape().Rank()) {
			p = graph.Mul(p, graph.Sub(f32(1), graph.MulScalar(lr, t.cfg.Decay)))
		}
		v.SetNodeValue(graph.Sub(p, graph.Mul(lr, upd)))
	}
	return norm
}

// decays reports whether weight decay applies to a variable: matrices
// (linear maps, stacked experts, the router, the head) decay; norms and
// biases (vectors) and the token embeddings do not — decaying an embedding
// row shrinks rare tokens toward zero merely for being rare.
func decays(path string, rank int) bool {
	return rank >= 2 && !strings.Contains(path, "embed_tokens")
}

// evalGraph is the forward pass alone.
func (t *Trainer) evalGraph(scope *gm.Scope, in []*graph.Node) []*graph.Node {
	return t.outputs(t.forward(scope, in))
}

// Batch is one micro-batch as [B, T] arrays, row-major.
type Batch struct {
	B, T      int
	Tokens    []int32   // inputs
	Targets   []int32   // next tokens
	Positions []int32   // RoPE positions (within each packed document)
	Segments  []int32   // document ids within a row; 0 is padding
	Weights   []float32 // loss weight of each target
}

// NewBatch lays rows of T+1 tokens (data.Row) into a batch.
func NewBatch(rows []data.Row) (Batch, error) {
	if len(rows) == 0 {
		return Batch{}, fmt.Errorf("train: empty batch")
	}
	T := len(rows[0].Tokens) - 1
	b := Batch{B: len(rows), T: T}
	for i, r := range rows {
		if len(r.Tokens) != T+1 || len(r.Segments) != T+1 || len(r.Positions) != T+1 || len(r.Mask) != T {
			return Batch{}, fmt.Errorf("train: batch row %d has %d tokens, %d segments, %d positions, %d mask entries; want %d, %d, %d, %d",
				i, len(r.Tokens), len(r.Segments), len(r.Positions), len(r.Mask), T+1, T+1, T+1, T)
		}
		b.Tokens = append(b.Tokens, r.Tokens[:T]...)
		b.Targets = append(b.Targets, r.Tokens[1:]...)
		b.Positions = append(b.Positions, r.Positions[:T]...)
		b.Segments = append(b.Segments, r.Segments[:T]...)
		b.Weights = append(b.Weights, r.Mask...)
	}
	return b, nil
}

func (b Batch) tensors() []any {
	return []any{
		tensors.FromFlatDataAndDimensions(b.Tokens, b.B, b.T),
		tensors.FromFlatDataAndDimensions(b.Targets, b.B, b.T),
		tensors.FromFlatDataAndDimensions(b.Positions, b.B, b.T),
		tensors.FromFlatDataAndDimensions(b.Segments, b.B, b.T),
		tensors.FromFlatDataAndDimensions(b.Weights, b.B, b.T),
	}
}

// checkVocab rejects token ids outside the model's vocabulary.
func (t *Trainer) checkVocab(b Batch) error {
	V := int32(t.m.Config.VocabSize)
	for i, id := range b.Tokens {
		if id < 0 || id >= V {
			return fmt.Errorf("train: token %d at row %d, position %d is outside the vocabulary [0, %d)", id, i/b.T, i%b.T, V)
		}
	}
	for i, id := range b.Targets {
		if id < 0 || id >= V {
			return fmt.Errorf("train: target %d at row %d, position %d is outside the vocabulary [0, %d)", id, i/b.T, i%b.T, V)
		}
	}
	return nil
}

// Metrics is one optimizer step (or an evaluation) as logged.
type Metrics struct {
	Step       int         `json:"step"`              // optimizer steps done after this one
	Loss       float64     `json:"loss"`              // the stage's total loss (LM part token-weighted over micro-batches)
	LMLoss     float64     `json:"lm_loss"`           // mean over the step's counted targets
	KL         []float64   `json:"kl,omitempty"`      // per layer, Σ_t KL / (B·T)
	Balance    []float64   `json:"balance,omitempty"` // per MoE layer, sequence-wise balance loss
	GradNorm   float64     `json:"grad_norm"`         // global norm before clipping
	LR         float64     `json:"lr"`
	Tokens     int         `json:"tokens"` // token positions in the step (B·T·Accum)
	TokensPerS float64     `json:"tokens_per_s"`
	Load       []LoadStats `json:"load,omitempty"` // per MoE layer
	EvalLoss   *float64    `json:"eval_loss,omitempty"`
	EvalLM     *float64    `json:"eval_lm_loss,omitempty"`
	EvalKL     []float64   `json:"eval_kl,omitempty"`
}

// Step takes one optimizer step over len(micro) == Accum micro-batches,
// then moves every MoE layer's correction bias by the step's expert loads.
func (t *Trainer) Step(micro []Batch) (met Metrics, err error) {
	defer catch(&err, "train: step")
	if len(micro) != t.cfg.Accum {
		return met, fmt.Errorf("train: step got %d micro-batches, config accum is %d", len(micro), t.cfg.Accum)
	}
	start := time.Now()
	lr := t.cfg.LRAt(t.step)
	// Token weighting: micro-batch i's LM loss (its own mean) is scaled by
	// Accum·n_i/N, n_i its counted targets and N theirs over the step, so
	// that the averaged gradient is that of the mean over all N targets —
	// one big batch — however unevenly the loss mask falls.
	counts := make([]float64, len(micro))
	var total float64
	for i, b := range micro {
		if err := t.checkVocab(b); err != nil {
			return met, err
		}
		for _, w := range b.Weights {
			counts[i] += float64(w)
		}
		total += counts[i]
	}
	var loads [][]float32
	for i, b := range micro {
		scale := 1.0
		if total > 0 && len(micro) > 1 {
			scale = float64(len(micro)) * counts[i] / total
		}
		args := append(b.tensors(), tensors.FromValue(float32(scale)))
		exec := t.accumExec
		if i == len(micro)-1 {
			exec = t.stepExec
			args = append(args, tensors.FromValue(float32(lr)))
		}
		outs, err := exec.Exec(args...)
		if err != nil {
			return met, fmt.Errorf("train: step %d: %w", t.step+1, err)
		}
		loads = t.collect(&met, outs, loads, scale)
		if i == len(micro)-1 {
			met.GradNorm = float64(scalarOf(outs[len(outs)-1]))
		}
		met.Tokens += b.B * b.T
	}
	scaleMetrics(&met, len(micro))
	if err := t.balance(loads); err != nil {
		return met, err
	}
	t.step++
	met.Step, met.LR = t.step, lr
	for _, l := range loads {
		met.Load = append(met.Load, loadStats(l))
	}
	met.TokensPerS = float64(met.Tokens) / time.Since(start).Seconds()
	if math.IsNaN(met.Loss) || math.IsInf(met.Loss, 0) {
		return met, fmt.Errorf("train: step %d: loss is %v", t.step, met.Loss)
	}
	return met, nil
}

// collect adds one graph run's reported values into met (sums; see
// scaleMetrics), the LM loss weighted by lmScale, and the loads into loads.
func (t *Trainer) collect(met *Metrics, outs []*tensors.Tensor, loads [][]float32, lmScale float64) [][]float32 {
	met.Loss += float64(scalarOf(outs[0]))
	met.LMLoss += lmScale * float64(scalarOf(outs[1]))
	k := 2
	if met.KL == nil && t.nKL > 0 {
		met.KL = make([]float64, t.nKL)
	}
	for i := range t.nKL {
		met.KL[i] += float64(scalarOf(outs[k+i]))
	}
	k += t.nKL
	if met.Balance == nil && t.nBal > 0 {
		met.Balance = make([]float64, t.nBal)
	}
	for i := range t.nBal {
		met.Balance[i] += float64(scalarOf(outs[k+i]))
	}
	k += t.nBal
	if loads == nil {
		loads = make([][]float32, t.nLoad)
	}
	for i := range t.nLoad {
		l := tensors.MustCopyFlatData[float32](outs[k+i])
		if loads[i] == nil {
			loads[i] = l
			continue
		}
		for e := range l {
			loads[i][e] += l[e]
		}
	}
	return loads
}

// scaleMetrics turns sums over n graph runs into means.
func scaleMetrics(met *Metrics, n int) {
	f := 1 / float64(n)
	met.Loss *= f
	met.LMLoss *= f
	for i := range met.KL {
		met.KL[i] *= f
	}
	for i := range met.Balance {
		met.Balance[i] *= f
	}
}

// Eval is the mean loss over batches, without changing anything.
func (t *Trainer) Eval(batches []Batch) (met Metrics, err error) {
	defer catch(&err, "train: eval")
	if len(batches) == 0 {
		return met, fmt.Errorf("train: eval: no batches")
	}
	for _, b := range batches {
		if err := t.checkVocab(b); err != nil {
			return met, err
		}
		outs, err := t.evalExec.Exec(b.tensors()...)
		if err != nil {
			return met, fmt.Errorf("train: eval: %w", err)
		}
		t.collect(&met, outs, nil, 1)
	}
	scaleMetrics(&met, len(batches))
	met.Step = t.step
	return met, nil
}

func scalarOf(t *tensors.Tensor) float32 {
	switch t.DType() {
	case dtypes.Float32:
		return tensors.MustCopyFlatData[float32](t)[0]
	case dtypes.Float64:
		return float32(tensors.MustCopyFlatData[float64](t)[0])
	}
	v, _, err := model.TensorFloat32(t)
	if err != nil || len(v) == 0 {
		return float32(math.NaN())
	}
	return v[0]
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
