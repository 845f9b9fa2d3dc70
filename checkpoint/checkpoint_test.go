package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

const (
	tinyDSA    = "../testdata/tiny-dsa"
	tinyDSAFP8 = "../testdata/tiny-dsa-fp8"
)

func mustOpen(t testing.TB, path string) *Checkpoint {
	t.Helper()
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestOpenFixtures(t *testing.T) {
	for _, c := range []struct {
		path    string
		tensors int
		block   [2]int
	}{
		{tinyDSA, 106, [2]int{128, 128}}, // config.json without quantization_config
		{tinyDSA + "/model.safetensors", 106, [2]int{128, 128}},
		{tinyDSAFP8, 184, [2]int{32, 32}}, // 106 + 78 scales
		{"../testdata/tiny-dsa-yarn", 106, [2]int{128, 128}},
		{tinyDSA + "/expected.safetensors", 11, [2]int{128, 128}},
	} {
		t.Run(c.path, func(t *testing.T) {
			ck := mustOpen(t, c.path)
			if n := len(ck.Names()); n != c.tensors {
				t.Errorf("%d tensors, want %d", n, c.tensors)
			}
			if ck.BlockSize() != c.block {
				t.Errorf("block size %v, want %v", ck.BlockSize(), c.block)
			}
		})
	}
}

// TestReadFixture checks offsets against the header (as Python's json reads
// it) and values against a plain little-endian decode.
func TestReadFixture(t *testing.T) {
	ck := mustOpen(t, tinyDSA)
	names := ck.Names()
	if !slices.IsSorted(names) {
		t.Error("Names not sorted")
	}
	info, ok := ck.Info("lm_head.weight")
	const hdr = 11592 // header length of tiny-dsa/model.safetensors
	want := Info{Name: "lm_head.weight", DType: F32, Shape: []int{320, 64}, File: filepath.Join(tinyDSA, "model.safetensors"),
		Begin: 8 + hdr, End: 8 + hdr + 81920}
	if !ok || info.Name != want.Name || info.DType != want.DType || !slices.Equal(info.Shape, want.Shape) ||
		info.File != want.File || info.Begin != want.Begin || info.End != want.End {
		t.Errorf("Info = %+v, want %+v", info, want)
	}
	if md := ck.Metadata(); md["format"] != "pt" {
		t.Errorf("Metadata = %v", md)
	}
	file, err := os.ReadFile(want.File)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		data, shape, err := ck.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		info, _ := ck.Info(name)
		if !slices.Equal(shape, info.Shape) || len(data) != info.Numel() {
			t.Fatalf("%s: shape %v, %d values; info %v", name, shape, len(data), info.Shape)
		}
		for i, v := range data {
			if math.Float32bits(v) != binary.LittleEndian.Uint32(file[info.Begin+4*int64(i):]) {
				t.Fatalf("%s[%d] = %v differs from the file", name, i, v)
			}
		}
		raw, _, err := ck.Raw(name)
		if err != nil || !bytes.Equal(raw, file[info.Begin:info.End]) {
			t.Fatalf("%s: Raw differs from the file (%v)", name, err)
		}
	}

	exp := mustOpen(t, tinyDSA+"/expected.safetensors")
	ids, shape, err := exp.Int64("input_ids")
	if err != nil || !slices.Equal(shape, []int{64}) {
		t.Fatalf("input_ids: %v %v", shape, err)
	}
	for _, id := range ids {
		if id < 0 || id >= 320 {
			t.Fatalf("input id %d out of the vocabulary", id)
		}
	}
	topk, shape, err := exp.Int64("topk_1")
	if err != nil || !slices.Equal(shape, []int{64, 16}) || len(topk) != 64*16 {
		t.Fatalf("topk_1: %v %v", shape, err)
	}
}

