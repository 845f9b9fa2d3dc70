package rl

import (
	"fmt"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/train"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// Updater takes GRPO steps on the policy: every mini-batch's forward pass
// replays the sampler's expert routes (keep routing), its log-probs are
// taken over the sampler's kept sets (keep sampling mask), and the loss is
// Loss with the configured stabilisers. The optimizer, schedule and
// checkpoints are train's.
type Updater struct {
	Trainer  *train.Trainer
	Loss     LossConfig
	Temp     float64 // the sampling temperature τ
	Replay   bool    // keep routing: replay the sampler's experts (on by default)
	KeepMask bool    // keep sampling mask: π_θ over the sampler's kept sets (on by default)
	// Truncation is the sampler's top-p/top-k/min-p, re-applied to the
	// trainer's logits by the sampling-mask monitor (KeptSetMismatch). Run
	// sets it from the rollout's sampling parameters.
	Truncation Truncation
	step       *train.CustomStep
	nMoE       int
}

// UpdateStats are one mini-batch's objective statistics (rl.md §10).
type UpdateStats struct {
	Loss, GradNorm                                                float64
	PGLoss, KL, ClipLow, ClipHigh, Masked                         float64
	RatioMean, RatioMin, RatioMax, MismatchAbs, Entropy, OPSMStat float64
	RoutingMismatch                                               float64 // share of (token, MoE layer) pairs where the router's own experts differ from the replayed ones
	// SamplingMaskMismatch is the share of response tokens where the
	// sampler's truncation, re-applied to the trainer's logits at τ, keeps
	// another token set than the one the sampler recorded (rl.md §6, §10):
	// ≈ 0 at mini-batch 0 unless sampler and trainer numerics differ; what
	// tells whether keep-sampling-mask is needed.
	SamplingMaskMismatch float64
	// KeptMass is the trainer's mean probability mass (at τ) on the
	// recorded kept sets: 1 − KeptMass is what truncation cuts, and
	// −log KeptMass the bias a full-vocabulary π_θ would put on log ρ (rl.md §6.1).
	KeptMass float64
	KeptSize float64 // mean |K_t| over response tokens (the vocabulary size where sampling did not truncate)
}

// NewUpdater compiles the GRPO step for the trainer's model.
func NewUpdater(backend compute.Backend, tr *train.Trainer, loss LossConfig, temp float64) (*Updater, error) {
	u := &Updater{Trainer: tr, Loss: loss, Temp: temp, Replay: true, KeepMask: true, nMoE: tr.Model().Config.NumMoELayers()}
	if loss.Beta != 0 {
		if err := freezeReference(tr.Model()); err != nil {
			return nil, err
		}
	}
	step, err := tr.Custom(u.graph)
	if err != nil {
		return nil, err
	}
	u.step = step
	return u, nil
}

// inputs of the graph: tokens [B,S], pos [B,S], mask [B,S] (1 = real
// position), respPos [B,R] (position predicting each response token),
// targets [B,R], kept [B,R,K] (the recorded sets, whether or not the loss
// uses them), old [B,R], adv [B], respMask [B,R], knobs [4] (keep-mask 0/1,
// top-p, top-k, min-p), then one routes [B,S,K_e] per MoE layer.
func (u *Updater) graph(scope *gm.Scope, in []*graph.Node) (*graph.Node, []*graph.Node) {
	m := u.Trainer.Model()
	tokens, pos, mask := in[0], in[1], in[2]
	opts := model.Options{TokenMask: mask}
	if u.Replay {
		opts.Routes, opts.OwnRoutes = in[10:10+u.nMoE], true
	}
	out := model.Forward(scope, m.Config, tokens, pos, nil, opts)
	logits := gatherRows(out.Logits, in[3]) // [B, R, V]
	knobs := in[9]
	keepMask := graph.GreaterThan(graph.Reshape(graph.Slice(knobs, graph.AxisElem(0))), graph.ScalarZero(knobs.Graph(), knobs.DType()))
	kept := graph.Where(graph.BroadcastToDims(keepMask, in[5].Shape().Dimensions...), in[5], graph.Scalar(knobs.Graph(), in[5].DType(), -1))
	batch := Batch{Logits: logits, Targets: in[4], Kept: kept, OldLogp: in[6], Adv: in[7], Mask: in[8], Temp: u.Temp}
	if u.Loss.Beta != 0 {
		// π_ref: the frozen initial policy, routing itself (rl.md §5), over the
		// same kept sets (rl.md §12's default).
		ref := model.Forward(scope.At(refScope), m.Config, tokens, pos, nil, model.Options{TokenMask: mask})
		b, _ := KeptLogprobs(gatherRows(ref.Logits, in[3]), in[4], kept, u.Temp)
		batch.RefLogp = graph.StopGradient(b)
	}
	loss, st := Loss(batch, u.Loss)
	// The sampling-mask monitor, on the recorded sets even when the loss
	// ignores them.
	differ, mass, size := KeptSetMismatch(logits, in[5], graph.SliceAxis(knobs, 0, graph.AxisRange(1, 4)), u.Temp)
	respMask := graph.ConvertDType(in[8], dtypes.Float32)
	nTok := graph.Max(graph.ReduceAllSum(respMask), graph.Scalar(loss.Graph(), dtypes.Float32, 1))
	maskMismatch := graph.Div(graph.ReduceAllSum(graph.Mul(graph.ConvertDType(differ, dtypes.Float32), respMask)), nTok)
	keptMass := graph.Div(graph.ReduceAllSum(graph.Mul(mass, respMask)), nTok)
	keptSize := graph.Div(graph.ReduceAllSum(graph.Mul(size, respMask)), nTok)
	zero := graph.ScalarZero(loss.Graph(), loss.DType())
	or0 := func(x *graph.Node) *graph.Node {
		if x == nil {
			return zero
		}
		return x
	}
	return loss, []*graph.Node{or0(st.PGLoss), or0(st.KL), st.ClipLow, st.ClipHigh, st.Masked,
		st.RatioMean, st.RatioMin, st.RatioMax, st.MismatchAbs, st.Entropy, or0(st.OPSMStat),
		or0(routingMismatch(opts.Routes, out.OwnRoutes, mask)), maskMismatch, keptMass, keptSize}
}

// routingMismatch is the share of (real token, MoE layer) pairs where the
// router's own expert set differs from the replayed one (rl.md §10).
func routingMismatch(forced, own []*graph.Node, mask *graph.Node) *graph.Node {
	if len(own) == 0 || len(own) != len(forced) {
		return nil
	}
	g := mask.Graph()
	m := graph.ConvertDType(mask, dtypes.Float32) // [B, S]
	var differ *graph.Node
	for l := range own {
		a := graph.ConvertDType(own[l], dtypes.Int32)                                                  // [B, S, K]
		b := graph.ConvertDType(forced[l], dtypes.Int32)                                               // [B, S, K]
		in := graph.ReduceLogicalOr(graph.Equal(graph.ExpandAxes(a, -1), graph.ExpandAxes(b, -2)), -1) // [B, S, K]: a's id is in b
		same := graph.ReduceLogicalAnd(in, -1)                                                         // [B, S]
		d := graph.ReduceAllSum(graph.Mul(graph.ConvertDType(graph.LogicalNot(same), dtypes.Float32), m))
		if differ == nil {
			differ = d
		} else {
			differ = graph.Add(differ, d)
		}
	}
	total := graph.Max(graph.MulScalar(graph.ReduceAllSum(m), float64(len(own))), graph.Scalar(g, dtypes.Float32, 1))
	return graph.Div(differ, total)
}

// gatherRows picks x[b, at[b, r]] for x [B, S, V] and at [B, R] → [B, R, V].
func gatherRows(x, at *graph.Node) *graph.Node {
	B, R := at.Shape().Dim(0), at.Shape().Dim(1)
	bi := graph.Iota(x.Graph(), shapes.Make(dtypes.Int32, B, R), 0)
	idx := graph.Stack([]*graph.Node{bi, graph.ConvertDType(at, dtypes.Int32)}, -1) // [B, R, 2]
	return graph.Gather(x, idx)
}

// Update takes one optimizer step on a mini-batch of samples.
func (u *Updater) Update(samples []Sample) (UpdateStats, error) {
	args, err := u.pack(samples)
	if err != nil {
		return UpdateStats{}, err
	}
	loss, norm, rep, err := u.step.Step(args...)
	if err != nil {
		return UpdateStats{}, err
	}
	f := func(i int) float64 { return float64(tensors.MustCopyFlatData[float32](rep[i])[0]) }
	return UpdateStats{Loss: loss, GradNorm: norm, PGLoss: f(0), KL: f(1), ClipLow: f(2), ClipHigh: f(3), Masked: f(4),
		RatioMean: f(5), RatioMin: f(6), RatioMax: f(7), MismatchAbs: f(8), Entropy: f(9), OPSMStat: f(10), RoutingMismatch: f(11),
		SamplingMaskMismatch: f(12), KeptMass: f(13), KeptSize: f(14)}, nil
}

// pack lays out a mini-batch: every sample's prompt and response (all but
// its last token) right-padded to the longest, with its records aligned to
// the positions that produced them.
func (u *Updater) pack(samples []Sample) ([]any, error) {
	cfg := u.Trainer.Model().Config
	B := len(samples)
	if B == 0 {
		return nil, fmt.Errorf("rl: empty mini-batch")
	}
	S, R, Kmax := 1, 1, 1
	for i, s := range samples {
		n := len(s.Result.Tokens)
		if n == 0 {
			return nil, fmt.Errorf("rl: sample %d has no response tokens", i)
		}
		seq := len(s.Prompt) + n - 1
		if u.Replay && len(s.Result.Routes) != seq {
			return nil, fmt.Errorf("rl: sample %d: %d recorded routes for %d positions (routes must line up with tokens)", i, len(s.Result.Routes), seq)
		}
		S, R = max(S, seq), max(R, n)
		for _, t := range s.Result.Tokens {
			Kmax = max(Kmax, len(t.Kept))
		}
	}
	// Every new shape is a new compiled step: round the lengths up to a few
	// sizes (rows of padding are masked out; kept ids of -1 are padding).
	S, R, Kmax = shapeBucket(S), shapeBucket(R), shapeBucket(Kmax)
	K := cfg.NumExpertsPerTok
	tokens, pos, mask := make([]int32, B*S), make([]int32, B*S), make([]float32, B*S)
	respPos, targets, old, respMask := make([]int32, B*R), make([]int32, B*R), make([]float32, B*R), make([]float32, B*R)
	kept := make([]int32, B*R*Kmax)
	adv := make([]float32, B)
	routes := make([][]int32, u.nMoE)
	for l := range routes {
		routes[l] = make([]int32, B*S*K)
	}
	for b, s := range samples {
		seq := append(append([]int32{}, s.Prompt...), idsOf(s.Result.Tokens[:len(s.Result.Tokens)-1])...)
		for p := range S {
			if p < len(seq) {
				tokens[b*S+p], mask[b*S+p] = seq[p], 1
			}
			pos[b*S+p] = int32(p)
			if u.Replay && p < len(seq) {
				for l := range u.nMoE {
					copy(routes[l][(b*S+p)*K:], s.Result.Routes[p][l])
				}
			} else {
				for l := range u.nMoE { // padding routes to experts 0..K-1 (masked out of loads)
					for k := range K {
						routes[l][(b*S+p)*K+k] = int32(k)
					}
				}
			}
		}
		adv[b] = float32(s.Adv)
		P := len(s.Prompt)
		for j, t := range s.Result.Tokens {
			at := b*R + j
			respPos[at], targets[at], old[at], respMask[at] = int32(P-1+j), t.ID, t.SampleLogprob, 1
			for k := range Kmax { // no kept ids: sampled without truncation (the whole vocabulary)
				kept[at*Kmax+k] = -1
				if k < len(t.Kept) {
					kept[at*Kmax+k] = t.Kept[k]
				}
			}
		}
	}
	keptT := tensors.FromFlatDataAndDimensions(kept, B, R, Kmax)
	knobs := append([]float32{0}, u.Truncation.values()...)
	if u.KeepMask {
		knobs[0] = 1
	}
	args := []any{
		tensors.FromFlatDataAndDimensions(tokens, B, S), tensors.FromFlatDataAndDimensions(pos, B, S),
		tensors.FromFlatDataAndDimensions(mask, B, S), tensors.FromFlatDataAndDimensions(respPos, B, R),
		tensors.FromFlatDataAndDimensions(targets, B, R), keptT, tensors.FromFlatDataAndDimensions(old, B, R),
		tensors.FromFlatDataAndDimensions(adv, B), tensors.FromFlatDataAndDimensions(respMask, B, R),
		tensors.FromFlatDataAndDimensions(knobs, 4),
	}
	for _, r := range routes {
		args = append(args, tensors.FromFlatDataAndDimensions(r, B, S, K))
	}
	return args, nil
}

// shapeBucket rounds n up to 8, 12, 16, 24, 32, 48, 64, …: at most 1.5×
// padding, and a handful of shapes for any mix of lengths.
func shapeBucket(n int) int {
	b := 8
	for b < n {
		if b&(b-1) == 0 {
			b += b / 2
		} else {
			b = b / 3 * 4
		}
	}
	return b
}

func idsOf(ts []engine.Token) []int32 {
	out := make([]int32, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

// refScope holds the frozen reference policy's weights in the model's store.
const refScope = "ref"

// freezeReference copies the policy's current weights under /ref, not
// trainable: the frozen initial policy the KL penalty measures against.
func freezeReference(m *model.Model) error {
	for _, v := range m.Config.Vars(false) {
		src := m.Store.GetVariable(v.Path)
		if src == nil {
			return fmt.Errorf("rl: reference policy: no weight %s", v.Path)
		}
		val, err := src.Value()
		if err != nil {
			return fmt.Errorf("rl: reference policy: %w", err)
		}
		clone, err := val.LocalClone()
		if err != nil {
			return fmt.Errorf("rl: reference policy: %w", err)
		}
		dst, err := m.Store.CreateVariable("/"+refScope+v.Path, clone)
		if err != nil {
			return fmt.Errorf("rl: reference policy: %w", err)
		}
		dst.SetTrainable(false)
	}
	return nil
}
