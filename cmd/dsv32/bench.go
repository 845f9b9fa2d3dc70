package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/atomicfile"
	"github.com/dsv32/dsv32/model"
	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// benchCmd measures the engine: decode and prefill speed against the memory
// bandwidth floor, and how decode cost grows with position, sparse vs dense.
type benchCmd struct {
	Decode  benchDecodeCmd  `cmd:"" help:"Decode tokens/s and prefill time on a random model, with each step's memory-bandwidth floor."`
	Sparse  benchSparseCmd  `cmd:"" help:"Per-token decode cost against position, sparse (DSA) vs dense attention; writes a PNG chart."`
	Forward benchForwardCmd `cmd:"" help:"Time one forward pass (no cache), sparse vs dense."`
	Train   benchTrainCmd   `cmd:"" help:"Training tokens/s and MFU of the real trainer step on a random model (peer: bench/hf_train.py)."`
}

// preset3B is the issue's ~3.0B configuration, run side by side with transformers.
const preset3B = `{"model_type":"deepseek_v32","vocab_size":129280,"hidden_size":2048,"intermediate_size":5632,
	"moe_intermediate_size":1024,"num_hidden_layers":12,"first_k_dense_replace":1,"num_attention_heads":16,
	"num_key_value_heads":16,"q_lora_rank":768,"kv_lora_rank":256,"qk_nope_head_dim":128,"qk_rope_head_dim":64,
	"v_head_dim":128,"n_routed_experts":32,"n_shared_experts":1,"num_experts_per_tok":4,"n_group":4,"topk_group":2,
	"routed_scaling_factor":2.5,"index_n_heads":16,"index_head_dim":128,"index_topk":2048,
	"max_position_embeddings":163840,"rope_theta":10000,"rms_norm_eps":1e-6,"bos_token_id":0,"eos_token_id":1}`

// presets are the configurations benchmarks run on (random weights).
var presets = map[string]string{
	"3b": preset3B,
	// About 1.3B: the same shape with 8 routed experts, top-2.
	"1b": strings.NewReplacer(`"n_routed_experts":32`, `"n_routed_experts":8`,
		`"num_experts_per_tok":4`, `"num_experts_per_tok":2`).Replace(preset3B),
	// A small model for CPU curves: attention dominates, as at scale.
	"small": `{"model_type":"deepseek_v32","vocab_size":1024,"hidden_size":256,"intermediate_size":512,
	"moe_intermediate_size":128,"num_hidden_layers":2,"first_k_dense_replace":1,"num_attention_heads":16,
	"num_key_value_heads":16,"q_lora_rank":128,"kv_lora_rank":256,"qk_nope_head_dim":32,"qk_rope_head_dim":32,
	"v_head_dim":32,"n_routed_experts":8,"n_shared_experts":1,"num_experts_per_tok":2,"n_group":2,"topk_group":1,
	"routed_scaling_factor":2.5,"index_n_heads":4,"index_head_dim":64,"index_topk":2048,
	"max_position_embeddings":163840,"rope_theta":10000,"rms_norm_eps":1e-6,"bos_token_id":0,"eos_token_id":1}`,
}

// benchModel is a random model of a preset or a config.json.
type benchModel struct {
	backendFlag
	Preset string `default:"3b" help:"Configuration: 3b or small (ignored with --config)."`
	Config string `help:"A config.json to benchmark instead of a preset."`
	DType  string `name:"dtype" default:"bf16" enum:"bf16,f32" help:"Weight dtype."`
	Seed   uint64 `default:"1" help:"Seed of the random weights."`
}

// setup opens the backend and draws the model.
func (b *benchModel) setup() (compute.Backend, *model.Model, error) {
	backend, err := b.open()
	if err != nil {
		return nil, nil, err
	}
	m, err := b.load()
	return backend, m, err
}

func (b *benchModel) load() (*model.Model, error) {
	var cfg *model.Config
	var err error
	if b.Config != "" {
		cfg, err = model.LoadConfig(b.Config)
	} else {
		src, ok := presets[b.Preset]
		if !ok {
			return nil, fmt.Errorf("--preset %q: want 3b, 1b or small", b.Preset)
		}
		cfg, err = model.ParseConfig([]byte(src))
	}
	if err != nil {
		return nil, err
	}
	dt := dtypes.BFloat16
	if b.DType == "f32" {
		dt = dtypes.Float32
	}
	slog.Info("drawing random weights", "parameters", cfg.Count().Total, "dtype", dt)
	return model.NewRandom(cfg, 0.02, b.Seed, dt)
}