// TestFP8Fixture checks the FP8 checkpoint three ways: Float32 equals a plain
// reference dequantisation exactly; it is within quantisation error of the
// float32 weights it came from; and QuantizeFP8 of those weights reproduces
// the stored bytes and scales exactly.
func TestFP8Fixture(t *testing.T) {
	q := mustOpen(t, tinyDSAFP8)
	ref := mustOpen(t, tinyDSA)
	fp8Count, worst := 0, 0.0
	for _, name := range q.Names() {
		if strings.HasSuffix(name, "_scale_inv") {
			continue
		}
		info, _ := q.Info(name)
		got, shape, err := q.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		orig, _, err := ref.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		if info.DType != F8E4M3 {
			if !equalFloats(got, orig) {
				t.Errorf("%s (%s) differs from tiny-dsa", name, info.DType)
			}
			continue
		}
		fp8Count++
		// Reference: W[i,j] = fp8(W8[i,j]) * scale[i/32, j/32].
		w8, _, _ := q.Raw(name)
		sraw, sinfo, err := q.Raw(ScaleName(name))
		if err != nil {
			t.Fatal(err)
		}
		rows, cols, sc := shape[0], shape[1], sinfo.Shape[1]
		for i := range rows {
			for j := range cols {
				s := math.Float32frombits(binary.LittleEndian.Uint32(sraw[4*((i/32)*sc+j/32):]))
				want := float32(fp8Ref(uint32(w8[i*cols+j]))) * s
				if got[i*cols+j] != want {
					t.Fatalf("%s[%d,%d] = %v, want %v", name, i, j, got[i*cols+j], want)
				}
			}
		}
		rel := relErr(got, orig)
		worst = max(worst, rel)
		if rel > 0.05 {
			t.Errorf("%s: relative error %.4f vs float32 weights, want < 0.05", name, rel)
		}
		w, s, err := QuantizeFP8(name, shape, orig, q.BlockSize())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.Data, w8) || !bytes.Equal(s.Data, sraw) || !slices.Equal(s.Shape, sinfo.Shape) {
			t.Errorf("%s: QuantizeFP8 of the float32 weights differs from the fixture", name)
		}
	}
	if fp8Count != 78 {
		t.Errorf("%d FP8 weights, want 78", fp8Count)
	}
	t.Logf("%d FP8 weights, worst relative error vs float32 %.4f", fp8Count, worst)
}

