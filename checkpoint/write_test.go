package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sampleTensors has every dtype, a scalar, an empty tensor and odd sizes,
// filled with random bytes (NaN patterns included: the round trip is raw).
func sampleTensors(seed uint64) []Tensor {
	rng := rand.New(rand.NewPCG(seed, 7))
	var ts []Tensor
	add := func(name string, dt DType, shape ...int) {
		n, _ := numel(shape)
		data := make([]byte, n*dt.Size())
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		ts = append(ts, Tensor{Name: name, DType: dt, Shape: shape, Data: data})
	}
	add("model.embed_tokens.weight", BF16, 33, 16)
	add("model.layers.0.self_attn.q_a_proj.weight", F8E4M3, 40, 17)
	add("model.layers.0.self_attn.q_a_proj.weight_scale_inv", F32, 2, 1)
	add("model.norm.weight", F32, 16)
	add("half", F16, 3, 5, 7)
	add("ids", I64, 9)
	add("ids32", I32, 2, 2)
	add("mask", BOOL, 5)
	add("bytes", U8, 3)
	add("counts", U32, 1)
	add("scalar", F64)
	add("empty", F32, 0, 4)
	add("<html & \"quotes\">", F32, 1) // names need JSON escaping
	return ts
}

func checkTensors(t *testing.T, ck *Checkpoint, want []Tensor) {
	t.Helper()
	if len(ck.Names()) != len(want) {
		t.Errorf("%d tensors, want %d", len(ck.Names()), len(want))
	}
	for _, w := range want {
		raw, info, err := ck.Raw(w.Name)
		if err != nil {
			t.Fatal(err)
		}
		if info.DType != w.DType || !slices.Equal(info.Shape, w.Shape) || !bytes.Equal(raw, w.Data) {
			t.Errorf("%q: read %s %v (%d bytes), wrote %s %v (%d bytes)", w.Name, info.DType, info.Shape, len(raw), w.DType, w.Shape, len(w.Data))
		}
		if info.Shape == nil {
			t.Errorf("%q: nil shape, want []", w.Name)
		}
	}
}