type benchDecodeCmd struct {
	benchModel
	Batch     string `default:"1,8" help:"Batch sizes."`
	Context   string `default:"4096,16384,32768" help:"Positions to decode at."`
	Steps     int    `default:"20" help:"Timed decode steps per point."`
	Prefill   string `default:"8192,32768" help:"Prefill lengths to time."`
	Chunk     int    `default:"2048" help:"Prefill chunk."`
	Bandwidth int64  `default:"2147483648" help:"Bytes for the copy-bandwidth probe."`
	Chain     bool   `default:"true" negatable:"" help:"Also time chained decoding (each step fed from the device, model.Stepper.Chain): greedy, and sampled on the device at temperature 1 with top-p 0.95 (ChainSample)."`
	Select    string `default:"digits" enum:"sort,digits" help:"On XLA, how decode steps pick the indexer's keys and chains cut top-k/top-p: digits (radix select over 8-bit digits, model.Options.DigitTopK, which device loops need; docs/engine.md) or sort (the backend's TopK)."`
	Write     string `name:"cache-write" default:"scatter" enum:"scatter,rows" help:"On XLA, how a step of several rows writes their cache slots: scatter (one for the batch) or rows (a DynamicUpdateSlice per row, model.Options.RowWrites; docs/engine.md)."`
	ChainLoop bool   `name:"chain-loop" default:"true" negatable:"" help:"Run each chain (greedy and sampled) as one program, a loop on the device (model.Options.DeviceLoop), where the backend can: XLA with --select digits. The report's chain_loop says whether it did."`
	Out       string `help:"Write the results as JSON here."`
}

// deviceLoop reports whether chains run as device loops: asked (--chain-loop,
// the default) and possible, on a backend that CanLoop with --select digits
// (a loop cannot hold the sort of --select sort; model.Stepper.loopable).
func deviceLoop(asked bool, backend compute.Backend, sel string) bool {
	return asked && model.CanLoop(backend) && sel == "digits"
}

// decodeReport is what `bench decode` writes.
type decodeReport struct {
	Device       string         `json:"device"`
	Select       string         `json:"select"`
	CacheWrite   string         `json:"cache_write"`
	ChainLoop    bool           `json:"chain_loop"`
	Params       int64          `json:"params"`
	BandwidthGBs float64        `json:"bandwidth_gb_s"`
	Decode       []decodePoint  `json:"decode"`
	Prefill      []prefillPoint `json:"prefill"`
}

type decodePoint struct {
	engine.DecodeTiming
	FloorMS   float64 `json:"floor_ms"`
	OverFloor float64 `json:"times_floor"`
	// Chained greedy decoding (--chain): the wall time per step when each
	// step's tokens stay on the device and feed the next.
	ChainMS        float64 `json:"chain_ms,omitempty"`
	ChainOverFloor float64 `json:"chain_times_floor,omitempty"`
	// The same, drawing every token on the device at temperature 1, top-p
	// 0.95 (dsv32 run's defaults; the cut sorts the vocabulary).
	ChainSampledMS float64 `json:"chain_sampled_ms,omitempty"`
	ChainFirstMS   float64 `json:"chain_first_ms,omitempty"` // the first greedy chain's wall time, compiling included
}

type prefillPoint struct {
	Tokens int     `json:"tokens"`
	MS     float64 `json:"ms"`
}

