package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/dsv32/dsv32/internal/atomicfile"
	"log/slog"
	"math"
	"os"
	"path/filepath"
)

// Config is a DeepSeek-V3.2 (or V3) architecture, read from a Hugging Face
// config.json. JSON tags carry the HF names. Both rope spellings are accepted:
// `rope_theta` + `rope_scaling` (DeepSeek hub, transformers v4) and
// `rope_parameters` (transformers v5). See dsa.md §2.
type Config struct {
	ModelType string `json:"model_type"` // "deepseek_v32", or "deepseek_v3" (no indexer)

	VocabSize           int `json:"vocab_size"`
	HiddenSize          int `json:"hidden_size"`           // D
	IntermediateSize    int `json:"intermediate_size"`     // dense MLP inner dim
	MoEIntermediateSize int `json:"moe_intermediate_size"` // expert inner dim
	NumHiddenLayers     int `json:"num_hidden_layers"`     // main blocks
	NumNextNLayers      int `json:"num_nextn_predict_layers"`
	FirstKDenseReplace  int `json:"first_k_dense_replace"` // leading dense MLP layers
	MoELayerFreq        int `json:"moe_layer_freq"`        // 1: every layer after the dense ones is MoE

	NumHeads      int    `json:"num_attention_heads"` // H
	NumKVHeads    int    `json:"num_key_value_heads"` // unused by MLA
	QLoRARank     int    `json:"q_lora_rank"`         // r_q
	KVLoRARank    int    `json:"kv_lora_rank"`        // r_kv
	QKNopeHeadDim int    `json:"qk_nope_head_dim"`    // d_n
	QKRopeHeadDim int    `json:"qk_rope_head_dim"`    // d_r
	VHeadDim      int    `json:"v_head_dim"`          // d_v
	AttentionBias bool   `json:"attention_bias"`
	TieEmbeddings bool   `json:"tie_word_embeddings"`
	HiddenAct     string `json:"hidden_act"`

	NumRoutedExperts    int     `json:"n_routed_experts"`
	NumSharedExperts    int     `json:"n_shared_experts"`
	NumExpertsPerTok    int     `json:"num_experts_per_tok"`
	NumGroups           int     `json:"n_group"`
	TopKGroup           int     `json:"topk_group"`
	ScoringFunc         string  `json:"scoring_func"` // "sigmoid"
	TopKMethod          string  `json:"topk_method"`  // "noaux_tc"
	NormTopKProb        bool    `json:"norm_topk_prob"`
	RoutedScalingFactor float64 `json:"routed_scaling_factor"`

	IndexNumHeads int `json:"index_n_heads"`  // H_I
	IndexHeadDim  int `json:"index_head_dim"` // d_I
	IndexTopK     int `json:"index_topk"`     // k

	MaxPositionEmbeddings int     `json:"max_position_embeddings"`
	RMSNormEps            float64 `json:"rms_norm_eps"`
	BOSTokenID            int     `json:"bos_token_id"`
	EOSTokenID            int     `json:"eos_token_id"`

	// Rope is the resolved rope configuration, from either spelling.
	Rope Rope `json:"-"`

	// Quantization is quantization_config, when the checkpoint stores FP8 weights.
	Quantization *Quantization `json:"quantization_config,omitempty"`

	// raw is the config.json this was parsed from, written back verbatim by Write.
	raw []byte

	// MLPLayerTypes is the v5 spelling of the dense/MoE layout ("dense" or "sparse" per layer).
	MLPLayerTypes []string `json:"mlp_layer_types,omitempty"`
}

// Rope is RoPE with optional YaRN scaling (dsa.md §3.2).
type Rope struct {
	Type                  string  `json:"rope_type"` // "default" or "yarn"
	Theta                 float64 `json:"rope_theta"`
	Factor                float64 `json:"factor"`
	OriginalMaxPosition   int     `json:"original_max_position_embeddings"`
	BetaFast              float64 `json:"beta_fast"`
	BetaSlow              float64 `json:"beta_slow"`
	MScale                float64 `json:"mscale"`
	MScaleAllDim          float64 `json:"mscale_all_dim"`
	AttentionFactor       float64 `json:"attention_factor"`
	hasMScale, hasMScaleA bool
}

