package rl_test

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/rl"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/gomlx/core/graph"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// run executes a graph of float32 inputs and returns its float32 outputs.
func run(t *testing.T, f func(in []*graph.Node) []*graph.Node, in ...any) [][]float32 {
	t.Helper()
	exec, err := graph.NewExec(testutil.Backend(t), f)
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	outs, err := exec.Exec(in...)
	if err != nil {
		t.Fatal(err)
	}
	res := make([][]float32, len(outs))
	for i, o := range outs {
		res[i] = tensors.MustCopyFlatData[float32](o)
	}
	return res
}

func logSoftmax(z []float64) []float64 {
	mx := slices.Max(z)
	var s float64
	for _, v := range z {
		s += math.Exp(v - mx)
	}
	out := make([]float64, len(z))
	for i, v := range z {
		out[i] = v - mx - math.Log(s)
	}
	return out
}

// On a random 6-way categorical, exactly (rl.md §3.2): the expectation of
// ρ·k3 under π_old is KL(π_θ‖π_ref); its gradient is ρ·(u−b), which matches
// a finite difference; plain k3 is biased off-policy and its gradient is
// 1 − π_ref/π_θ (the reverse KL's).
func TestUnbiasedKLEstimate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	draw := func() []float64 {
		z := make([]float64, 6)
		for i := range z {
			z[i] = rng.NormFloat64()
		}
		return logSoftmax(z)
	}
	u, a, b := draw(), draw(), draw() // log π_θ, log π_old, log π_ref
	f32 := func(x []float64) []float32 {
		out := make([]float32, len(x))
		for i, v := range x {
			out[i] = float32(v)
		}
		return out
	}
	outs := run(t, func(in []*graph.Node) []*graph.Node {
		uu, aa, bb := in[0], in[1], in[2]
		unb := rl.KLTerm(uu, aa, bb, true)
		plain := rl.KLTerm(uu, aa, bb, false)
		return []*graph.Node{unb, plain,
			graph.Gradient(graph.ReduceAllSum(unb), uu)[0], graph.Gradient(graph.ReduceAllSum(plain), uu)[0]}
	}, f32(u), f32(a), f32(b))
	var eUnb, ePlain, kl float64
	for y := range 6 {
		pOld := math.Exp(a[y])
		eUnb += pOld * float64(outs[0][y])
		ePlain += pOld * float64(outs[1][y])
		kl += math.Exp(u[y]) * (u[y] - b[y])
	}
	if math.Abs(eUnb-kl) > 1e-5 {
		t.Errorf("E_old[ρ·k3] = %.7f, KL(π_θ‖π_ref) = %.7f", eUnb, kl)
	}
	if math.Abs(ePlain-kl) < 1e-3 {
		t.Errorf("plain k3 is unbiased here too (%.6f vs %.6f): the test distribution proves nothing", ePlain, kl)
	}
	for y := range 6 {
		rho := math.Exp(u[y] - a[y])
		if want := rho * (u[y] - b[y]); math.Abs(float64(outs[2][y])-want) > 1e-5 {
			t.Errorf("y=%d: autodiff ∂(ρ·k3)/∂u = %.6f, closed form ρ(u−b) = %.6f", y, outs[2][y], want)
		}
		k3 := func(uu float64) float64 { d := b[y] - uu; return math.Exp(uu-a[y]) * (math.Exp(d) - d - 1) }
		h := 1e-4
		if fd := (k3(u[y]+h) - k3(u[y]-h)) / (2 * h); math.Abs(float64(outs[2][y])-fd) > 1e-3 {
			t.Errorf("y=%d: autodiff %.6f vs finite difference %.6f", y, outs[2][y], fd)
		}
		if want := 1 - math.Exp(b[y]-u[y]); math.Abs(float64(outs[3][y])-want) > 1e-5 {
			t.Errorf("y=%d: plain k3 gradient %.6f, want 1 − π_ref/π_θ = %.6f", y, outs[3][y], want)
		}
	}
}

