package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
)

// The model FLOPs of the 1b-train preset, by hand: 6 per matmul weight a
// token passes through plus causal attention, 6·L·H·(d_qk+d_v)·(T+1)/2.
func TestTrainFLOPs(t *testing.T) {
	cfg, err := model.ParseConfig([]byte(preset1BTrain))
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Count().Total; n != 1_032_335_472 {
		t.Errorf("1b-train: %d parameters, want 1,032,335,472", n)
	}
	D, H, L, T := 2048, 16, 8, 2048
	attnW := 768*D + H*192*768 + 320*D + H*256*256 + D*H*128
	dense := 3 * 5632 * D
	moe := 4*3*512*D + 16*D + 3*512*D // 4 of 16 routed experts, the router, the shared expert
	nMM := float64(L*attnW + dense + 7*moe + 129280*D)
	attn := 6 * float64(L*H*(192+128)) * float64(T+1) / 2
	total, gotMM, gotAttn := trainFLOPs(cfg, T, false)
	if gotMM != nMM || gotAttn != attn || total != 6*nMM+attn {
		t.Errorf("trainFLOPs = %g (matmul %g, attention %g), want %g (%g, %g)", total, gotMM, gotAttn, 6*nMM+attn, nMM, attn)
	}
	// Sparse: each query attends min(t, k) keys; below k that is dense.
	_, _, sparseAttn := trainFLOPs(cfg, 1024, true)
	want := 6*float64(L*H*(192+128))*1025/2 + 6*float64(L*16*128)*1025/2
	if math.Abs(sparseAttn-want) > 1e-6*want {
		t.Errorf("sparse attention FLOPs at T ≤ k: %g, want %g", sparseAttn, want)
	}
}

// `bench train` runs the trainer on the tiny model and writes its report.
func TestBenchTrainCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "train.json")
	if err := runCLI(t, "bench", "train", "--config", testutil.Testdata("tiny-dsa/config.json"), "--dtype", "f32",
		"--batch", "2", "--seq-len", "32", "--warmup", "1", "--steps", "2", "--out", out); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep trainReport
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Loss) != 3 || len(rep.StepsMS) != 2 || rep.TokensPerStep != 64 || !(rep.TokensPerS > 0) || !(rep.MFU > 0) {
		t.Errorf("report: %+v", rep)
	}
}

// `bench decode` times steps, chains and a prefill on the tiny model, and
// its report says what it measured and against which floor.
func TestBenchDecodeCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "decode.json")
	if err := runCLI(t, "bench", "decode", "--config", testutil.Testdata("tiny-dsa/config.json"), "--batch", "1,2",
		"--context", "40", "--steps", "3", "--prefill", "20", "--chunk", "8", "--bandwidth", "1048576",
		"--select", "digits", "--cache-write", "rows", "--out", out); err != nil {
		t.Fatal(err)
	}
	js, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep decodeReport
	if err := json.Unmarshal(js, &rep); err != nil {
		t.Fatal(err)
	}
	// The Go backend selects by radix select, writes by scatter and cannot
	// loop (--chain-loop is on by default): the report says what ran.
	if rep.Select != "radix" || rep.CacheWrite != "scatter" || rep.ChainLoop || !(rep.BandwidthGBs > 0) || len(rep.Decode) != 2 || len(rep.Prefill) != 1 || rep.Prefill[0].Tokens != 20 {
		t.Fatalf("report: %+v", rep)
	}
	for _, p := range rep.Decode {
		if p.Pos != 40 || !(p.StepMS > 0) || !(p.ChainMS > 0) || !(p.ChainSampledMS > 0) || p.WeightBytes <= 0 ||
			math.Abs(p.OverFloor-p.StepMS/p.FloorMS) > 1e-9*p.OverFloor {
			t.Errorf("decode point: %+v", p)
		}
	}
}