func (c *benchDecodeCmd) Run() error {
	backend, m, err := c.setup()
	if err != nil {
		return err
	}
	rep := decodeReport{Device: backend.Description(), Params: m.Config.Count().Total}
	opts := model.Options{NativeTopK: native(backend), DigitTopK: c.Select == "digits", RowWrites: c.Write == "rows",
		DeviceLoop: deviceLoop(c.ChainLoop, backend, c.Select)}
	bw, err := engine.MeasureBandwidth(backend, c.Bandwidth)
	if err != nil {
		return err
	}
	rep.BandwidthGBs = bw / 1e9
	slog.Info("copy bandwidth", "GB/s", fmt.Sprintf("%.0f", rep.BandwidthGBs))
	batches, err := parseInts(c.Batch)
	if err != nil {
		return fmt.Errorf("--batch: %w", err)
	}
	contexts, err := parseInts(c.Context)
	if err != nil {
		return fmt.Errorf("--context: %w", err)
	}
	rep.Select, rep.CacheWrite, rep.ChainLoop = c.Select, c.Write, opts.DeviceLoop
	if !backend.Capabilities().Operations[compute.OpTypeDynamicUpdateSlice] {
		rep.CacheWrite = "scatter" // no row writes without DynamicUpdateSlice (the Go backend)
	}
	if !opts.NativeTopK {
		rep.Select = "radix" // the Go backend always selects by bitwise radix select
	}
	for _, pos := range contexts {
		for _, b := range batches {
			t, err := engine.MeasureDecode(m, backend, b, pos, c.Steps, opts)
			if err != nil {
				return fmt.Errorf("decode batch %d at %d: %w", b, pos, err)
			}
			floor := float64(t.WeightBytes+t.CacheBytes) / bw * 1000
			p := decodePoint{DecodeTiming: t, FloorMS: floor, OverFloor: t.StepMS / floor}
			fmt.Printf("decode batch %d at %6d: %7.2f ms/step  %8.1f tok/s  floor %.2f ms (%.1f×)\n",
				b, pos, t.StepMS, t.TokensPerSecond, floor, p.OverFloor)
			if c.Chain {
				ct, err := engine.MeasureChain(m, backend, b, pos, c.Steps, model.Draw{}, opts)
				if err != nil {
					return fmt.Errorf("chained decode batch %d at %d: %w", b, pos, err)
				}
				ms := ct.StepMS
				p.ChainMS, p.ChainOverFloor, p.ChainFirstMS = ms, ms/floor, ct.FirstMS
				fmt.Printf("chain  batch %d at %6d: %7.2f ms/step  %8.1f tok/s  floor %.2f ms (%.1f×); the first chain, compiling: %.0f ms\n",
					b, pos, ms, float64(b)/ms*1000, floor, p.ChainOverFloor, ct.FirstMS)
				st, err := engine.MeasureChain(m, backend, b, pos, c.Steps, model.Draw{Temperature: 1, TopP: 0.95}, opts)
				if err != nil {
					return fmt.Errorf("chained sampled decode batch %d at %d: %w", b, pos, err)
				}
				p.ChainSampledMS = st.StepMS
				fmt.Printf("chain  batch %d at %6d: %7.2f ms/step  sampled on the device (temperature 1, top-p 0.95)\n", b, pos, p.ChainSampledMS)
			}
			rep.Decode = append(rep.Decode, p)
		}
	}
	lengths, err := parseInts(c.Prefill)
	if err != nil {
		return fmt.Errorf("--prefill: %w", err)
	}
	for _, n := range lengths {
		ms, err := engine.MeasurePrefill(m, backend, n, c.Chunk, opts)
		if err != nil {
			return fmt.Errorf("prefill %d: %w", n, err)
		}
		rep.Prefill = append(rep.Prefill, prefillPoint{Tokens: n, MS: ms})
		fmt.Printf("prefill %6d tokens: %8.1f ms (%.0f tok/s)\n", n, ms, float64(n)/ms*1000)
	}
	return writeJSON(c.Out, rep)
}

type benchSparseCmd struct {
	benchModel
	Positions string `default:"1024,2048,4096,8192,16384,32768,65536" help:"Positions to decode at."`
	Steps     int    `default:"5" help:"Timed decode steps per point."`
	Out       string `help:"Write the results as JSON here."`
	PNG       string `default:"sparse_vs_dense.png" help:"Chart file."`
}

func (c *benchSparseCmd) Run() error {
	backend, m, err := c.setup()
	if err != nil {
		return err
	}
	positions, err := parseInts(c.Positions)
	if err != nil {
		return fmt.Errorf("--positions: %w", err)
	}
	var points []engine.DecodeTiming
	series := map[bool]plotter.XYs{}
	for _, pos := range positions {
		for _, dense := range []bool{false, true} {
			t, err := engine.MeasureDecode(m, backend, 1, pos, c.Steps, model.Options{Dense: dense, NativeTopK: native(backend)})
			if err != nil {
				return fmt.Errorf("decode at %d (dense %v): %w", pos, dense, err)
			}
			points = append(points, t)
			series[dense] = append(series[dense], plotter.XY{X: float64(pos), Y: t.StepMS})
			fmt.Printf("position %6d %-6s %8.2f ms/token\n", pos, map[bool]string{true: "dense", false: "sparse"}[dense], t.StepMS)
		}
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("Decode cost per token vs position (%s, index_topk %d)", backend.Name(), m.Config.IndexTopK)
	p.X.Label.Text = "position (tokens)"
	p.Y.Label.Text = "ms per decode step (batch 1)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	if err := plotutil.AddLinePoints(p, "sparse (DSA)", series[false], "dense", series[true]); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	if err := p.Save(8*vg.Inch, 5*vg.Inch, c.PNG); err != nil {
		return err
	}
	slog.Info("wrote chart", "file", c.PNG)
	return writeJSON(c.Out, points)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, data)
}

type benchForwardCmd struct {
	benchModel
	Tokens int `default:"8192" help:"Tokens in the forward pass."`
}

func (c *benchForwardCmd) Run() error {
	backend, m, err := c.setup()
	if err != nil {
		return err
	}
	fmt.Printf("model: %d parameters, %d tokens, %s\n", m.Config.Count().Total, c.Tokens, backend.Description())
	for _, dense := range []bool{false, true} {
		ms, err := engine.MeasureForward(m, backend, c.Tokens, model.Options{Dense: dense, NativeTopK: native(backend)})
		if err != nil {
			return fmt.Errorf("forward (dense %v): %w", dense, err)
		}
		fmt.Printf("forward %d tokens %-6s %9.1f ms (%.0f tok/s)\n", c.Tokens, map[bool]string{true: "dense", false: "sparse"}[dense], ms, float64(c.Tokens)/ms*1000)
	}
	return nil
}
