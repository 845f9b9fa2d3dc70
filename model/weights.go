package model

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"

	"github.com/dsv32/dsv32/checkpoint"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/dtypes/bfloat16"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/tensors"
	gm "github.com/gomlx/gomlx/ml/model"
)

// The weight table: every tensor of a checkpoint, its Hugging Face name, its
// shape and the store variable that holds it. Store paths mirror HF names
// ("model.layers.3.self_attn.q_a_proj.weight" is the variable
// "/model/layers/3/self_attn/q_a_proj/weight"); routed experts are the one
// exception, stacked into one variable per projection ([E, out, in]).

// Init is how a fresh weight is drawn.
type Init int

const (
	InitNormal Init = iota // N(0, initializer_range²)
	InitOne                // norm weights
	InitZero               // biases, the router's correction bias
)

// Tensor describes one checkpoint tensor.
type Tensor struct {
	Name   string // HF name
	Shape  []int  // [out, in] for linear maps
	Var    string // store variable path
	Expert int    // index into the stacked variable, or -1
	Init   Init
	FP8    bool // DeepSeek stores it as F8_E4M3 with block scales (dsa.md §7.1)
	MTP    bool // part of the multi-token-prediction block
}

// Var is one store variable and the tensors that make it up.
type Var struct {
	Path    string
	Shape   []int
	Init    Init
	Tensors []Tensor // one, or E experts in order
}

// Tensors lists the checkpoint's tensors in a stable order (main model; the
// MTP block's when withMTP).
func (c *Config) Tensors(withMTP bool) []Tensor {
	var ts []Tensor
	add := func(name string, init Init, fp8 bool, shape ...int) {
		ts = append(ts, Tensor{Name: name, Shape: shape, Var: varPath(name), Expert: -1, Init: init, FP8: fp8})
	}
	D, H := c.HiddenSize, c.NumHeads
	add("model.embed_tokens.weight", InitNormal, false, c.VocabSize, D)
	layer := func(i int) {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", InitOne, false, D)
		add(p+"post_attention_layernorm.weight", InitOne, false, D)
		a := p + "self_attn."
		add(a+"q_a_proj.weight", InitNormal, true, c.QLoRARank, D)
		add(a+"q_a_layernorm.weight", InitOne, false, c.QLoRARank)
		add(a+"q_b_proj.weight", InitNormal, true, H*c.QKHeadDim(), c.QLoRARank)
		add(a+"kv_a_proj_with_mqa.weight", InitNormal, true, c.KVLoRARank+c.QKRopeHeadDim, D)
		add(a+"kv_a_layernorm.weight", InitOne, false, c.KVLoRARank)
		add(a+"kv_b_proj.weight", InitNormal, true, H*(c.QKNopeHeadDim+c.VHeadDim), c.KVLoRARank)
		add(a+"o_proj.weight", InitNormal, true, D, H*c.VHeadDim)
		if c.HasIndexer() {
			ix := a + "indexer."
			add(ix+"wq_b.weight", InitNormal, true, c.IndexNumHeads*c.IndexHeadDim, c.QLoRARank)
			add(ix+"wk.weight", InitNormal, true, c.IndexHeadDim, D)
			add(ix+"k_norm.weight", InitOne, false, c.IndexHeadDim)
			add(ix+"k_norm.bias", InitZero, false, c.IndexHeadDim)
			add(ix+"weights_proj.weight", InitNormal, false, c.IndexNumHeads, D)
		}
		m := p + "mlp."
		if !c.IsMoE(i) {
			add(m+"gate_proj.weight", InitNormal, true, c.IntermediateSize, D)
			add(m+"up_proj.weight", InitNormal, true, c.IntermediateSize, D)
			add(m+"down_proj.weight", InitNormal, true, D, c.IntermediateSize)
			return
		}
		I := c.MoEIntermediateSize
		add(m+"gate.weight", InitNormal, false, c.NumRoutedExperts, D)
		add(m+"gate.e_score_correction_bias", InitZero, false, c.NumRoutedExperts)
		for _, proj := range []string{"gate_proj", "up_proj", "down_proj"} {
			shape := []int{I, D}
			if proj == "down_proj" {
				shape = []int{D, I}
			}
			for e := range c.NumRoutedExperts {
				name := fmt.Sprintf("%sexperts.%d.%s.weight", m, e, proj)
				ts = append(ts, Tensor{Name: name, Shape: shape, Var: varPath(m + "experts." + proj + ".weight"),
					Expert: e, Init: InitNormal, FP8: true})
			}
		}
		if c.NumSharedExperts > 0 {
			S := c.NumSharedExperts * I
			add(m+"shared_experts.gate_proj.weight", InitNormal, true, S, D)
			add(m+"shared_experts.up_proj.weight", InitNormal, true, S, D)
			add(m+"shared_experts.down_proj.weight", InitNormal, true, D, S)
		}
	}
	for i := range c.NumHiddenLayers {
		layer(i)
	}
	add("model.norm.weight", InitOne, false, D)
	add("lm_head.weight", InitNormal, false, c.VocabSize, D)
	if withMTP {
		for j := range c.NumNextNLayers {
			i := c.NumHiddenLayers + j
			start := len(ts)
			layer(i)
			p := fmt.Sprintf("model.layers.%d.", i)
			add(p+"enorm.weight", InitOne, false, D)
			add(p+"hnorm.weight", InitOne, false, D)
			add(p+"eh_proj.weight", InitNormal, false, D, 2*D)
			add(p+"shared_head.norm.weight", InitOne, false, D)
			for k := start; k < len(ts); k++ {
				ts[k].MTP = true
			}
		}
	}
	return ts
}

