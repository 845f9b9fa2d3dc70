package train

import (
	"fmt"
	"math"
	"strings"
)

// Stage is what a run trains and on which loss (dsa.md §9; issue 5).
type Stage string

const (
	// Pretrain: dense attention, every weight but the indexers; LM loss plus
	// α·Σ_l balance_l.
	Pretrain Stage = "pretrain"
	// DSAWarmup is DSA stage 1: dense attention, only the indexers train, on
	// Σ_l KL(p_t ‖ softmax(I_t)) over every causal key.
	DSAWarmup Stage = "dsa-warmup"
	// DSASparse is DSA stage 2: top-k sparse attention, every weight trains, on
	// LM + Σ_l KL restricted to the selected keys. The model detaches the
	// indexer's inputs, so the two losses reach disjoint weights.
	DSASparse Stage = "dsa-sparse"
	// SFT: sparse attention, LM loss on assistant tokens only plus Σ_l KL_sparse.
	SFT Stage = "sft"
)

// Stages lists the stages in pipeline order.
var Stages = []Stage{Pretrain, DSAWarmup, DSASparse, SFT}

// ParseStage returns the stage named s.
func ParseStage(s string) (Stage, error) {
	for _, st := range Stages {
		if string(st) == s {
			return st, nil
		}
	}
	names := make([]string, len(Stages))
	for i, st := range Stages {
		names[i] = string(st)
	}
	return "", fmt.Errorf("train: unknown stage %q (want %s)", s, strings.Join(names, ", "))
}

// dense reports whether the stage attends to every causal key.
func (s Stage) dense() bool { return s == Pretrain || s == DSAWarmup }

// trains reports whether the stage trains the weight at store path p.
// The router's correction bias is never trained by gradients (dsa.md §5).
func (s Stage) trains(p string) bool {
	if strings.HasSuffix(p, "e_score_correction_bias") {
		return false
	}
	indexer := strings.Contains(p, "/self_attn/indexer/")
	switch s {
	case Pretrain:
		return !indexer
	case DSAWarmup:
		return indexer
	}
	return true
}

// Config is one training run. Every knob is here, commented where it is
// declared; DefaultConfig fills them per stage. It is saved with every
// checkpoint, and a resumed run continues under the saved one.
type Config struct {
	Stage Stage `json:"stage"`

	Steps  int `json:"steps"`   // optimizer steps of the whole run (the cosine schedule ends here)
	Batch  int `json:"batch"`   // rows per micro-batch
	SeqLen int `json:"seq_len"` // T, tokens per row
	Accum  int `json:"accum"`   // micro-batches per optimizer step (token-weighted, as one batch)

	LR     float64 `json:"lr"`     // peak learning rate
	MinLR  float64 `json:"min_lr"` // the cosine decays to MinLR at Steps
	Warmup int     `json:"warmup"` // linear warm-up steps from 0 to LR
	Beta1  float64 `json:"beta1"`  // AdamW first-moment decay
	Beta2  float64 `json:"beta2"`  // AdamW second-moment decay
	Eps    float64 `json:"eps"`    // AdamW ε, added to √v̂
	Decay  float64 `json:"decay"`  // decoupled weight decay (matrices only, see decays)
	Clip   float64 `json:"clip"`   // global gradient-norm clip; 0: none
	Alpha  float64 `json:"alpha"`  // weight of the sequence-wise balance loss Σ_l balance_l
	Gamma  float64 `json:"gamma"`  // auxiliary-loss-free bias step: b_e += γ·sign(mean load − load_e)
	Seed   uint64  `json:"seed"`   // data order (and every other draw) derives from it
	DType  string  `json:"dtype"`  // compute dtype: "f32" or "bf16" (weights stay float32 masters)
	Native bool    `json:"native"` // the backend's TopK for the indexer (XLA); radix select otherwise

	EvalEvery int `json:"eval_every"` // steps between evaluations; 0: only at the end
	SaveEvery int `json:"save_every"` // steps between checkpoints; 0: only at the end
	KeepLast  int `json:"keep_last"`  // checkpoints kept; 0: all
}