// TestOpenErrors covers bad checkpoints: each must be an error naming the
// file (and the tensor where there is one), never a panic.
func TestOpenErrors(t *testing.T) {
	f32 := func(n int) string {
		return `"dtype":"F32","shape":[` + strconv.Itoa(n) + `],"data_offsets":[0,` + strconv.Itoa(4*n) + `]`
	}
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty file", nil, "too short"},
		{"short file", []byte{1, 2, 3}, "too short"},
		{"header past end", withLen(1000, `{}`), "exceeds the 2 bytes"},
		{"absurd header", withLen(1<<40, `{}`), "exceeds the 104857600-byte limit"},
		{"zero header", withLen(0, ``), "header JSON: empty"},
		{"bad JSON", file(`{"a":`, nil), "header JSON"},
		{"top-level array", file(`[1,2]`, nil), "want an object"},
		{"trailing data", file(`{} {}`, nil), "data after the header"},
		{"not UTF-8", file("{\"\xff\":1}", nil), "UTF-8"},
		{"non-object entry", file(`{"w":5}`, nil), `tensor "w": header entry is a number`},
		{"array entry", file(`{"w":[1]}`, nil), `tensor "w": header entry is an array`},
		{"no dtype", file(`{"w":{"shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), `tensor "w": header entry has no dtype`},
		{"no shape", file(`{"w":{"dtype":"F32","data_offsets":[0,4]}}`, make([]byte, 4)), "no shape"},
		{"no offsets", file(`{"w":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), "no data_offsets"},
		{"unknown dtype", file(`{"w":{"dtype":"Q4_K","shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)), `unknown dtype "Q4_K"`},
		{"dtype not string", file(`{"w":{"dtype":7,"shape":[1],"data_offsets":[0,1]}}`, make([]byte, 1)), `tensor "w"`},
		{"negative dim", file(`{"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,4]}}`, make([]byte, 4)), "negative dimension -1"},
		{"fractional dim", file(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, make([]byte, 4)), `tensor "w"`},
		{"overflowing shape", file(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`, make([]byte, 4)), "overflows"},
		{"size mismatch", file(`{"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}}`, make([]byte, 4)), "needs 6 bytes"},
		{"end past data", file(`{"w":{`+f32(2)+`}}`, make([]byte, 4)), "out of range: the data section is 4 bytes"},
		{"begin after end", file(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, make([]byte, 4)), "out of range"},
		{"negative offset", file(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, make([]byte, 4)), "out of range"},
		{"three offsets", file(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 8)), "want [begin, end]"},
		{"overlap", file(`{"a":{`+f32(2)+`},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), `tensor "b": bytes [4, 8) overlap tensor "a"`},
		{"duplicate name", file(`{"a":{`+f32(1)+`},"a":{`+f32(1)+`}}`, make([]byte, 4)), `duplicate key "a"`},
		{"metadata not strings", file(`{"__metadata__":{"n":1}}`, nil), "__metadata__"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			ck, err := Open(path)
			if err == nil {
				ck.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want the path and %q", err, c.want)
			}
		})
	}
}

// TestOpenGood covers the valid corners the corruption table is next to.
func TestOpenGood(t *testing.T) {
	for _, c := range []struct {
		name string
		file []byte
	}{
		{"no tensors", file(`{}`, nil)},
		{"padded header", file(`{"w":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}       `, []byte{7})},
		{"gap and trailing bytes", file(`{"w":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}`, []byte{0, 0, 7, 0})},
		{"empty tensors share offsets", file(`{"a":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"b":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{7})},
		{"null metadata", file(`{"__metadata__":null}`, nil)},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ok.safetensors")
			if err := os.WriteFile(path, c.file, 0o644); err != nil {
				t.Fatal(err)
			}
			ck := mustOpen(t, path)
			if ck.Has("w") {
				if v, _, err := ck.Int64("w"); err != nil || v[0] != 7 {
					t.Errorf("w = %v, %v", v, err)
				}
			}
		})
	}
}

// TestOpenDirErrors covers directory and index problems.
func TestOpenDirErrors(t *testing.T) {
	one := file(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, []byte{1})
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"empty dir", nil, "no *.safetensors files"},
		{"missing shard", map[string]string{IndexFile: `{"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}`,
			"model-00001-of-00002.safetensors": string(one)}, "shard model-00002-of-00002.safetensors"},
		{"tensor not in shard", map[string]string{IndexFile: `{"weight_map":{"a":"s.safetensors","zz":"s.safetensors"}}`, "s.safetensors": string(one)},
			`lists tensor "zz" in s.safetensors, which does not hold it`},
		{"escaping shard path", map[string]string{IndexFile: `{"weight_map":{"a":"../s.safetensors"}}`}, "leaves the directory"},
		{"bad index", map[string]string{IndexFile: `{"weight_map":[]}`}, IndexFile},
		{"empty index", map[string]string{IndexFile: `{}`}, "no weight_map"},
		{"same tensor twice", map[string]string{"x.safetensors": string(one), "y.safetensors": string(one)}, `tensor "a" is in both`},
		{"bad block size", map[string]string{"model.safetensors": string(one), "config.json": `{"quantization_config":{"weight_block_size":[0,128]}}`}, "weight_block_size [0 128]"},
		{"bad config", map[string]string{"model.safetensors": string(one), "config.json": `{`}, "config.json"},
		{"bad shard", map[string]string{IndexFile: `{"weight_map":{"a":"s.safetensors"}}`, "s.safetensors": "garbage!!"}, "s.safetensors: header length"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range c.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ck, err := Open(dir)
			if err == nil {
				ck.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want the directory and %q", err, c.want)
			}
		})
	}
	if _, err := Open(filepath.Join(t.TempDir(), "nope")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing path: %v", err)
	}
}

// TestReadErrors covers bad requests on a good checkpoint.
func TestReadErrors(t *testing.T) {
	q := mustOpen(t, tinyDSAFP8)
	exp := mustOpen(t, tinyDSA+"/expected.safetensors")
	const fp8 = "model.layers.0.mlp.down_proj.weight" // [64, 128], scale [2, 4]
	_, _, err := q.Float32("model.layers.9.nope")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `"model.layers.9.nope"`) || !strings.Contains(err.Error(), tinyDSAFP8) {
		t.Errorf("missing tensor: %v", err)
	}
	if _, _, err := q.Int64("lm_head.weight"); err == nil || !strings.Contains(err.Error(), "not an integer type") {
		t.Errorf("Int64 of F32: %v", err)
	}
	if _, _, err := exp.Float32("input_ids"); err == nil || !strings.Contains(err.Error(), "not a float type") {
		t.Errorf("Float32 of I64: %v", err)
	}
	q.SetBlockSize([2]int{64, 64})
	if _, _, err := q.Float32(fp8); err == nil || !strings.Contains(err.Error(), `scale "model.layers.0.mlp.down_proj.weight_scale_inv" has shape [2 4], want [1 2]`) {
		t.Errorf("wrong block size: %v", err)
	}
	q.SetBlockSize([2]int{32, 32})
	if _, _, err := q.Float32(fp8); err != nil {
		t.Error(err)
	}
	c, err := Open(tinyDSAFP8)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, _, err := c.Raw(fp8); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Raw after Close: %v", err)
	}
}