// varPath maps an HF name to its store variable path.
func varPath(name string) string { return "/" + strings.ReplaceAll(name, ".", "/") }

// Vars groups the tensors into store variables, in table order.
func (c *Config) Vars(withMTP bool) []Var {
	var vs []Var
	index := map[string]int{}
	for _, t := range c.Tensors(withMTP) {
		i, ok := index[t.Var]
		if !ok {
			i = len(vs)
			index[t.Var] = i
			shape := t.Shape
			if t.Expert >= 0 {
				shape = append([]int{c.NumRoutedExperts}, t.Shape...)
			}
			vs = append(vs, Var{Path: t.Var, Shape: shape, Init: t.Init})
		}
		vs[i].Tensors = append(vs[i].Tensors, t)
	}
	return vs
}

// Model is a configuration and the store holding its weights.
type Model struct {
	Config *Config
	Store  *gm.Store

	prefills *prefills // RunPrefill's programs
}

// newModel makes an empty model whose weights will be held in dt.
func newModel(cfg *Config, dt dtypes.DType) *Model {
	st := gm.NewStore()
	SetParamDType(st, dt)
	return &Model{Config: cfg, Store: st, prefills: &prefills{}}
}

// NewRandom makes a model with freshly drawn weights (deterministic for a
// seed): N(0, std²) for linear maps and embeddings, ones for norms, zeros for
// biases — transformers' initialisation for DeepSeek. Variables are drawn in
// parallel, each from its own stream, so the result does not depend on the
// number of cores.
func NewRandom(cfg *Config, std float64, seed uint64, dt dtypes.DType) (*Model, error) {
	m := newModel(cfg, dt)
	vars := cfg.Vars(false)
	values := make([][]float32, len(vars))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, v := range vars {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			data := make([]float32, numel(v.Shape))
			switch v.Init {
			case InitNormal:
				rng := rand.New(rand.NewPCG(seed, uint64(i)*0x9e3779b97f4a7c15+1))
				for j := range data {
					data[j] = float32(rng.NormFloat64() * std)
				}
			case InitOne:
				for j := range data {
					data[j] = 1
				}
			}
			values[i] = data
		}()
	}
	wg.Wait()
	for i, v := range vars {
		if err := m.setVar(v, values[i]); err != nil {
			return nil, err
		}
		values[i] = nil
	}
	return m, nil
}