// OPSM drops exactly the negative-advantage sequences whose mean per-token
// log(π_old/π_θ) exceeds δ — and never fires when the sampler's log-probs
// are silently replaced by the trainer's (the trap of rl.md §4).
func TestOffPolicySequenceMask(t *testing.T) {
	u := []float32{-1, -1, -1, -1, -1, -1, -1, -1} // [4, 2]
	a := []float32{-0.1, -0.1, -0.1, -0.1, -1, -1, -0.2, -2}
	adv := []float32{-1, 1, -1, -1}
	mask := []float32{1, 1, 1, 1, 1, 1, 1, 0}
	outs := run(t, func(in []*graph.Node) []*graph.Node {
		m, stat := rl.SequenceMask(graph.Reshape(in[0], 4, 2), graph.Reshape(in[1], 4, 2), in[2], graph.Reshape(in[3], 4, 2), 0.5)
		same, _ := rl.SequenceMask(graph.Reshape(in[0], 4, 2), graph.Reshape(in[0], 4, 2), in[2], graph.Reshape(in[3], 4, 2), 0.5)
		return []*graph.Node{m, stat, same}
	}, u, a, adv, mask)
	// Row 0: stat 0.9, Â<0 → masked. Row 1: stat 0.9 but Â>0 → kept. Row 2: stat 0 → kept.
	// Row 3: only its first token counts (stat 0.8) → masked.
	if want := []float32{0, 1, 1, 0}; !slices.Equal(outs[0], want) {
		t.Errorf("mask %v (stat %v), want %v", outs[0], outs[1], want)
	}
	if want := []float32{1, 1, 1, 1}; !slices.Equal(outs[2], want) {
		t.Errorf("with π_old = π_θ the mask fired: %v", outs[2])
	}
}

// The gradient of the assembled loss w.r.t. the logits equals rl.md §8's
// closed form: c_t·(1[v = o_t] − p_v)/τ on the kept set, 0 off it.
func TestLossGradientClosedForm(t *testing.T) {
	const B, T, V, K = 3, 4, 7, 4
	rng := rand.New(rand.NewPCG(9, 9))
	logits := make([]float32, B*T*V)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	kept := make([]int32, B*T*K)
	targets := make([]int32, B*T)
	old := make([]float32, B*T)
	ref := make([]float32, B*T)
	for p := range B * T {
		perm := rng.Perm(V)
		for j := range K {
			kept[p*K+j] = int32(perm[j])
		}
		if p%5 == 0 {
			kept[p*K+K-1] = -1 // a shorter kept set
		}
		targets[p] = kept[p*K+rng.IntN(K-1)]
		old[p] = float32(-0.5 - rng.Float64())
		ref[p] = float32(-0.5 - rng.Float64())
	}
	adv := []float32{0.7, -0.4, -0.3}
	mask := []float32{1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0}
	const temp = 0.8
	cfg := rl.LossConfig{Eps: 0.2, Beta: 0.05, UnbiasedKL: true, OPSM: true, Delta: 0.5}
	outs := run(t, func(in []*graph.Node) []*graph.Node {
		z := graph.Reshape(in[0], B, T, V)
		batch := rl.Batch{Logits: z, Targets: graph.Reshape(in[1], B, T), Kept: graph.Reshape(in[2], B, T, K),
			OldLogp: graph.Reshape(in[3], B, T), RefLogp: graph.Reshape(in[4], B, T), Adv: in[5], Mask: graph.Reshape(in[6], B, T), Temp: temp}
		loss, _ := rl.Loss(batch, cfg)
		u, _ := rl.KeptLogprobs(z, batch.Targets, batch.Kept, temp)
		m, _ := rl.SequenceMask(u, batch.OldLogp, batch.Adv, batch.Mask, cfg.Delta)
		return []*graph.Node{loss, graph.Gradient(loss, z)[0], u, m}
	}, logits, targets, kept, old, ref, adv, mask)
	grad, u, M := outs[1], outs[2], outs[3]
	for bi := range B {
		n := 0.0
		for ti := range T {
			n += float64(mask[bi*T+ti])
		}
		w := 1 / (float64(B) * math.Max(n, 1))
		for ti := range T {
			p := bi*T + ti
			in := map[int32]bool{}
			for j := range K {
				if id := kept[p*K+j]; id >= 0 {
					in[id] = true
				}
			}
			var c float64
			if mask[p] == 1 {
				rho := math.Exp(float64(u[p]) - float64(old[p]))
				A := float64(adv[bi])
				clipped := (A > 0 && rho > 1+cfg.Eps) || (A < 0 && rho < 1-cfg.Eps)
				if !clipped {
					c -= w * float64(M[bi]) * A * rho
				}
				c += cfg.Beta * w * rho * (float64(u[p]) - float64(ref[p]))
			}
			// p_v over the kept set at temperature τ.
			zs := make([]float64, 0, K)
			var ids []int32
			for v := range V {
				if in[int32(v)] {
					zs = append(zs, float64(logits[p*V+v])/temp)
					ids = append(ids, int32(v))
				}
			}
			lp := logSoftmax(zs)
			for v := range V {
				want := 0.0
				if j := slices.Index(ids, int32(v)); j >= 0 {
					one := 0.0
					if int32(v) == targets[p] {
						one = 1
					}
					want = c * (one - math.Exp(lp[j])) / temp
				}
				if got := float64(grad[p*V+v]); math.Abs(got-want) > 1e-5 {
					t.Fatalf("row %d pos %d token %d: autodiff %.7f, closed form %.7f", bi, ti, v, got, want)
				}
			}
		}
	}
}