// TestIntegerDTypes widens every integer dtype.
func TestIntegerDTypes(t *testing.T) {
	var tensors []Tensor
	for _, c := range []struct {
		dt   DType
		data []byte
	}{
		{BOOL, []byte{0, 1}}, {U8, []byte{0, 255}}, {I8, []byte{0x80, 0x7f}},
		{U16, []byte{0xff, 0xff, 1, 0}}, {I16, []byte{0, 0x80, 0xff, 0x7f}},
		{U32, []byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0}}, {I32, []byte{0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0x7f}},
		{I64, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 1<<63), 1<<63-1)},
		{U64, binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, 5), 1<<63-1)},
	} {
		tensors = append(tensors, Tensor{Name: string(c.dt), DType: c.dt, Shape: []int{2}, Data: c.data})
	}
	tensors = append(tensors, Tensor{Name: "big", DType: U64, Shape: []int{1}, Data: binary.LittleEndian.AppendUint64(nil, 1<<63)})
	path := filepath.Join(t.TempDir(), "ints.safetensors")
	if err := Write(path, tensors, nil); err != nil {
		t.Fatal(err)
	}
	ck := mustOpen(t, path)
	want := map[DType][2]int64{
		BOOL: {0, 1}, U8: {0, 255}, I8: {-128, 127}, U16: {65535, 1}, I16: {-32768, 32767},
		U32: {1<<32 - 1, 1}, I32: {-1 << 31, 1<<31 - 1}, I64: {-1 << 63, 1<<63 - 1}, U64: {5, 1<<63 - 1},
	}
	for dt, w := range want {
		got, _, err := ck.Int64(string(dt))
		if err != nil || len(got) != 2 || got[0] != w[0] || got[1] != w[1] {
			t.Errorf("%s: got %v, %v; want %v", dt, got, err, w)
		}
	}
	if _, _, err := ck.Int64("big"); err == nil || !strings.Contains(err.Error(), "exceeds int64") {
		t.Errorf("U64 overflow: %v", err)
	}
}

// withLen is a file whose length prefix says n, followed by header.
func withLen(n uint64, header string) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, n), header...)
}

// file is a safetensors file with the given header and data.
func file(header string, data []byte) []byte {
	return append(withLen(uint64(len(header)), header), data...)
}

// equalFloats compares bit patterns, so NaNs compare equal to themselves.
func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// relErr is ‖a−b‖/‖b‖.
func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(num / den)
}

