package main

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/gomlx/compute/dtypes"

	"github.com/dsv32/dsv32/model"
	"github.com/dsv32/dsv32/train"
	"github.com/dsv32/dsv32/train/data"
)

// preset1BTrain is the ~1.0B-parameter configuration `bench train` and
// bench/hf_train.py compare on: the 3b preset's shapes with 8 layers and 16
// routed experts (top-4) of inner size 512 — 1.03B parameters, 768M activated
// per token (embedding and head included; the 129,280-token vocabulary's
// embedding and head are half of the model).
const preset1BTrain = `{"model_type":"deepseek_v32","vocab_size":129280,"hidden_size":2048,"intermediate_size":5632,
	"moe_intermediate_size":512,"num_hidden_layers":8,"first_k_dense_replace":1,"num_attention_heads":16,
	"num_key_value_heads":16,"q_lora_rank":768,"kv_lora_rank":256,"qk_nope_head_dim":128,"qk_rope_head_dim":64,
	"v_head_dim":128,"n_routed_experts":16,"n_shared_experts":1,"num_experts_per_tok":4,"n_group":4,"topk_group":2,
	"routed_scaling_factor":2.5,"index_n_heads":16,"index_head_dim":128,"index_topk":2048,
	"max_position_embeddings":163840,"rope_theta":10000,"rms_norm_eps":1e-6,"bos_token_id":0,"eos_token_id":1}`

func init() { presets["1b-train"] = preset1BTrain }

// benchTrainCmd times optimizer steps of the real trainer (package train:
// forward, backward, clipping and AdamW in one graph, float32 master
// weights) on a random model and random tokens, and reports tokens/s and
// model FLOPs utilisation. bench/hf_train.py is its PyTorch peer.
type benchTrainCmd struct {
	backendFlag
	Preset string  `default:"1b-train" help:"Configuration (ignored with --config): 1b-train, 1b, 3b or small."`
	Config string  `type:"existingfile" placeholder:"FILE" help:"A config.json to train instead of a preset."`
	Stage  string  `enum:"pretrain,dsa-sparse" default:"pretrain" help:"pretrain (dense attention, every weight but the indexers) or dsa-sparse (top-k attention + indexer KL)."`
	DType  string  `name:"dtype" enum:"f32,bf16" default:"bf16" help:"Compute dtype; weights are float32 masters either way."`
	Batch  int     `default:"4" placeholder:"B" help:"Rows per step."`
	SeqLen int     `default:"2048" placeholder:"T" help:"Tokens per row."`
	Warmup int     `default:"3" placeholder:"N" help:"Untimed steps first (the first one compiles)."`
	Steps  int     `default:"10" placeholder:"N" help:"Timed steps."`
	Seed   uint64  `default:"1" help:"Seed of the random weights and tokens."`
	Peak   float64 `default:"989.4e12" placeholder:"FLOPS" help:"Peak FLOP/s for MFU; default: the NVIDIA H200 SXM's dense bf16 tensor-core peak, 989.4 TFLOPS (no sparsity)."`
	Out    string  `help:"Write the results as JSON here."`
}

// trainReport is what `bench train` writes; bench/hf_train.py writes the
// same keys.
type trainReport struct {
	Impl            string    `json:"impl"`
	Device          string    `json:"device"`
	Stage           string    `json:"stage"`
	DType           string    `json:"dtype"`
	Params          int64     `json:"params"`
	ParamsActivated int64     `json:"params_activated"`
	Batch           int       `json:"batch"`
	SeqLen          int       `json:"seq_len"`
	TokensPerStep   int       `json:"tokens_per_step"`
	Warmup          int       `json:"warmup"`
	Steps           int       `json:"steps"`
	FirstStepS      float64   `json:"first_step_s"`
	StepMS          float64   `json:"step_ms"` // mean of the timed steps
	StepMSMedian    float64   `json:"step_ms_median"`
	StepMSMin       float64   `json:"step_ms_min"`
	StepsMS         []float64 `json:"steps_ms"`
	TokensPerS      float64   `json:"tokens_per_s"`
	FLOPsPerToken   float64   `json:"flops_per_token"`
	MatmulParams    float64   `json:"matmul_params_per_token"`
	AttnFLOPs       float64   `json:"attn_flops_per_token"`
	FLOPsFormula    string    `json:"flops_formula"`
	ModelTFLOPS     float64   `json:"model_tflops_per_s"`
	PeakTFLOPS      float64   `json:"peak_tflops"`
	MFU             float64   `json:"mfu"`
	Loss            []float64 `json:"loss"`
	PeakMemoryGB    *float64  `json:"peak_memory_gb"`
	Notes           string    `json:"notes"`
}

