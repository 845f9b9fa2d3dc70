package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/dsv32/dsv32/model"
)

// infoCmd prints the architecture, parameter counts and cache footprint.
type infoCmd struct {
	Path string `arg:"" help:"A config.json or a checkpoint folder."`
}

func (c *infoCmd) Run() error {
	cfg, err := model.LoadConfig(c.Path)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	defer w.Flush()
	kind := "DeepSeek-V3.2 (MLA + DSA + DeepSeekMoE)"
	if !cfg.HasIndexer() {
		kind = "DeepSeek-V3 (MLA + DeepSeekMoE, no indexer)"
	}
	fmt.Fprintf(w, "architecture\t%s\n", kind)
	fmt.Fprintf(w, "layers\t%d (%d dense MLP, %d MoE) + %d MTP\n", cfg.NumHiddenLayers, cfg.FirstKDenseReplace, cfg.NumMoELayers(), cfg.NumNextNLayers)
	fmt.Fprintf(w, "hidden\t%d, vocab %d, context %d\n", cfg.HiddenSize, cfg.VocabSize, cfg.MaxPositionEmbeddings)
	fmt.Fprintf(w, "MLA\t%d heads, q_lora %d, kv_lora %d, nope %d + rope %d, v %d, softmax scale %.8f\n",
		cfg.NumHeads, cfg.QLoRARank, cfg.KVLoRARank, cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.VHeadDim, cfg.SoftmaxScale())
	rope := fmt.Sprintf("theta %g", cfg.Rope.Theta)
	if cfg.Rope.Type == "yarn" {
		rope += fmt.Sprintf(", YaRN factor %g over %d (beta %g/%g, mscale %g/%g)", cfg.Rope.Factor, cfg.Rope.OriginalMaxPosition,
			cfg.Rope.BetaFast, cfg.Rope.BetaSlow, cfg.Rope.MScale, cfg.Rope.MScaleAllDim)
	}
	fmt.Fprintf(w, "RoPE\t%s\n", rope)
	if cfg.HasIndexer() {
		fmt.Fprintf(w, "indexer\t%d heads × %d, top-k %d\n", cfg.IndexNumHeads, cfg.IndexHeadDim, cfg.IndexTopK)
	}
	if cfg.NumMoELayers() > 0 {
		fmt.Fprintf(w, "MoE\t%d routed experts (%d per token, %d groups, top %d groups) + %d shared, inner %d, scale %g\n",
			cfg.NumRoutedExperts, cfg.NumExpertsPerTok, cfg.NumGroups, cfg.TopKGroup, cfg.NumSharedExperts, cfg.MoEIntermediateSize, cfg.RoutedScalingFactor)
	}
	if q := cfg.Quantization; q != nil {
		fmt.Fprintf(w, "weights\tFP8 %s, blocks %v\n", q.Fmt, q.WeightBlockSize)
	}
	n := cfg.Count()
	fmt.Fprintf(w, "\t\n")
	fmt.Fprintf(w, "parameters, main model\t%s\t(%d)\n", human(n.Total), n.Total)
	fmt.Fprintf(w, "  of which indexers\t%s\t(%d)\n", human(n.Indexers), n.Indexers)
	fmt.Fprintf(w, "  of which routed experts\t%s\t(%d)\n", human(n.RoutedExperts), n.RoutedExperts)
	fmt.Fprintf(w, "activated per token\t%s\t(%d; counts embedding and head)\n", human(n.Activated), n.Activated)
	fmt.Fprintf(w, "  excluding the embedding\t%s\t(%d)\n", human(n.Activated-int64(cfg.VocabSize*cfg.HiddenSize)), n.Activated-int64(cfg.VocabSize*cfg.HiddenSize))
	if cfg.NumNextNLayers > 0 {
		fmt.Fprintf(w, "MTP, own weights\t%s\t(%d)\n", human(n.MTP), n.MTP)
		fmt.Fprintf(w, "main + MTP\t%s\t(%d)\n", human(n.Total+n.MTP), n.Total+n.MTP)
		fmt.Fprintf(w, "main + MTP with its embedding/head copies\t%s\t(%d)\n", human(n.OnDisk), n.OnDisk)
	}
	fmt.Fprintf(w, "\t\n")
	lat, rk := cfg.KVLoRARank, cfg.QKRopeHeadDim
	ik := 0
	if cfg.HasIndexer() {
		ik = cfg.IndexHeadDim
	}
	fmt.Fprintf(w, "cache per token and layer\tlatent %d + rope key %d + indexer key %d values\n", lat, rk, ik)
	for _, b := range []struct {
		name  string
		bytes int
	}{{"fp32", 4}, {"bf16", 2}} {
		per := cfg.CacheWidth() * b.bytes
		total := int64(per) * int64(cfg.NumHiddenLayers)
		fmt.Fprintf(w, "cache bytes per token (%s)\t%d per layer, %d in total (%s at 128K tokens)\n", b.name, per, total, humanBytes(total*131072))
	}
	return nil
}

func human(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

func humanBytes(n int64) string {
	const gib = 1 << 30
	if n >= gib {
		return fmt.Sprintf("%.1f GiB", float64(n)/gib)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