// Quantization is the FP8 block quantisation of a checkpoint.
type Quantization struct {
	QuantMethod      string `json:"quant_method"`
	Fmt              string `json:"fmt"`
	WeightBlockSize  []int  `json:"weight_block_size"`
	ActivationScheme string `json:"activation_scheme"`
	ScaleFmt         string `json:"scale_fmt"`
}

// LoadConfig reads a config.json, or the config.json inside a directory.
func LoadConfig(path string) (*Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "config.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("model config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses and validates a Hugging Face config.json.
func ParseConfig(data []byte) (*Config, error) {
	c := &Config{
		// Defaults of transformers' DeepseekV32Config where a field may be absent.
		MoELayerFreq:        1,
		ScoringFunc:         "sigmoid",
		TopKMethod:          "noaux_tc",
		NormTopKProb:        true,
		RoutedScalingFactor: 1,
		RMSNormEps:          1e-6,
		HiddenAct:           "silu",
		NumGroups:           1,
		TopKGroup:           1,
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	var raw struct {
		RopeTheta      *float64        `json:"rope_theta"`
		RopeScaling    json.RawMessage `json:"rope_scaling"`
		RopeParameters json.RawMessage `json:"rope_parameters"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := c.resolveRope(raw.RopeTheta, raw.RopeScaling, raw.RopeParameters); err != nil {
		return nil, err
	}
	if err := c.resolveLayerTypes(); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.raw = append([]byte(nil), data...)
	return c, nil
}

// JSON renders the configuration as a transformers-v5 config.json. A config
// that was parsed is returned as it was read.
func (c *Config) JSON() ([]byte, error) {
	if c.raw != nil {
		return c.raw, nil
	}
	type plain Config // drops methods, keeps tags
	body, err := json.Marshal((*plain)(c))
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, err
	}
	rope := map[string]any{"rope_type": c.Rope.Type, "rope_theta": c.Rope.Theta}
	if c.Rope.Type == "yarn" {
		rope["factor"] = c.Rope.Factor
		rope["original_max_position_embeddings"] = c.Rope.OriginalMaxPosition
		rope["beta_fast"], rope["beta_slow"] = c.Rope.BetaFast, c.Rope.BetaSlow
		rope["mscale"], rope["mscale_all_dim"] = c.Rope.MScale, c.Rope.MScaleAllDim
	}
	obj["rope_parameters"] = rope
	obj["architectures"] = []string{"DeepseekV32ForCausalLM"}
	if c.ModelType == "deepseek_v3" {
		obj["architectures"] = []string{"DeepseekV3ForCausalLM"}
	}
	types := make([]string, c.NumHiddenLayers)
	attn := make([]string, c.NumHiddenLayers)
	for i := range types {
		types[i] = "dense"
		if c.IsMoE(i) {
			types[i] = "sparse"
		}
		attn[i] = "deepseek_sparse_attention"
	}
	obj["mlp_layer_types"] = types
	if c.HasIndexer() {
		obj["layer_types"] = attn
	}
	obj["head_dim"] = c.QKRopeHeadDim
	obj["qk_head_dim"] = c.QKHeadDim()
	if c.Quantization == nil {
		delete(obj, "quantization_config")
	}
	return json.MarshalIndent(obj, "", "  ")
}

// Write writes config.json into dir (to a temporary name, then renamed).
func (c *Config) Write(dir string) error {
	data, err := c.JSON()
	if err != nil {
		return fmt.Errorf("model config: %w", err)
	}
	return atomicfile.Write(filepath.Join(dir, "config.json"), data)
}

// ropeJSON is either spelling of the rope object.
type ropeJSON struct {
	Type                *string  `json:"type"`
	RopeType            *string  `json:"rope_type"`
	Theta               *float64 `json:"rope_theta"`
	Factor              *float64 `json:"factor"`
	OriginalMaxPosition *int     `json:"original_max_position_embeddings"`
	BetaFast            *float64 `json:"beta_fast"`
	BetaSlow            *float64 `json:"beta_slow"`
	MScale              *float64 `json:"mscale"`
	MScaleAllDim        *float64 `json:"mscale_all_dim"`
	AttentionFactor     *float64 `json:"attention_factor"`
}

func (r *ropeJSON) resolve(theta *float64) (Rope, error) {
	out := Rope{Type: "default", Theta: 10000, BetaFast: 32, BetaSlow: 1, Factor: 1}
	if theta != nil {
		out.Theta = *theta
	}
	if r == nil {
		return out, nil
	}
	if r.Type != nil {
		out.Type = *r.Type
	}
	if r.RopeType != nil {
		if r.Type != nil && *r.Type != *r.RopeType {
			return out, fmt.Errorf("rope_scaling: type %q and rope_type %q disagree", *r.Type, *r.RopeType)
		}
		out.Type = *r.RopeType
	}
	if r.Theta != nil {
		out.Theta = *r.Theta
	}
	set := func(dst *float64, src *float64) {
		if src != nil {
			*dst = *src
		}
	}
	set(&out.Factor, r.Factor)
	set(&out.BetaFast, r.BetaFast)
	set(&out.BetaSlow, r.BetaSlow)
	set(&out.AttentionFactor, r.AttentionFactor)
	if r.MScale != nil {
		out.MScale, out.hasMScale = *r.MScale, true
	}
	if r.MScaleAllDim != nil {
		out.MScaleAllDim, out.hasMScaleA = *r.MScaleAllDim, true
	}
	if r.OriginalMaxPosition != nil {
		out.OriginalMaxPosition = *r.OriginalMaxPosition
	}
	return out, nil
}

func (c *Config) resolveRope(theta *float64, scaling, params json.RawMessage) error {
	parse := func(field string, raw json.RawMessage) (*ropeJSON, error) {
		if len(raw) == 0 || string(raw) == "null" {
			return nil, nil
		}
		var r ropeJSON
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		return &r, nil
	}
	sc, err := parse("rope_scaling", scaling)
	if err != nil {
		return err
	}
	pp, err := parse("rope_parameters", params)
	if err != nil {
		return err
	}
	var fromV4, fromV5 Rope
	if fromV4, err = sc.resolve(theta); err != nil {
		return err
	}
	if fromV5, err = pp.resolve(theta); err != nil {
		return err
	}
	switch {
	case pp == nil:
		c.Rope = fromV4
	case sc == nil && theta == nil:
		c.Rope = fromV5
	default:
		// Both spellings present: they must agree (dsa.md §2).
		if sc == nil {
			fromV4.Type = fromV5.Type
		}
		if pp.Theta == nil {
			fromV5.Theta = fromV4.Theta
		}
		if fromV4.Type != fromV5.Type || fromV4.Theta != fromV5.Theta ||
			(sc != nil && (fromV4.Factor != fromV5.Factor || fromV4.OriginalMaxPosition != fromV5.OriginalMaxPosition)) {
			return fmt.Errorf("rope_scaling/rope_theta and rope_parameters disagree (%+v vs %+v)", fromV4, fromV5)
		}
		c.Rope = fromV5
	}
	switch c.Rope.Type {
	case "default", "":
		c.Rope.Type = "default"
	case "yarn":
		if c.Rope.OriginalMaxPosition > 0 && c.MaxPositionEmbeddings > 0 {
			// transformers derives the factor from the context ratio (dsa.md §2).
			ratio := float64(c.MaxPositionEmbeddings) / float64(c.Rope.OriginalMaxPosition)
			if c.Rope.Factor != ratio {
				slog.Warn("yarn factor differs from max_position_embeddings/original_max_position_embeddings; using the ratio",
					"factor", c.Rope.Factor, "ratio", ratio)
			}
			c.Rope.Factor = ratio
		}
	default:
		return fmt.Errorf("rope type %q: only \"default\" and \"yarn\" are supported", c.Rope.Type)
	}
	return nil
}

func (c *Config) resolveLayerTypes() error {
	if len(c.MLPLayerTypes) == 0 {
		return nil
	}
	if len(c.MLPLayerTypes) != c.NumHiddenLayers {
		return fmt.Errorf("mlp_layer_types has %d entries, num_hidden_layers is %d", len(c.MLPLayerTypes), c.NumHiddenLayers)
	}
	dense := 0
	for dense < len(c.MLPLayerTypes) && c.MLPLayerTypes[dense] == "dense" {
		dense++
	}
	for i, t := range c.MLPLayerTypes {
		if t != "dense" && t != "sparse" {
			return fmt.Errorf("mlp_layer_types[%d] = %q: want \"dense\" or \"sparse\"", i, t)
		}
		if i >= dense && t == "dense" {
			return fmt.Errorf("mlp_layer_types[%d] = \"dense\" after a sparse layer: only leading dense layers are supported", i)
		}
	}
	if c.FirstKDenseReplace != 0 && c.FirstKDenseReplace != dense {
		return fmt.Errorf("first_k_dense_replace = %d but mlp_layer_types has %d leading dense layers", c.FirstKDenseReplace, dense)
	}
	c.FirstKDenseReplace = dense
	return nil
}

// Validate checks the configuration and names the offending field.
func (c *Config) Validate() error {
	positive := []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"num_hidden_layers", c.NumHiddenLayers},
		{"num_attention_heads", c.NumHeads}, {"q_lora_rank", c.QLoRARank}, {"kv_lora_rank", c.KVLoRARank},
		{"qk_nope_head_dim", c.QKNopeHeadDim}, {"qk_rope_head_dim", c.QKRopeHeadDim}, {"v_head_dim", c.VHeadDim},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("%s = %d: must be positive", p.name, p.v)
		}
	}
	switch c.ModelType {
	case "deepseek_v32", "deepseek_v3":
	default:
		return fmt.Errorf("model_type %q: want \"deepseek_v32\" or \"deepseek_v3\"", c.ModelType)
	}
	if c.HiddenAct != "silu" {
		return fmt.Errorf("hidden_act %q: only \"silu\" is supported", c.HiddenAct)
	}
	if c.AttentionBias {
		return fmt.Errorf("attention_bias = true is not supported (DeepSeek has none)")
	}
	if c.TieEmbeddings {
		return fmt.Errorf("tie_word_embeddings = true is not supported (DeepSeek's head is not tied)")
	}
	if c.QKRopeHeadDim%2 != 0 {
		return fmt.Errorf("qk_rope_head_dim = %d: must be even", c.QKRopeHeadDim)
	}
	if c.FirstKDenseReplace < 0 || c.FirstKDenseReplace > c.NumHiddenLayers {
		return fmt.Errorf("first_k_dense_replace = %d: must be in [0, num_hidden_layers=%d]", c.FirstKDenseReplace, c.NumHiddenLayers)
	}
	if c.MoELayerFreq != 1 {
		return fmt.Errorf("moe_layer_freq = %d: only 1 is supported", c.MoELayerFreq)
	}
	if c.NumNextNLayers < 0 {
		return fmt.Errorf("num_nextn_predict_layers = %d: must not be negative", c.NumNextNLayers)
	}
	if c.FirstKDenseReplace > 0 && c.IntermediateSize <= 0 {
		return fmt.Errorf("intermediate_size = %d: must be positive with dense layers", c.IntermediateSize)
	}
	if c.NumMoELayers() > 0 {
		if err := c.validateMoE(); err != nil {
			return err
		}
	}
	if c.HasIndexer() {
		switch {
		case c.IndexNumHeads <= 0:
			return fmt.Errorf("index_n_heads = %d: must be positive", c.IndexNumHeads)
		case c.IndexHeadDim <= 0:
			return fmt.Errorf("index_head_dim = %d: must be positive", c.IndexHeadDim)
		case c.QKRopeHeadDim > c.IndexHeadDim:
			return fmt.Errorf("qk_rope_head_dim = %d exceeds index_head_dim = %d", c.QKRopeHeadDim, c.IndexHeadDim)
		case c.IndexTopK < 1:
			return fmt.Errorf("index_topk = %d: must be at least 1", c.IndexTopK)
		}
	}
	if c.Rope.Theta <= 0 {
		return fmt.Errorf("rope_theta = %g: must be positive", c.Rope.Theta)
	}
	if c.Rope.Type == "yarn" {
		if c.Rope.Factor <= 0 {
			return fmt.Errorf("rope_scaling.factor = %g: must be positive", c.Rope.Factor)
		}
		if c.Rope.OriginalMaxPosition <= 0 {
			return fmt.Errorf("rope_scaling.original_max_position_embeddings = %d: must be positive", c.Rope.OriginalMaxPosition)
		}
	}
	if c.RMSNormEps <= 0 {
		return fmt.Errorf("rms_norm_eps = %g: must be positive", c.RMSNormEps)
	}
	if q := c.Quantization; q != nil {
		if q.QuantMethod != "fp8" {
			return fmt.Errorf("quantization_config.quant_method %q: only \"fp8\" is supported", q.QuantMethod)
		}
		if q.Fmt != "" && q.Fmt != "e4m3" {
			return fmt.Errorf("quantization_config.fmt %q: only \"e4m3\" is supported", q.Fmt)
		}
		if len(q.WeightBlockSize) != 2 || q.WeightBlockSize[0] <= 0 || q.WeightBlockSize[1] <= 0 {
			return fmt.Errorf("quantization_config.weight_block_size %v: want two positive sizes", q.WeightBlockSize)
		}
	}
	return nil
}

func (c *Config) validateMoE() error {
	switch {
	case c.ScoringFunc != "sigmoid":
		return fmt.Errorf("scoring_func %q: only \"sigmoid\" is supported", c.ScoringFunc)
	case c.TopKMethod != "noaux_tc":
		return fmt.Errorf("topk_method %q: only \"noaux_tc\" is supported", c.TopKMethod)
	case c.NumRoutedExperts <= 0:
		return fmt.Errorf("n_routed_experts = %d: must be positive", c.NumRoutedExperts)
	case c.MoEIntermediateSize <= 0:
		return fmt.Errorf("moe_intermediate_size = %d: must be positive", c.MoEIntermediateSize)
	case c.NumSharedExperts < 0:
		return fmt.Errorf("n_shared_experts = %d: must not be negative", c.NumSharedExperts)
	case c.NumGroups <= 0:
		return fmt.Errorf("n_group = %d: must be positive", c.NumGroups)
	case c.NumRoutedExperts%c.NumGroups != 0:
		return fmt.Errorf("n_routed_experts = %d is not divisible by n_group = %d", c.NumRoutedExperts, c.NumGroups)
	case c.NumRoutedExperts/c.NumGroups < 2:
		return fmt.Errorf("n_group = %d leaves %d experts per group; the group score needs at least 2",
			c.NumGroups, c.NumRoutedExperts/c.NumGroups)
	case c.TopKGroup < 1 || c.TopKGroup > c.NumGroups:
		return fmt.Errorf("topk_group = %d: must be in [1, n_group=%d]", c.TopKGroup, c.NumGroups)
	case c.NumExpertsPerTok < 1:
		return fmt.Errorf("num_experts_per_tok = %d: must be at least 1", c.NumExpertsPerTok)
	case c.NumExpertsPerTok > c.TopKGroup*(c.NumRoutedExperts/c.NumGroups):
		return fmt.Errorf("num_experts_per_tok = %d exceeds topk_group × experts per group = %d",
			c.NumExpertsPerTok, c.TopKGroup*(c.NumRoutedExperts/c.NumGroups))
	}
	return nil
}

// Derived values, computed in one place.

// HasIndexer reports whether the layers carry DSA's lightning indexer.
func (c *Config) HasIndexer() bool { return c.ModelType == "deepseek_v32" }

// QKHeadDim is d_qk = d_n + d_r.
func (c *Config) QKHeadDim() int { return c.QKNopeHeadDim + c.QKRopeHeadDim }

// IsMoE reports whether layer i uses DeepSeekMoE (otherwise a dense SwiGLU MLP).
func (c *Config) IsMoE(i int) bool { return i >= c.FirstKDenseReplace && c.NumRoutedExperts > 0 }

// NumMoELayers counts the MoE layers of the main model.
func (c *Config) NumMoELayers() int {
	if c.NumRoutedExperts <= 0 {
		return 0
	}
	return c.NumHiddenLayers - c.FirstKDenseReplace
}

// yarnMScale is transformers' yarn_get_mscale.
func yarnMScale(scale, m float64) float64 {
	if scale <= 1 {
		return 1
	}
	return 0.1*m*math.Log(scale) + 1
}

// SoftmaxScale is MLA's scale: d_qk^-1/2 · m², m from mscale_all_dim under YaRN (dsa.md §3.3).
func (c *Config) SoftmaxScale() float64 {
	s := 1 / math.Sqrt(float64(c.QKHeadDim()))
	if c.Rope.Type == "yarn" && c.Rope.MScaleAllDim != 0 {
		m := yarnMScale(c.Rope.Factor, c.Rope.MScaleAllDim)
		s *= m * m
	}
	return s
}

// RopeAttentionFactor is the magnitude transformers multiplies cos and sin by
// (1 for plain RoPE, and for DeepSeek's YaRN configs where mscale == mscale_all_dim).
func (c *Config) RopeAttentionFactor() float64 {
	r := c.Rope
	if r.Type != "yarn" {
		return 1
	}
	if r.AttentionFactor != 0 {
		return r.AttentionFactor
	}
	if r.hasMScale && r.hasMScaleA {
		return yarnMScale(r.Factor, r.MScale) / yarnMScale(r.Factor, r.MScaleAllDim)
	}
	return yarnMScale(r.Factor, 1)
}

// RopeFrequencies returns the d_r/2 angular frequencies f'_i, YaRN-scaled when
// configured (dsa.md §3.2).
func (c *Config) RopeFrequencies() []float64 {
	dr := c.QKRopeHeadDim
	f := make([]float64, dr/2)
	for i := range f {
		f[i] = 1 / math.Pow(c.Rope.Theta, float64(2*i)/float64(dr))
	}
	if c.Rope.Type != "yarn" {
		return f
	}
	r := c.Rope
	corr := func(beta float64) float64 {
		return float64(dr) * math.Log(float64(r.OriginalMaxPosition)/(2*math.Pi*beta)) / (2 * math.Log(r.Theta))
	}
	low := math.Max(math.Floor(corr(r.BetaFast)), 0)
	high := math.Min(math.Ceil(corr(r.BetaSlow)), float64(dr-1))
	if low == high {
		high += 0.001
	}
	for i := range f {
		ramp := math.Min(math.Max((float64(i)-low)/(high-low), 0), 1)
		// transformers' extrapolation factor is 1 - ramp: keep f where ramp is 0.
		f[i] = f[i]/r.Factor*ramp + f[i]*(1-ramp)
	}
	return f
}
