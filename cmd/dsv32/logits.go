package main

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/dsv32/dsv32/checkpoint"
	"github.com/dsv32/dsv32/model"
	"github.com/gomlx/compute/dtypes"
)

// logitsCmd runs one prefill and writes what a reference can be checked against.
type logitsCmd struct {
	backendFlag
	Model string `required:"" help:"Checkpoint folder (config.json + safetensors)."`
	IDs   string `required:"" name:"ids" help:"Comma-separated token ids, e.g. 1,2,3."`
	Dense bool   `help:"Attend to every causal key (no top-k)."`
	Out   string `required:"" help:"Output .safetensors file: logits [S,V] float32 and topk_<layer> [S,k] int64."`
}

func (c *logitsCmd) Run() error {
	ids, err := parseIDs(c.IDs)
	if err != nil {
		return err
	}
	backend, err := c.open()
	if err != nil {
		return err
	}
	m, err := model.Load(c.Model, dtypes.Float32)
	if err != nil {
		return err
	}
	res, err := m.RunPrefill(backend, ids, model.Options{Dense: c.Dense, CaptureTopK: true})
	if err != nil {
		return err
	}
	S, V := len(ids), m.Config.VocabSize
	logits, err := checkpoint.FromFloat32("logits", []int{S, V}, res.Logits, checkpoint.F32)
	if err != nil {
		return err
	}
	out := []checkpoint.Tensor{logits}
	for l, top := range res.TopK {
		data := make([]byte, 0, 8*len(top))
		for _, v := range top {
			u := uint64(int64(v))
			for b := range 8 {
				data = append(data, byte(u>>(8*b)))
			}
		}
		out = append(out, checkpoint.Tensor{Name: fmt.Sprintf("topk_%d", l), DType: checkpoint.I64, Shape: []int{S, res.K}, Data: data})
	}
	if err := checkpoint.Write(c.Out, out, map[string]string{"producer": "dsv32 logits"}); err != nil {
		return err
	}
	slog.Info("wrote logits", "file", c.Out, "tokens", S, "vocab", V, "layers_with_topk", len(res.TopK))
	return nil
}

// parseIDs reads "1,2,3" into token ids.
func parseIDs(s string) ([]int32, error) {
	var ids []int32
	for i, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--ids: item %d (%q) is not a non-negative integer", i+1, f)
		}
		ids = append(ids, int32(v))
	}
	return ids, nil
}
