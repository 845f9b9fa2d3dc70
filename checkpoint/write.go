package checkpoint

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// Tensor is a tensor to write: Data holds its elements little-endian,
// row-major, exactly numel(Shape)·DType.Size() bytes.
type Tensor struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

// Write writes one safetensors file atomically: to a temporary file in the
// same directory, fsynced, then renamed over path. On any error path is left
// as it was (absent or the previous file) and the temporary file is removed.
//
// Tensors are laid out by element size (largest first) then name, so every
// tensor is aligned to its element size for zero-copy readers; the header is
// padded with spaces to a multiple of 8 bytes. The output depends only on the
// set of tensors, not on their order in the slice.
//
// Hugging Face transformers refuses a file whose metadata exists but lacks
// "format": "pt"; pass that in metadata for checkpoints it should load.
func Write(path string, tensors []Tensor, metadata map[string]string) error {
	if err := validate(tensors); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if err := atomicWrite(path, func(w *bufio.Writer) error { return encodeFile(w, tensors, metadata) }); err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return nil
}

// WriteSharded writes the tensors as dir/model-0000i-of-0000n.safetensors,
// filled in slice order up to maxShardBytes of tensor data each (a larger
// tensor gets a shard of its own), plus dir/model.safetensors.index.json
// (Hugging Face layout: metadata.total_size and weight_map). Each file is
// written atomically; the shards are all written to temporary files before
// any is renamed, and the index is renamed last, so a failure before the
// renames leaves dir unchanged. Shards of an earlier, larger write that the
// new index does not name are left in place. metadata goes into every shard.
func WriteSharded(dir string, tensors []Tensor, metadata map[string]string, maxShardBytes int64) error {
	if maxShardBytes <= 0 {
		return fmt.Errorf("checkpoint %s: maxShardBytes %d: want > 0", dir, maxShardBytes)
	}
	if err := validate(tensors); err != nil {
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("checkpoint %s: %w", dir, err)
	}

	var shards [][]Tensor
	var cur []Tensor
	var curBytes, total int64
	for _, t := range tensors {
		n := int64(len(t.Data))
		if len(cur) > 0 && curBytes+n > maxShardBytes {
			shards = append(shards, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, t)
		curBytes += n
		total += n
	}
	if len(cur) > 0 || len(shards) == 0 {
		shards = append(shards, cur)
	}

	weightMap := map[string]string{}
	var temps, finals []string
	defer func() { // remove temporaries not renamed (on error)
		for _, tmp := range temps {
			os.Remove(tmp)
		}
	}()
	for i, shard := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		final := filepath.Join(dir, name)
		tmp, err := writeTemp(final, func(w *bufio.Writer) error { return encodeFile(w, shard, metadata) })
		if err != nil {
			return fmt.Errorf("checkpoint %s: %w", final, err)
		}
		temps, finals = append(temps, tmp), append(finals, final)
		for _, t := range shard {
			weightMap[t.Name] = name
		}
	}
	index, err := json.MarshalIndent(map[string]any{
		"metadata":   map[string]any{"total_size": total},
		"weight_map": weightMap,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("checkpoint %s: index: %w", dir, err)
	}
	indexPath := filepath.Join(dir, IndexFile)
	tmp, err := writeTemp(indexPath, func(w *bufio.Writer) error {
		_, err := w.Write(append(index, '\n'))
		return err
	})
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", indexPath, err)
	}
	temps, finals = append(temps, tmp), append(finals, indexPath)

	for len(temps) > 0 {
		if err := rename(temps[0], finals[0]); err != nil {
			return fmt.Errorf("checkpoint %s: %w", finals[0], err)
		}
		temps, finals = temps[1:], finals[1:]
	}
	syncDir(dir)
	return nil
}

// validate checks names, dtypes, shapes and byte lengths before anything is written.
func validate(tensors []Tensor) error {
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		switch {
		case t.Name == "":
			return errors.New("tensor with an empty name")
		case t.Name == metadataKey:
			return fmt.Errorf("tensor name %q is reserved", t.Name)
		case seen[t.Name]:
			return fmt.Errorf("tensor %q: duplicate name", t.Name)
		case t.DType.Size() == 0:
			return fmt.Errorf("tensor %q: unknown dtype %q", t.Name, string(t.DType))
		}
		seen[t.Name] = true
		n, err := numel(t.Shape)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if want := n * t.DType.Size(); len(t.Data) != want {
			return fmt.Errorf("tensor %q: shape %v of %s needs %d bytes, Data has %d", t.Name, t.Shape, t.DType, want, len(t.Data))
		}
	}
	return nil
}

// numel is the element count of a shape, checked for negative dims and overflow.
func numel(shape []int) (int, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		if d != 0 && n > math.MaxInt/8/d {
			return 0, fmt.Errorf("shape %v is too large", shape)
		}
		n *= d
	}
	return n, nil
}

