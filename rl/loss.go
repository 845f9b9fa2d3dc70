package rl

import (
	"math"

	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
)

// LossConfig chooses GRPO's objective and which of V3.2's stabilisers are on
// (rl.md §2–4, §12). The zero value is not useful; start from DefaultLoss.
type LossConfig struct {
	Eps        float64 // symmetric clip ε of the token-level ratio
	Beta       float64 // weight of the KL penalty
	UnbiasedKL bool    // ρ·k3 (V3.2, unbiased; gradient through ρ) instead of plain k3
	OPSM       bool    // off-policy sequence masking
	Delta      float64 // OPSM threshold δ on the mean per-token log(π_old/π_θ)
	TokenMean  bool    // aggregate as token-mean over the batch instead of seq-mean-token-mean
}

// DefaultLoss is rl.md §12's defaults.
func DefaultLoss() LossConfig {
	return LossConfig{Eps: 0.2, Beta: 0, UnbiasedKL: true, OPSM: true, Delta: 0.5}
}

// Batch is one mini-batch of responses as graph nodes. Axes: B responses
// (rows), T response positions, V vocabulary, K the widest kept set.
type Batch struct {
	Logits  *graph.Node // [B, T, V] the policy's logits at each response position
	Targets *graph.Node // [B, T] int32 the sampled tokens
	Kept    *graph.Node // [B, T, K] int32 token ids the sampler's truncation kept, −1 padded (all −1: untruncated); nil = full vocabulary
	OldLogp *graph.Node // [B, T] a_t: the sampler's processed log-prob (π_old, rl.md §7)
	RefLogp *graph.Node // [B, T] b_t: log π_ref over the same kept set; nil when Beta is 0
	Adv     *graph.Node // [B] group advantage Â_i
	Mask    *graph.Node // [B, T] float32, 1 on response tokens, 0 on padding
	Temp    float64     // sampling temperature τ
}

// Stats are the per-step quantities rl.md §10 asks to log (scalars).
type Stats struct {
	PGLoss, KL, ClipLow, ClipHigh, Masked, RatioMean, RatioMin, RatioMax, MismatchAbs, Entropy, OPSMStat *graph.Node
}

// KeptLogprobs is u_t = z_o/τ − logsumexp_{v∈K_t} z_v/τ (keep sampling mask,
// rl.md §6): the log-prob of each target over the recorded kept set, and the
// entropy of the renormalised distribution. logits [B, T, V], targets
// [B, T], kept [B, T, K] (−1 padded) or nil → u [B, T], entropy [B, T].
func KeptLogprobs(logits, targets, kept *graph.Node, temp float64) (u, entropy *graph.Node) {
	g := logits.Graph()
	dims := logits.Shape().Dimensions
	B, T, V := dims[0], dims[1], dims[2]
	z := graph.ConvertDType(logits, dtypes.Float32)
	if temp != 1 {
		z = graph.MulScalar(z, 1/temp)
	}
	if kept != nil {
		z = graph.Where(keptMask(kept, V), z, graph.Infinity(g, dtypes.Float32, -1))
	}
	logp := graph.LogSoftmax(z, -1) // [B, T, V], −∞ off the kept set
	full := shapes.Make(dtypes.Int32, B, T, 1)
	at := graph.Concatenate([]*graph.Node{graph.Iota(g, full, 0), graph.Iota(g, full, 1),
		graph.Reshape(graph.ConvertDType(targets, dtypes.Int32), B, T, 1)}, -1) // [B, T, 3]
	u = graph.Gather(logp, at) // [B, T]
	p := graph.Exp(logp)
	safe := graph.Where(graph.IsFinite(logp), logp, graph.ZerosLike(logp))
	entropy = graph.Neg(graph.ReduceSum(graph.Mul(p, safe), -1))
	return u, entropy
}