// flopsFormula documents trainFLOPs.
const flopsFormula = "6*N_mm + 6*L*H*(d_qk+d_v)*nbar [+ sparse: 6*L*H_I*d_I*ncausal]; " +
	"N_mm = weights of every matmul a token passes through (attention q_a,q_b,kv_a,kv_b,o; dense MLP; " +
	"router; shared + top-k routed experts; lm_head; indexer wq_b,wk,weights_proj only in dsa-sparse), " +
	"no embedding lookup, norms or biases; nbar = mean keys attended per query " +
	"(causal dense: (T+1)/2; sparse: mean_t min(t, index_topk)); ncausal = (T+1)/2"

// trainFLOPs is the model FLOPs of one trained token (forward + backward =
// 3 × forward, 2 FLOPs per multiply-add): 6 per matmul weight the token
// passes through, plus attention's two products QKᵀ and PV, 2·H·d_qk and
// 2·H·d_v FLOPs per attended key in the forward pass. With sparse attention
// the indexer's projections and its scores over every causal key (2·H_I·d_I
// per key) count as well. It returns the total, the matmul weights and the
// attention part.
func trainFLOPs(c *model.Config, T int, sparse bool) (total, nMM, attn float64) {
	for _, t := range c.Tensors(false) {
		if len(t.Shape) < 2 || strings.Contains(t.Name, "embed_tokens") {
			continue
		}
		if strings.Contains(t.Name, ".indexer.") && !sparse {
			continue
		}
		n := float64(numelOf(t.Shape))
		if t.Expert >= 0 { // one routed expert's matrix: a token visits k of E
			n *= float64(c.NumExpertsPerTok) / float64(c.NumRoutedExperts)
		}
		nMM += n
	}
	causal := float64(T+1) / 2
	keys := causal
	if sparse {
		var s float64
		for t := 1; t <= T; t++ {
			s += float64(min(t, c.IndexTopK))
		}
		keys = s / float64(T)
	}
	L := float64(c.NumHiddenLayers)
	attn = 6 * L * float64(c.NumHeads) * float64(c.QKHeadDim()+c.VHeadDim) * keys
	if sparse {
		attn += 6 * L * float64(c.IndexNumHeads) * float64(c.IndexHeadDim) * causal
	}
	return 6*nMM + attn, nMM, attn
}

func numelOf(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}

// randomBatch is B rows of T+1 uniform random tokens, one document per row.
func randomBatch(r *rand.Rand, B, T, V int) (train.Batch, error) {
	rows := make([]data.Row, B)
	for i := range rows {
		row := data.Row{Tokens: make([]int32, T+1), Segments: make([]int32, T+1), Positions: make([]int32, T+1), Mask: make([]float32, T)}
		for k := range row.Tokens {
			row.Tokens[k] = int32(r.IntN(V))
			row.Segments[k] = 1
			row.Positions[k] = int32(k)
		}
		for k := range row.Mask {
			row.Mask[k] = 1
		}
		rows[i] = row
	}
	return train.NewBatch(rows)
}