func TestWriteRoundTrip(t *testing.T) {
	dir := t.TempDir()
	ts := sampleTensors(1)
	meta := map[string]string{"format": "pt", "note": "x<y"}
	path := filepath.Join(dir, "a.safetensors")
	if err := Write(path, ts, meta); err != nil {
		t.Fatal(err)
	}
	ck := mustOpen(t, path)
	checkTensors(t, ck, ts)
	if got := ck.Metadata(); len(got) != 2 || got["format"] != "pt" || got["note"] != "x<y" {
		t.Errorf("metadata %v", got)
	}
	// Every tensor is aligned to its element size (header padded to 8).
	for _, name := range ck.Names() {
		info, _ := ck.Info(name)
		if info.Begin%int64(info.DType.Size()) != 0 {
			t.Errorf("%q at offset %d is not aligned to %d", name, info.Begin, info.DType.Size())
		}
	}
	// The file depends on the set of tensors, not their order.
	rev := slices.Clone(ts)
	slices.Reverse(rev)
	path2 := filepath.Join(dir, "b.safetensors")
	if err := Write(path2, rev, meta); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(path2)
	if !bytes.Equal(a, b) {
		t.Error("writing the same tensors in another order changed the file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("directory holds %d entries, want 2 (no temporaries)", len(entries))
	}
}

// TestRewriteFixture reads every fixture tensor and writes it back: the
// result reads back bit-identically, and, as our writer's layout is
// canonical, a second rewrite is byte-identical to the first.
func TestRewriteFixture(t *testing.T) {
	src := mustOpen(t, tinyDSAFP8)
	var ts []Tensor
	for _, name := range src.Names() {
		raw, info, err := src.Raw(name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, Tensor{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	dir := t.TempDir()
	// Copy config.json so the block size travels with the weights.
	cfg, err := os.ReadFile(filepath.Join(tinyDSAFP8, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "model.safetensors")
	if err := Write(path, ts, src.Metadata()); err != nil {
		t.Fatal(err)
	}
	ck := mustOpen(t, dir)
	checkTensors(t, ck, ts)
	w, _, err := ck.Float32("model.layers.1.mlp.experts.3.up_proj.weight")
	if err != nil {
		t.Fatal(err)
	}
	want, _, _ := src.Float32("model.layers.1.mlp.experts.3.up_proj.weight")
	if !equalFloats(w, want) {
		t.Error("dequantised weight differs after the rewrite")
	}
	first, _ := os.ReadFile(path)
	if err := Write(path, ts, src.Metadata()); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(path)
	if !bytes.Equal(first, second) {
		t.Error("rewrite is not byte-identical")
	}
}

func TestFromFloat32(t *testing.T) {
	data := []float32{0, -0, 1, -1.5, 3.14159, 65504, 1e-8, 70000, float32(math.Inf(-1)), 1e30}
	shape := []int{2, 5}
	dir := t.TempDir()
	var ts []Tensor
	for _, dt := range []DType{F32, F16, BF16} {
		tensor, err := FromFloat32("w."+string(dt), shape, data, dt)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tensor)
	}
	path := filepath.Join(dir, "f.safetensors")
	if err := Write(path, ts, nil); err != nil {
		t.Fatal(err)
	}
	ck := mustOpen(t, path)
	round := map[DType]func(float32) float32{
		F32:  func(f float32) float32 { return f },
		F16:  func(f float32) float32 { return F16ToFloat32(Float32ToF16(f)) },
		BF16: func(f float32) float32 { return BF16ToFloat32(Float32ToBF16(f)) },
	}
	for dt, r := range round {
		got, gotShape, err := ck.Float32("w." + string(dt))
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, len(data))
		for i, v := range data {
			want[i] = r(v)
		}
		if !equalFloats(got, want) || !slices.Equal(gotShape, shape) {
			t.Errorf("%s: got %v, want %v", dt, got, want)
		}
	}
	for _, c := range []struct {
		name  string
		shape []int
		dt    DType
		want  string
	}{
		{"count", []int{3, 3}, F32, "has 9 elements, data has 10"},
		{"negative", []int{-2, -5}, F32, "negative dimension"},
		{"dtype", shape, F8E4M3, "use QuantizeFP8"},
	} {
		if _, err := FromFloat32(c.name, c.shape, data, c.dt); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestQuantizeFP8(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	rows, cols := 70, 45 // partial edge blocks with block 32
	data := make([]float32, rows*cols)
	for i := range data {
		data[i] = float32(rng.NormFloat64() * math.Pow(10, float64(i%5-2)))
	}
	for i := range 32 { // an all-zero block: amax clamps to 1e-4
		for j := range 32 {
			data[i*cols+j] = 0
		}
	}
	w, s, err := QuantizeFP8("layer.weight", []int{rows, cols}, data, [2]int{32, 32})
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "layer.weight_scale_inv" || !slices.Equal(s.Shape, []int{3, 2}) || w.DType != F8E4M3 {
		t.Fatalf("got %s %v and %s %v", w.Name, w.DType, s.Name, s.Shape)
	}
	path := filepath.Join(t.TempDir(), "q.safetensors")
	if err := Write(path, []Tensor{w, s}, nil); err != nil {
		t.Fatal(err)
	}
	ck := mustOpen(t, path) // no config.json: default 128×128 does not fit the scales
	if _, _, err := ck.Float32("layer.weight"); err == nil {
		t.Fatal("dequantised with the wrong block size")
	}
	ck.SetBlockSize([2]int{32, 32})
	got, _, err := ck.Float32("layer.weight")
	if err != nil {
		t.Fatal(err)
	}
	scales, _, _ := ck.Float32("layer.weight_scale_inv")
	if scales[0] != float32(1e-4)/448 {
		t.Errorf("zero block scale %v, want 1e-4/448", scales[0])
	}
	for bi := range 3 {
		for bj := range 2 {
			var amax, errMax float64
			sc := float64(scales[bi*2+bj])
			for i := bi * 32; i < min(rows, bi*32+32); i++ {
				for j := bj * 32; j < min(cols, bj*32+32); j++ {
					amax = max(amax, math.Abs(float64(data[i*cols+j])))
					errMax = max(errMax, math.Abs(float64(got[i*cols+j]-data[i*cols+j]))/sc)
				}
			}
			if amax > 1e-4 && math.Abs(sc-amax/448) > 1e-6*sc {
				t.Errorf("block (%d,%d): scale %v, want amax/448 = %v", bi, bj, sc, amax/448)
			}
			// In units of the scale, e4m3's largest half-ulp is 16 (at 448), plus float error.
			if errMax > 16.001 {
				t.Errorf("block (%d,%d): error %v scale units", bi, bj, errMax)
			}
		}
	}
	for _, c := range []struct {
		name  string
		shape []int
		data  []float32
		block [2]int
		want  string
	}{
		{"3-D", []int{1, 2, 2}, make([]float32, 4), [2]int{1, 1}, "want 2-D"},
		{"block", []int{2, 2}, make([]float32, 4), [2]int{0, 1}, "block size"},
		{"count", []int{2, 2}, make([]float32, 3), [2]int{1, 1}, "data has 3"},
		{"NaN", []int{1, 2}, []float32{1, float32(math.NaN())}, [2]int{1, 1}, "non-finite value NaN at [0, 1]"},
	} {
		if _, _, err := QuantizeFP8("x.weight", c.shape, c.data, c.block); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want %q", c.name, err, c.want)
		}
	}
}

func TestWriteSharded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt") // created by WriteSharded
	ts := sampleTensors(2)
	if err := WriteSharded(dir, ts, map[string]string{"format": "pt"}, 400); err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Metadata struct {
			TotalSize int64 `json:"total_size"`
		} `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	buf, err := os.ReadFile(filepath.Join(dir, IndexFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf, &idx); err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, tensor := range ts {
		total += int64(len(tensor.Data))
	}
	if idx.Metadata.TotalSize != total || len(idx.WeightMap) != len(ts) {
		t.Errorf("index: total_size %d (want %d), %d entries", idx.Metadata.TotalSize, total, len(idx.WeightMap))
	}
	// embed (1056 B) and the FP8 weight (680 B) exceed 400 B: each gets its
	// own shard; the other 394 B fill the third.
	for name, shard := range map[string]string{
		"model.embed_tokens.weight":                          "model-00001-of-00003.safetensors",
		"model.layers.0.self_attn.q_a_proj.weight":           "model-00002-of-00003.safetensors",
		"model.layers.0.self_attn.q_a_proj.weight_scale_inv": "model-00003-of-00003.safetensors",
		"<html & \"quotes\">":                                "model-00003-of-00003.safetensors",
	} {
		if got := idx.WeightMap[name]; got != shard {
			t.Errorf("%q in %s, want %s", name, got, shard)
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	want := []string{"model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
		"model-00003-of-00003.safetensors", IndexFile}
	if !slices.Equal(names, want) {
		t.Errorf("files %v, want %v", names, want)
	}
	checkTensors(t, mustOpen(t, filepath.Join(dir, IndexFile)), ts)
	ck := mustOpen(t, dir)
	checkTensors(t, ck, ts)
	if ck.Metadata()["format"] != "pt" {
		t.Errorf("metadata %v", ck.Metadata())
	}
	if err := WriteSharded(dir, ts, nil, 0); err == nil {
		t.Error("maxShardBytes 0 accepted")
	}
}

// TestAtomicWrite checks that a failed write leaves no temporary file and
// never touches the previous file.
func TestAtomicWrite(t *testing.T) {
	good := sampleTensors(3)
	other := sampleTensors(4)
	t.Run("target is a directory", func(t *testing.T) {
		dir := t.TempDir()
		target := filepath.Join(dir, "model.safetensors")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		err := Write(target, good, nil)
		if err == nil || !strings.Contains(err.Error(), target) {
			t.Fatalf("error %v, want one naming %s", err, target)
		}
		assertEntries(t, dir, "model.safetensors")
	})
	t.Run("failure before rename keeps the old file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "model.safetensors")
		if err := Write(path, good, nil); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(path)
		injected := errors.New("injected failure")
		hookBeforeRename = func(tmp, final string) error {
			if _, err := os.Stat(tmp); err != nil { // the complete temporary exists
				t.Errorf("temporary %s: %v", tmp, err)
			}
			return injected
		}
		defer func() { hookBeforeRename = nil }()
		if err := Write(path, other, nil); !errors.Is(err, injected) {
			t.Fatalf("error %v, want the injected one", err)
		}
		after, _ := os.ReadFile(path)
		if !bytes.Equal(before, after) {
			t.Error("the previous file changed")
		}
		assertEntries(t, dir, "model.safetensors")
	})
	t.Run("invalid tensor writes nothing", func(t *testing.T) {
		dir := t.TempDir()
		bad := append(slices.Clone(good), Tensor{Name: "short", DType: F32, Shape: []int{4}, Data: make([]byte, 15)})
		err := Write(filepath.Join(dir, "m.safetensors"), bad, nil)
		if err == nil || !strings.Contains(err.Error(), `tensor "short": shape [4] of F32 needs 16 bytes, Data has 15`) {
			t.Errorf("error %v", err)
		}
		dup := append(slices.Clone(good), good[0])
		if err := Write(filepath.Join(dir, "m.safetensors"), dup, nil); err == nil || !strings.Contains(err.Error(), "duplicate") {
			t.Errorf("duplicate: %v", err)
		}
		reserved := []Tensor{{Name: "__metadata__", DType: U8, Shape: []int{0}}}
		if err := Write(filepath.Join(dir, "m.safetensors"), reserved, nil); err == nil || !strings.Contains(err.Error(), "reserved") {
			t.Errorf("reserved name: %v", err)
		}
		assertEntries(t, dir)
	})
	t.Run("sharded failure keeps the old checkpoint", func(t *testing.T) {
		dir := t.TempDir()
		if err := WriteSharded(dir, good, nil, 500); err != nil {
			t.Fatal(err)
		}
		before := readDir(t, dir)
		calls := 0
		hookBeforeRename = func(tmp, final string) error {
			calls++
			return errors.New("injected failure")
		}
		defer func() { hookBeforeRename = nil }()
		if err := WriteSharded(dir, other, nil, 500); err == nil {
			t.Fatal("WriteSharded succeeded")
		}
		if calls != 1 {
			t.Errorf("%d renames attempted, want 1", calls)
		}
		after := readDir(t, dir)
		if len(after) != len(before) {
			t.Fatalf("files %d -> %d", len(before), len(after))
		}
		for name, data := range before {
			if !bytes.Equal(after[name], data) {
				t.Errorf("%s changed", name)
			}
		}
		checkTensors(t, mustOpen(t, dir), good)
	})
}

func assertEntries(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %v, want %v", dir, got, want)
	}
}

func readDir(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for _, e := range entries {
		m[e.Name()], _ = os.ReadFile(filepath.Join(dir, e.Name()))
	}
	return m
}