// keptMask turns kept ids [B, T, K] (−1 padded) into a boolean [B, T, V].
// A position with no kept id at all was sampled without truncation: its set
// is the whole vocabulary.
func keptMask(kept *graph.Node, V int) *graph.Node {
	g := kept.Graph()
	dims := kept.Shape().Dimensions
	B, T, K := dims[0], dims[1], dims[2]
	ids := graph.ConvertDType(kept, dtypes.Int32)
	// Padding (−1) lands in an extra column V that is cut off afterwards.
	ids = graph.Where(graph.LessThan(ids, graph.ScalarZero(g, dtypes.Int32)), graph.Scalar(g, dtypes.Int32, V), ids)
	full := shapes.Make(dtypes.Int32, B, T, K, 1)
	at := graph.Concatenate([]*graph.Node{graph.Iota(g, full, 0), graph.Iota(g, full, 1), graph.Reshape(ids, B, T, K, 1)}, -1)
	hit := graph.ScatterMax(graph.Zeros(g, shapes.Make(dtypes.Float32, B, T, V+1)), at,
		graph.Ones(g, shapes.Make(dtypes.Float32, B, T, K)), false, false)
	in := graph.GreaterThan(graph.SliceAxis(hit, -1, graph.AxisRange(0, V)), graph.ScalarZero(g, dtypes.Float32))
	none := graph.LogicalNot(graph.ReduceLogicalOr(graph.GreaterOrEqual(graph.ConvertDType(kept, dtypes.Int32), graph.ScalarZero(g, dtypes.Int32)), -1)) // [B, T]
	return graph.LogicalOr(in, graph.BroadcastToDims(graph.ExpandAxes(none, -1), B, T, V))
}

// KLTerm is the per-token KL penalty D_t: ρ·k3 when unbiased (V3.2, paper
// Eq. 7; the gradient flows through ρ), plain k3 otherwise, with
// k3 = e^{b−u} − (b−u) − 1 and ρ = e^{u−a}. u, a, b [B, T].
func KLTerm(u, a, b *graph.Node, unbiased bool) *graph.Node {
	d := graph.Sub(b, u)
	k3 := graph.Sub(graph.Sub(graph.Exp(d), d), graph.OnesLike(d))
	if !unbiased {
		return k3
	}
	return graph.Mul(graph.Exp(graph.Sub(u, a)), k3)
}

// SequenceMask is OPSM's M_i (paper Eqs. 8–9): 0 for a sequence with a
// negative advantage whose mean per-token log(π_old/π_θ) exceeds δ, else 1.
// u enters under stop-gradient; padding is excluded. Returns M [B] and the
// statistic [B].
func SequenceMask(u, a, adv, mask *graph.Node, delta float64) (m, stat *graph.Node) {
	g := u.Graph()
	diff := graph.Mul(graph.Sub(a, graph.StopGradient(u)), mask) // [B, T]
	n := graph.Max(graph.ReduceSum(mask, -1), graph.Scalar(g, dtypes.Float32, 1))
	stat = graph.Div(graph.ReduceSum(diff, -1), n) // [B]
	drop := graph.LogicalAnd(graph.LessThan(adv, graph.ScalarZero(g, dtypes.Float32)),
		graph.GreaterThan(stat, graph.Scalar(g, dtypes.Float32, delta)))
	m = graph.Where(drop, graph.ZerosLike(stat), graph.OnesLike(stat))
	return graph.StopGradient(m), stat
}

