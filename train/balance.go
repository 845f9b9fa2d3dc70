package train

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/core/tensors"
)

// MoE load balancing (dsa.md §5; DeepSeek-V3 report §2.1.2): the
// auxiliary-loss-free update of each MoE layer's selection bias, applied
// after every optimizer step, and the per-expert load statistics the
// metrics log. The small sequence-wise balance loss itself is computed by
// the model (Outputs.Balance) and weighted by Config.Alpha in forward.

// balance moves each MoE layer's correction bias by the step's expert
// loads (tokens routed to each expert, summed over the micro-batches):
// b_e ← b_e + γ·sign(mean_e' load_e' − load_e). Overloaded experts lose
// selection score, underloaded ones gain it. The update is computed in
// float32 on the host, the variable's own dtype, so it is exact to resume.
func (t *Trainer) balance(loads [][]float32) error {
	if t.cfg.Gamma == 0 {
		return nil
	}
	if len(loads) != len(t.biasVar) {
		return fmt.Errorf("train: %d expert loads for %d MoE layers", len(loads), len(t.biasVar))
	}
	gamma := float32(t.cfg.Gamma)
	for i, path := range t.biasVar {
		v := t.m.Store.GetVariable(path)
		if v == nil {
			return fmt.Errorf("train: no variable %s", path)
		}
		val, err := v.Value()
		if err != nil {
			return fmt.Errorf("train: %s: %w", path, err)
		}
		b := tensors.MustCopyFlatData[float32](val)
		load := loads[i]
		var sum float32
		for _, l := range load {
			sum += l
		}
		mean := sum / float32(len(load))
		for e, l := range load {
			switch {
			case l < mean:
				b[e] += gamma
			case l > mean:
				b[e] -= gamma
			}
		}
		if err := v.SetValue(tensors.FromFlatDataAndDimensions(b, len(b))); err != nil {
			return fmt.Errorf("train: %s: %w", path, err)
		}
	}
	return nil
}

// LoadStats summarises one MoE layer's expert loads in a step: the fewest
// and most tokens any expert got, and the coefficient of variation
// (std/mean; 0 is perfectly balanced).
type LoadStats struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	CV  float64 `json:"cv"`
}

func loadStats(load []float32) LoadStats {
	if len(load) == 0 {
		return LoadStats{}
	}
	s := LoadStats{Min: math.Inf(1), Max: math.Inf(-1)}
	var sum float64
	for _, l := range load {
		x := float64(l)
		s.Min, s.Max = math.Min(s.Min, x), math.Max(s.Max, x)
		sum += x
	}
	mean := sum / float64(len(load))
	var ss float64
	for _, l := range load {
		d := float64(l) - mean
		ss += d * d
	}
	if mean > 0 {
		s.CV = math.Sqrt(ss/float64(len(load))) / mean
	}
	return s
}