// DefaultConfig is the starting point for a stage: AdamW (0.9, 0.95, 1e-8),
// weight decay 0.1, clip 1.0, warm-up then cosine to a tenth of the peak.
// Peak rates follow dsa.md §9 for the DSA stages (1e-3 for the warm-up; the
// sparse stage's 7.3e-6 is for a 671B model continuing from a trained one, so
// the default here is 3e-4 like pre-training) and common small-model practice
// otherwise. The balance loss weight α is 1e-4 and the bias step γ 1e-3
// wherever routing trains (pre-training, the sparse stage); both are 0 in the
// warm-up (the main model is frozen) and in SFT (dsa.md §5: frozen there).
func DefaultConfig(stage Stage) Config {
	c := Config{
		Stage: stage, Steps: 1000, Batch: 8, SeqLen: 512, Accum: 1,
		LR: 3e-4, Warmup: 100, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, Decay: 0.1, Clip: 1,
		Alpha: 1e-4, Gamma: 1e-3, Seed: 1, DType: "f32",
		KeepLast: 3,
	}
	switch stage {
	case DSAWarmup:
		c.LR, c.Decay, c.Alpha, c.Gamma = 1e-3, 0, 0, 0
	case SFT:
		c.LR, c.Alpha, c.Gamma = 1e-4, 0, 0
	}
	c.MinLR = c.LR / 10
	return c
}

// Validate names the first field that is out of range.
func (c *Config) Validate() error {
	if _, err := ParseStage(string(c.Stage)); err != nil {
		return err
	}
	bad := func(field string, v any, want string) error {
		return fmt.Errorf("train: config %s = %v: want %s", field, v, want)
	}
	switch {
	case c.Steps < 1:
		return bad("steps", c.Steps, "≥ 1")
	case c.Batch < 1:
		return bad("batch", c.Batch, "≥ 1")
	case c.SeqLen < 2:
		return bad("seq_len", c.SeqLen, "≥ 2")
	case c.Accum < 1:
		return bad("accum", c.Accum, "≥ 1")
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return bad("lr", c.LR, "> 0")
	case c.MinLR < 0 || c.MinLR > c.LR:
		return bad("min_lr", c.MinLR, "in [0, lr]")
	case c.Warmup < 0:
		return bad("warmup", c.Warmup, "≥ 0")
	case c.Beta1 < 0 || c.Beta1 >= 1:
		return bad("beta1", c.Beta1, "in [0, 1)")
	case c.Beta2 < 0 || c.Beta2 >= 1:
		return bad("beta2", c.Beta2, "in [0, 1)")
	case !(c.Eps > 0):
		return bad("eps", c.Eps, "> 0")
	case c.Decay < 0:
		return bad("decay", c.Decay, "≥ 0")
	case c.Clip < 0:
		return bad("clip", c.Clip, "≥ 0 (0: no clipping)")
	case c.Alpha < 0:
		return bad("alpha", c.Alpha, "≥ 0")
	case c.Gamma < 0:
		return bad("gamma", c.Gamma, "≥ 0")
	case c.DType != "f32" && c.DType != "bf16":
		return bad("dtype", c.DType, `"f32" or "bf16"`)
	case c.EvalEvery < 0 || c.SaveEvery < 0 || c.KeepLast < 0:
		return fmt.Errorf("train: config eval_every, save_every and keep_last must be ≥ 0")
	}
	return nil
}

// LRAt is the learning rate of optimizer step s (0-based): linear warm-up
// from LR/Warmup to LR over the first Warmup steps, then a cosine from LR
// down to MinLR at step Steps−1.
func (c *Config) LRAt(s int) float64 {
	if s < c.Warmup {
		return c.LR * float64(s+1) / float64(c.Warmup)
	}
	span := c.Steps - 1 - c.Warmup
	if span <= 0 {
		return c.LR
	}
	p := math.Min(1, float64(s-c.Warmup)/float64(span))
	return c.MinLR + 0.5*(c.LR-c.MinLR)*(1+math.Cos(math.Pi*p))
}