func (c *benchTrainCmd) Run() error {
	if c.Steps < 1 || c.Warmup < 1 {
		return fmt.Errorf("bench train: --warmup and --steps must be ≥ 1 (the first step compiles)")
	}
	var cfg *model.Config
	var err error
	if c.Config != "" {
		cfg, err = model.LoadConfig(c.Config)
	} else {
		src, ok := presets[c.Preset]
		if !ok {
			return fmt.Errorf("--preset %q: want 1b-train, 1b, 3b or small", c.Preset)
		}
		cfg, err = model.ParseConfig([]byte(src))
	}
	if err != nil {
		return err
	}
	stage, err := train.ParseStage(c.Stage)
	if err != nil {
		return err
	}
	backend, err := c.open()
	if err != nil {
		return err
	}
	tc := train.DefaultConfig(stage)
	tc.Batch, tc.SeqLen, tc.Accum = c.Batch, c.SeqLen, 1
	tc.Steps, tc.Warmup = c.Warmup+c.Steps, 0
	tc.DType, tc.Seed, tc.Native = c.DType, c.Seed, native(backend)
	slog.Info("drawing random weights", "parameters", cfg.Count().Total, "dtype", "float32 (masters)")
	m, err := model.NewRandom(cfg, 0.02, c.Seed, dtypes.Float32)
	if err != nil {
		return err
	}
	tr, err := train.New(backend, m, tc)
	if err != nil {
		return err
	}
	defer tr.Finalize()
	r := rand.New(rand.NewPCG(c.Seed, 99))
	var batches [2]train.Batch
	for i := range batches {
		if batches[i], err = randomBatch(r, c.Batch, c.SeqLen, cfg.VocabSize); err != nil {
			return err
		}
	}
	sparse := stage != train.Pretrain
	total, nMM, attn := trainFLOPs(cfg, c.SeqLen, sparse)
	n := cfg.Count()
	rep := trainReport{
		Impl: "dsv32 (GoMLX " + backend.Name() + ")", Device: backend.Description(), Stage: string(stage), DType: c.DType + " compute, float32 master weights",
		Params: n.Total, ParamsActivated: n.Activated, Batch: c.Batch, SeqLen: c.SeqLen, TokensPerStep: c.Batch * c.SeqLen,
		Warmup: c.Warmup, Steps: c.Steps, FLOPsPerToken: total, MatmulParams: nMM, AttnFLOPs: attn, FLOPsFormula: flopsFormula,
		PeakTFLOPS: c.Peak / 1e12,
		Notes: "one optimizer step = forward + backward + global-norm clip + AdamW (+ balance loss alpha=1e-4 and expert-bias update); " +
			"timed from the host, each step ends with its loss copied to the host; peak memory not measured (XLA's allocator preallocates)",
	}
	fmt.Printf("model: %d parameters (%d activated), %s, stage %s, %s compute, B=%d T=%d\n",
		n.Total, n.Activated, backend.Description(), stage, c.DType, c.Batch, c.SeqLen)
	fmt.Printf("model FLOPs per token: %.4g (matmul weights %.4g, attention %.4g)\n", total, nMM, attn)
	for i := range c.Warmup + c.Steps {
		start := time.Now()
		met, err := tr.Step([]train.Batch{batches[i%2]})
		if err != nil {
			return err
		}
		dt := time.Since(start).Seconds()
		rep.Loss = append(rep.Loss, met.Loss)
		if i == 0 {
			rep.FirstStepS = dt
		}
		if i >= c.Warmup {
			rep.StepsMS = append(rep.StepsMS, dt*1000)
		}
		fmt.Fprintf(os.Stderr, "step %d: %.1f ms, loss %.4f\n", i+1, dt*1000, met.Loss)
	}
	var sum float64
	for _, v := range rep.StepsMS {
		sum += v
	}
	rep.StepMS = sum / float64(len(rep.StepsMS))
	sorted := append([]float64(nil), rep.StepsMS...)
	sort.Float64s(sorted)
	rep.StepMSMedian, rep.StepMSMin = sorted[len(sorted)/2], sorted[0]
	rep.TokensPerS = float64(rep.TokensPerStep) / (rep.StepMS / 1000)
	rep.ModelTFLOPS = rep.TokensPerS * total / 1e12
	rep.MFU = rep.TokensPerS * total / c.Peak
	fmt.Printf("train step: %.1f ms mean (median %.1f, min %.1f)  %.0f tokens/s  %.1f model TFLOP/s  MFU %.1f%% of %.1f TFLOPS  (first step %.1f s)\n",
		rep.StepMS, rep.StepMSMedian, rep.StepMSMin, rep.TokensPerS, rep.ModelTFLOPS, 100*rep.MFU, rep.PeakTFLOPS, rep.FirstStepS)
	return writeJSON(c.Out, rep)
}