// Loss is −J(θ) of paper Eqs. 5–6 with the chosen stabilisers, and the
// statistics to log. The keep-routing stabiliser acts before this: the
// logits come from a forward pass with the sampler's routes replayed.
func Loss(batch Batch, cfg LossConfig) (*graph.Node, Stats) {
	g := batch.Logits.Graph()
	f32 := func(x *graph.Node) *graph.Node { return graph.ConvertDType(x, dtypes.Float32) }
	mask := f32(batch.Mask)
	a := f32(batch.OldLogp)
	adv := f32(batch.Adv)
	u, ent := KeptLogprobs(batch.Logits, batch.Targets, batch.Kept, batch.Temp)
	u = graph.Where(graph.GreaterThan(mask, graph.ScalarZero(g, dtypes.Float32)), u, a) // padding: ρ = 1, finite
	rho := graph.Exp(graph.Sub(u, a))                                                   // [B, T]
	A := graph.ExpandAxes(adv, -1)                                                      // [B, 1]
	clipped := graph.Max(graph.Min(rho, graph.Scalar(g, dtypes.Float32, 1+cfg.Eps)), graph.Scalar(g, dtypes.Float32, 1-cfg.Eps))
	surr := graph.Min(graph.Mul(rho, A), graph.Mul(clipped, A)) // [B, T]

	M := graph.OnesLike(adv)
	var stat *graph.Node
	if cfg.OPSM {
		M, stat = SequenceMask(u, a, adv, mask, cfg.Delta)
	}
	perToken := graph.Mul(surr, graph.ExpandAxes(M, -1))
	var kl *graph.Node
	if cfg.Beta != 0 && batch.RefLogp != nil {
		kl = KLTerm(u, a, f32(batch.RefLogp), cfg.UnbiasedKL)
		perToken = graph.Sub(perToken, graph.MulScalar(kl, cfg.Beta))
	}
	perToken = graph.Mul(perToken, mask)
	agg := func(x *graph.Node) *graph.Node { return aggregate(x, mask, cfg.TokenMean) }
	loss := graph.Neg(agg(perToken))

	var st Stats
	st.PGLoss = graph.Neg(agg(graph.Mul(graph.Mul(surr, graph.ExpandAxes(M, -1)), mask)))
	if kl != nil {
		st.KL = agg(graph.Mul(kl, mask))
	}
	tokens := graph.Max(graph.ReduceAllSum(mask), graph.Scalar(g, dtypes.Float32, 1))
	frac := func(cond *graph.Node) *graph.Node {
		return graph.Div(graph.ReduceAllSum(graph.Mul(f32(cond), mask)), tokens)
	}
	zero := graph.ScalarZero(g, dtypes.Float32)
	st.ClipLow = frac(graph.LogicalAnd(graph.LessThan(A, zero), graph.LessThan(rho, graph.Scalar(g, dtypes.Float32, 1-cfg.Eps))))
	st.ClipHigh = frac(graph.LogicalAnd(graph.GreaterThan(A, zero), graph.GreaterThan(rho, graph.Scalar(g, dtypes.Float32, 1+cfg.Eps))))
	st.Masked = graph.ReduceAllMean(graph.OneMinus(M))
	st.RatioMean = graph.Div(graph.ReduceAllSum(graph.Mul(rho, mask)), tokens)
	on := graph.GreaterThan(mask, zero)
	st.RatioMin = graph.ReduceAllMin(graph.Where(on, rho, graph.Infinity(g, dtypes.Float32, 1)))
	st.RatioMax = graph.ReduceAllMax(graph.Where(on, rho, graph.Infinity(g, dtypes.Float32, -1)))
	st.MismatchAbs = graph.Div(graph.ReduceAllSum(graph.Mul(graph.Abs(graph.Sub(u, a)), mask)), tokens)
	st.Entropy = graph.Div(graph.ReduceAllSum(graph.Mul(ent, mask)), tokens)
	if stat != nil {
		st.OPSMStat = graph.ReduceAllMean(stat)
	}
	return loss, st
}

// aggregate is seq-mean-token-mean (paper: mean over sequences of each
// sequence's token mean; masked sequences still count) or token-mean.
func aggregate(x, mask *graph.Node, tokenMean bool) *graph.Node {
	g := x.Graph()
	if tokenMean {
		return graph.Div(graph.ReduceAllSum(x), graph.Max(graph.ReduceAllSum(mask), graph.Scalar(g, dtypes.Float32, 1)))
	}
	n := graph.Max(graph.ReduceSum(mask, -1), graph.Scalar(g, dtypes.Float32, 1)) // [B]
	return graph.ReduceAllMean(graph.Div(graph.ReduceSum(x, -1), n))
}

// Advantages are group-relative: R_i − mean of its group (V3.2, no division
// by the std), or standardised when std is set. rewards are grouped
// consecutively, G per prompt.
func Advantages(rewards []float64, G int, std bool) []float64 {
	adv := make([]float64, len(rewards))
	for start := 0; start+G <= len(rewards); start += G {
		grp := rewards[start : start+G]
		var mean float64
		for _, r := range grp {
			mean += r
		}
		mean /= float64(G)
		var v float64
		for _, r := range grp {
			v += (r - mean) * (r - mean)
		}
		sd := 0.0
		if G > 1 {
			sd = math.Sqrt(v / float64(G-1))
		}
		for i, r := range grp {
			adv[start+i] = r - mean
			if std {
				adv[start+i] /= sd + 1e-4
			}
		}
	}
	return adv
}