// tiny loads the reference MoE checkpoint (8 experts, top-2) used by the
// keep-routing and keep-sampling-mask tests.
func tiny(t *testing.T) *model.Model {
	t.Helper()
	m, err := model.Load(testutil.Testdata("tiny-dsa"), dtypes.Float32)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// rollout samples one response with everything the stabilisers need recorded.
func rollout(t *testing.T, m *model.Model, prompt []int32, p engine.SampleParams) *engine.Result {
	t.Helper()
	e, err := engine.New(m, testutil.Backend(t), engine.Config{PrefillChunk: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, Params: p, RecordKept: true, RecordRoutes: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// recompute runs the training forward over the rollout and returns u_t for
// each response token: with the recorded kept sets or the full vocabulary,
// with the recorded routes replayed or routing freely. It also returns the
// routing mismatch rate (the trainer's own choice vs the recorded one).
func recompute(t *testing.T, m *model.Model, prompt []int32, res *engine.Result, temp float64, useKept, replay bool) ([]float32, float64) {
	t.Helper()
	cfg := m.Config
	seq := slices.Clone(prompt)
	for _, tok := range res.Tokens[:len(res.Tokens)-1] {
		seq = append(seq, tok.ID)
	}
	S, R := len(seq), len(res.Tokens)
	P := len(prompt)
	pos := make([]int32, S)
	for i := range pos {
		pos[i] = int32(i)
	}
	nMoE := cfg.NumMoELayers()
	routes := make([][]int32, nMoE)
	for l := range nMoE {
		for p := range S {
			routes[l] = append(routes[l], res.Routes[p][l]...)
		}
	}
	Kmax := 1
	for _, tok := range res.Tokens {
		Kmax = max(Kmax, len(tok.Kept))
	}
	kept := make([]int32, R*Kmax)
	targets := make([]int32, R)
	for j, tok := range res.Tokens {
		targets[j] = tok.ID
		for i := range Kmax {
			kept[j*Kmax+i] = -1
			if i < len(tok.Kept) {
				kept[j*Kmax+i] = tok.Kept[i]
			}
		}
	}
	K := cfg.NumExpertsPerTok
	exec, err := gm.NewExec(testutil.Backend(t), m.Store, func(scope *gm.Scope, in []*graph.Node) []*graph.Node {
		opts := model.Options{}
		if replay {
			for l := range nMoE {
				opts.Routes = append(opts.Routes, graph.Reshape(in[3+l], 1, S, K))
			}
		}
		out := model.Forward(scope, cfg, graph.Reshape(in[0], 1, S), graph.Reshape(in[1], 1, S), nil, opts)
		resp := graph.SliceAxis(out.Logits, 1, graph.AxisRange(P-1, S)) // [1, R, V]: logits predicting each response token
		var k *graph.Node
		if useKept {
			k = graph.Reshape(in[2], 1, R, Kmax)
		}
		u, _ := rl.KeptLogprobs(resp, graph.Reshape(in[3+nMoE], 1, R), k, temp)
		outs := []*graph.Node{graph.Reshape(u, R)}
		return append(outs, out.Routes...)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer exec.Finalize()
	args := []any{seq, pos, kept}
	for _, r := range routes {
		args = append(args, r)
	}
	args = append(args, targets)
	outs, err := exec.Exec(args...)
	if err != nil {
		t.Fatal(err)
	}
	u := tensors.MustCopyFlatData[float32](outs[0])
	differ, total := 0, 0
	for l, o := range outs[1:] {
		got := tensors.MustCopyFlatData[int32](o)
		for p := range S {
			a, b := slices.Clone(got[p*K:(p+1)*K]), slices.Clone(routes[l][p*K:(p+1)*K])
			slices.Sort(a)
			slices.Sort(b)
			total++
			if !slices.Equal(a, b) {
				differ++
			}
		}
	}
	return u, float64(differ) / float64(total)
}

func meanRatio(u []float32, res *engine.Result) (mean, maxAbs float64) {
	for j, tok := range res.Tokens {
		d := float64(u[j]) - float64(tok.SampleLogprob)
		mean += math.Exp(d)
		maxAbs = math.Max(maxAbs, math.Abs(d))
	}
	return mean / float64(len(res.Tokens)), maxAbs
}

// Keep sampling mask (rl.md §6): with identical weights, the trainer's
// log-probs over the recorded kept sets equal the sampler's, so ρ = 1; over
// the full vocabulary every ratio is biased low by the kept mass.
func TestKeepSamplingMask(t *testing.T) {
	m := tiny(t)
	const temp = 0.9
	prompt := []int32{5, 17, 33, 2, 250, 99, 7, 18, 64, 3, 11, 200, 45, 8, 9, 100, 31, 4}
	res := rollout(t, m, prompt, engine.SampleParams{Temperature: temp, TopK: 20, TopP: 0.9, Seed: 5, HasSeed: true, MaxTokens: 12})
	with, _ := recompute(t, m, prompt, res, temp, true, true)
	without, _ := recompute(t, m, prompt, res, temp, false, true)
	mw, dw := meanRatio(with, res)
	mo, do := meanRatio(without, res)
	t.Logf("kept-set replay: mean ρ %.6f, max |u−a| %.2g; full vocabulary: mean ρ %.4f, max |u−a| %.2g", mw, dw, mo, do)
	if dw > 1e-4 {
		t.Errorf("with the sampling mask, max |u − a| = %.3g: the trainer does not reproduce the sampler", dw)
	}
	if mo > 0.99 {
		t.Errorf("without the mask mean ρ = %.4f: the truncation bias did not show", mo)
	}
	for j, tok := range res.Tokens {
		if float64(without[j]) > float64(tok.SampleLogprob)+1e-6 {
			t.Errorf("token %d: full-vocabulary log-prob %.4f above the kept-set one %.4f", j, without[j], tok.SampleLogprob)
		}
	}
}

// Keep routing (rl.md §5): replaying the sampler's experts reproduces its
// log-probs exactly; after the router changes (as it does after an update,
// or with a different kernel), free routing picks other experts and the
// log-probs move, while replay keeps the expert sets.
func TestKeepRouting(t *testing.T) {
	m := tiny(t)
	const temp = 1.0
	prompt := []int32{40, 41, 42, 300, 12, 13, 77, 78, 150, 151, 6, 90, 91, 92, 17, 18, 19, 20}
	res := rollout(t, m, prompt, engine.SampleParams{Temperature: temp, TopK: 30, Seed: 11, HasSeed: true, MaxTokens: 10})
	u, mis := recompute(t, m, prompt, res, temp, true, true)
	if _, d := meanRatio(u, res); d > 1e-4 || mis != 0 {
		t.Fatalf("unchanged weights: max |u − a| = %.3g, routing mismatch %.3f", d, mis)
	}
	// Perturb every router.
	rng := rand.New(rand.NewPCG(1, 1))
	for i := range m.Config.NumHiddenLayers {
		if !m.Config.IsMoE(i) {
			continue
		}
		v := m.Store.GetVariable("/model/layers/" + string(rune('0'+i)) + "/mlp/gate/weight")
		w := tensors.MustCopyFlatData[float32](v.MustValue())
		for j := range w {
			w[j] += float32(rng.NormFloat64() * 0.3)
		}
		v.MustSetValue(tensors.FromFlatDataAndDimensions(w, v.Shape().Dimensions...))
	}
	uReplay, misReplay := recompute(t, m, prompt, res, temp, true, true)
	uFree, misFree := recompute(t, m, prompt, res, temp, true, false)
	_, dReplay := meanRatio(uReplay, res)
	_, dFree := meanRatio(uFree, res)
	t.Logf("perturbed router: replay max |u−a| %.3g (experts as sampled: mismatch %.0f%%), free routing %.3g (the router's own choice differs on %.0f%% of token-layer pairs)",
		dReplay, 100*misReplay, dFree, 100*misFree)
	if misReplay != 0 {
		t.Errorf("replay used other experts than the sampler's on %.0f%% of pairs", 100*misReplay)
	}
	if misFree == 0 {
		t.Fatal("the perturbation changed no routing decision: the test proves nothing")
	}
	if dFree <= dReplay {
		t.Errorf("free routing moved log-probs no more than replay (%.3g vs %.3g)", dFree, dReplay)
	}
}

func TestAdvantages(t *testing.T) {
	got := rl.Advantages([]float64{1, 0, 0, 1, 2, 2, 2, 2}, 4, false)
	if want := []float64{0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0}; !slices.Equal(got, want) {
		t.Errorf("advantages %v, want %v", got, want)
	}
	std := rl.Advantages([]float64{1, 0, 0, 1}, 4, true)
	if math.Abs(std[0]-0.5/(math.Sqrt(1.0/3)+1e-4)) > 1e-9 {
		t.Errorf("standardised advantage %v", std)
	}
}