// TestTruncatedAfterOpen shrinks a mapped file under an open checkpoint:
// reading the lost pages must be an error, not a crash (SIGBUS).
func TestTruncatedAfterOpen(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("relies on Linux mmap semantics")
	}
	data := make([]float32, 1<<16) // 256 KiB: many pages
	w, err := FromFloat32("w", []int{len(data)}, data, F32)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "t.safetensors")
	if err := Write(path, []Tensor{w}, nil); err != nil {
		t.Fatal(err)
	}
	ck := mustOpen(t, path)
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	_, _, err = ck.Float32("w")
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "fault") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v, want a fault naming %s", err, path)
	}
}

// TestConcurrentReads reads every tensor from several goroutines at once
// (run with -race).
func TestConcurrentReads(t *testing.T) {
	ck := mustOpen(t, tinyDSAFP8)
	want := map[string][]float32{}
	for _, name := range ck.Names() {
		want[name], _, _ = ck.Float32(name)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for _, name := range ck.Names() {
				got, _, err := ck.Float32(name)
				if err != nil || !equalFloats(got, want[name]) {
					t.Errorf("%s: concurrent read differs (%v)", name, err)
				}
				ck.SetBlockSize(ck.BlockSize())
			}
		})
	}
	wg.Wait()
}

// TestReadPyTorch reads testdata/pytorch.safetensors, written by PyTorch 2.11
// with safetensors' save_file: x.f32 = randn(1000)·100 and its conversions by
// torch (.to(bfloat16), .to(float16), .clamp(±448).to(float8_e4m3fn),
// .to(float8_e5m2), .double()), plus small integer tensors, a scalar and an
// empty tensor. torch rounds to nearest even, so our encoders must agree.
func TestReadPyTorch(t *testing.T) {
	ck := mustOpen(t, "testdata/pytorch.safetensors")
	x, _, err := ck.Float32("x.f32")
	if err != nil {
		t.Fatal(err)
	}
	round := map[string]func(float32) float32{
		"x.bf16": func(f float32) float32 { return BF16ToFloat32(Float32ToBF16(f)) },
		"x.f16":  func(f float32) float32 { return F16ToFloat32(Float32ToF16(f)) },
		"x.e4m3": func(f float32) float32 { return FP8E4M3ToFloat32(Float32ToFP8E4M3(f)) },
		"x.f64":  func(f float32) float32 { return f },
	}
	for name, r := range round {
		got, _, err := ck.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		for i := range x {
			if got[i] != r(x[i]) {
				t.Fatalf("%s[%d] = %v; ours of %v is %v", name, i, got[i], x[i], r(x[i]))
			}
		}
	}
	e5m2, _, err := ck.Float32("x.e5m2")
	if err != nil {
		t.Fatal(err)
	}
	for i := range x { // 2 mantissa bits: relative error at most 2^-3
		if d := math.Abs(float64(e5m2[i] - x[i])); d > math.Abs(float64(x[i]))/8 && d > 0x1p-17 {
			t.Fatalf("x.e5m2[%d] = %v, x = %v", i, e5m2[i], x[i])
		}
	}
	for name, want := range map[string][]int64{
		"i64": {-5, -4, -3, -2, -1, 0, 1, 2, 3, 4}, "i32": {-5, -4, -3, -2, -1, 0, 1, 2, 3, 4},
		"i16": {-5, -4, -3, -2, -1, 0, 1, 2, 3, 4}, "i8": {-5, -4, -3, -2, -1, 0, 1, 2, 3, 4},
		"u8": {250, 251, 252, 253, 254, 255}, "b": {1, 0, 1},
	} {
		got, _, err := ck.Int64(name)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s = %v (%v), want %v", name, got, err, want)
		}
	}
	if v, shape, err := ck.Float32("scalar"); err != nil || len(shape) != 0 || len(v) != 1 || v[0] != 3.5 {
		t.Errorf("scalar = %v %v %v", v, shape, err)
	}
	if v, shape, err := ck.Float32("empty"); err != nil || !slices.Equal(shape, []int{0, 3}) || len(v) != 0 {
		t.Errorf("empty = %v %v %v", v, shape, err)
	}
}