// Load reads a checkpoint directory (config.json + safetensors, FP8 weights
// dequantised) into a model whose weights are held in dt. The MTP block is
// not loaded (only speculative decoding uses it).
func Load(dir string, dt dtypes.DType) (*Model, error) {
	cfg, err := LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	ck, err := checkpoint.Open(dir)
	if err != nil {
		return nil, err
	}
	defer ck.Close()
	if q := cfg.Quantization; q != nil {
		ck.SetBlockSize([2]int{q.WeightBlockSize[0], q.WeightBlockSize[1]})
	}
	m := newModel(cfg, dt)
	for _, v := range cfg.Vars(false) {
		data := make([]float32, 0, numel(v.Shape))
		for _, t := range v.Tensors {
			w, shape, err := ck.Float32(t.Name)
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", dir, err)
			}
			if !equalInts(shape, t.Shape) {
				return nil, fmt.Errorf("load %s: tensor %q has shape %v, config.json implies %v", dir, t.Name, shape, t.Shape)
			}
			data = append(data, w...)
		}
		if err := m.setVar(v, data); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// setVar stores one variable's values (float32, converted to the model dtype).
func (m *Model) setVar(v Var, data []float32) error {
	dt := dtypes.Float32
	if !strings.HasSuffix(v.Path, "e_score_correction_bias") {
		dt = ParamDType(m.Store.RootScope())
	}
	t := toTensor(data, v.Shape, dt)
	variable, err := m.Store.CreateVariable(v.Path, t)
	if err != nil {
		return fmt.Errorf("weight %s: %w", v.Path, err)
	}
	if strings.HasSuffix(v.Path, "e_score_correction_bias") {
		variable.SetTrainable(false)
	}
	return nil
}

// toTensor builds a tensor of dtype dt from float32 values.
func toTensor(data []float32, shape []int, dt dtypes.DType) *tensors.Tensor {
	if dt == dtypes.Float32 {
		return tensors.FromFlatDataAndDimensions(data, shape...)
	}
	t := tensors.FromShape(shapesOf(dt, shape))
	switch dt {
	case dtypes.BFloat16:
		tensors.MustMutableFlatData(t, func(flat []bfloat16.BFloat16) {
			for i, f := range data {
				flat[i] = bfloat16.BFloat16(checkpoint.Float32ToBF16(f))
			}
		})
	default:
		panic(fmt.Sprintf("model: unsupported weight dtype %s", dt))
	}
	return t
}

// VarFloat32 returns a store variable's value as float32.
func (m *Model) VarFloat32(path string) ([]float32, []int, error) {
	v := m.Store.GetVariable(path)
	if v == nil {
		return nil, nil, fmt.Errorf("model: no weight %s", path)
	}
	t, err := v.Value()
	if err != nil {
		return nil, nil, fmt.Errorf("model: weight %s: %w", path, err)
	}
	return TensorFloat32(t)
}

// TensorFloat32 copies a float tensor's values out as float32.
func TensorFloat32(t *tensors.Tensor) ([]float32, []int, error) {
	dims := t.Shape().Dimensions
	switch t.DType() {
	case dtypes.Float32:
		return tensors.MustCopyFlatData[float32](t), dims, nil
	case dtypes.BFloat16:
		raw := tensors.MustCopyFlatData[bfloat16.BFloat16](t)
		out := make([]float32, len(raw))
		for i, b := range raw {
			out[i] = checkpoint.BF16ToFloat32(uint16(b))
		}
		return out, dims, nil
	}
	return nil, nil, fmt.Errorf("model: tensor dtype %s is not float32 or bfloat16", t.DType())
}

// Save writes the weights as a Hugging Face checkpoint: config.json and
// model.safetensors in dir, each written to a temporary name and renamed.
// dt is the on-disk dtype (F32 or BF16).
func (m *Model) Save(dir string, dt checkpoint.DType) error {
	var out []checkpoint.Tensor
	for _, v := range m.Config.Vars(false) {
		data, _, err := m.VarFloat32(v.Path)
		if err != nil {
			return err
		}
		for _, t := range v.Tensors {
			part := data
			if t.Expert >= 0 {
				n := numel(t.Shape)
				part = data[t.Expert*n : (t.Expert+1)*n]
			}
			ct, err := checkpoint.FromFloat32(t.Name, t.Shape, part, dt)
			if err != nil {
				return fmt.Errorf("save %s: %w", dir, err)
			}
			out = append(out, ct)
		}
	}
	if err := m.Config.Write(dir); err != nil {
		return err
	}
	return checkpoint.Write(dir+"/model.safetensors", out, map[string]string{"format": "pt"})
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func shapesOf(dt dtypes.DType, dims []int) shapes.Shape { return shapes.Make(dt, dims...) }