// encodeFile writes a whole safetensors file: length, header, data.
func encodeFile(w *bufio.Writer, tensors []Tensor, metadata map[string]string) error {
	order := append([]Tensor(nil), tensors...)
	sort.SliceStable(order, func(a, b int) bool {
		sa, sb := order[a].DType.Size(), order[b].DType.Size()
		return sa > sb || sa == sb && order[a].Name < order[b].Name
	})
	type entry struct {
		DType       DType    `json:"dtype"`
		Shape       []int    `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	header := make(map[string]any, len(order)+1)
	if len(metadata) > 0 {
		header[metadataKey] = metadata
	}
	var off int64
	for _, t := range order {
		shape := append([]int{}, t.Shape...) // [] not null for scalars
		header[t.Name] = entry{t.DType, shape, [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(header); err != nil {
		return fmt.Errorf("header: %w", err)
	}
	hdr := bytes.TrimRight(buf.Bytes(), "\n")
	for len(hdr)%8 != 0 {
		hdr = append(hdr, ' ')
	}
	if len(hdr) > MaxHeaderSize {
		return fmt.Errorf("header of %d bytes exceeds the %d-byte limit", len(hdr), MaxHeaderSize)
	}
	if err := binary.Write(w, binary.LittleEndian, uint64(len(hdr))); err != nil {
		return err
	}
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	for _, t := range order {
		if _, err := w.Write(t.Data); err != nil {
			return err
		}
	}
	return nil
}

// Test hooks for the atomic writer: nil in production.
var (
	hookBeforeRename func(tmp, final string) error
)

// atomicWrite writes path through a temporary file, fsync and rename.
func atomicWrite(path string, write func(*bufio.Writer) error) error {
	tmp, err := writeTemp(path, write)
	if err != nil {
		return err
	}
	if err := rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

// writeTemp writes a fsynced temporary file beside path (".NAME.tmp-*") and
// returns its name; on error it removes it.
func writeTemp(path string, write func(*bufio.Writer) error) (tmp string, err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	if err := write(w); err != nil {
		return "", err
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	if err := f.Chmod(0o644); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// rename moves a finished temporary file into place.
func rename(tmp, final string) error {
	if hookBeforeRename != nil {
		if err := hookBeforeRename(tmp, final); err != nil {
			return err
		}
	}
	return os.Rename(tmp, final)
}

// syncDir fsyncs a directory so a rename survives a crash; best effort
// (not every platform can sync a directory).
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// FromFloat32 encodes float32 data as an F32, F16 or BF16 tensor, rounding to
// nearest even. For FP8 use QuantizeFP8.
func FromFloat32(name string, shape []int, data []float32, dt DType) (Tensor, error) {
	n, err := numel(shape)
	if err != nil {
		return Tensor{}, fmt.Errorf("tensor %q: %w", name, err)
	}
	if n != len(data) {
		return Tensor{}, fmt.Errorf("tensor %q: shape %v has %d elements, data has %d", name, shape, n, len(data))
	}
	t := Tensor{Name: name, DType: dt, Shape: slices.Clone(shape)}
	le := binary.LittleEndian
	switch dt {
	case F32:
		t.Data = make([]byte, 4*n)
		for i, v := range data {
			le.PutUint32(t.Data[4*i:], math.Float32bits(v))
		}
	case BF16:
		t.Data = make([]byte, 2*n)
		for i, v := range data {
			le.PutUint16(t.Data[2*i:], Float32ToBF16(v))
		}
	case F16:
		t.Data = make([]byte, 2*n)
		for i, v := range data {
			le.PutUint16(t.Data[2*i:], Float32ToF16(v))
		}
	default:
		return Tensor{}, fmt.Errorf("tensor %q: FromFloat32 encodes F32, F16 or BF16, not %q (use QuantizeFP8 for F8_E4M3)", name, string(dt))
	}
	return t, nil
}

// QuantizeFP8 quantises a 2-D weight [out, in] to F8_E4M3 with one float32
// scale per block of block[0]×block[1] (edge blocks partial), DeepSeek's
// format (dsa.md §7.2): scale = max(amax, 1e-4)/448 over the block, and
// W8 = fp8(W/scale), rounded to nearest even and saturated at ±448. The scale
// tensor is named ScaleName(name) with shape [ceil(out/br), ceil(in/bc)].
// Non-finite values are an error.
func QuantizeFP8(name string, shape []int, data []float32, block [2]int) (weight, scaleInv Tensor, err error) {
	fail := func(format string, args ...any) (Tensor, Tensor, error) {
		return Tensor{}, Tensor{}, fmt.Errorf("tensor %q: QuantizeFP8: "+format, append([]any{name}, args...)...)
	}
	if len(shape) != 2 {
		return fail("shape %v: want 2-D", shape)
	}
	if block[0] <= 0 || block[1] <= 0 {
		return fail("block size %v: want two positive sizes", block)
	}
	n, err := numel(shape)
	if err != nil {
		return fail("%v", err)
	}
	if n != len(data) {
		return fail("shape %v has %d elements, data has %d", shape, n, len(data))
	}
	rows, cols, br, bc := shape[0], shape[1], block[0], block[1]
	sr, sc := (rows+br-1)/br, (cols+bc-1)/bc
	scales := make([]float32, sr*sc)
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fail("non-finite value %v at [%d, %d]", v, i/cols, i%cols)
		}
		k := (i/cols/br)*sc + (i%cols)/bc
		scales[k] = max(scales[k], float32(math.Abs(float64(v))))
	}
	for k, amax := range scales {
		scales[k] = max(amax, 1e-4) / 448
	}
	q := make([]byte, n)
	for i, v := range data {
		q[i] = Float32ToFP8E4M3(v / scales[(i/cols/br)*sc+(i%cols)/bc])
	}
	weight = Tensor{Name: name, DType: F8E4M3, Shape: []int{rows, cols}, Data: q}
	scaleInv, err = FromFloat32(ScaleName(name), []int{sr, sc}, scales, F32)
	if err != nil {
		return fail("%v", err)
	}
	return weight, scaleInv, nil
}
