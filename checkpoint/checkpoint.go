package checkpoint

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dsv32/dsv32/internal/mmap"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// IndexFile is the name of a sharded checkpoint's index.
const IndexFile = "model.safetensors.index.json"

// DefaultBlockSize is the FP8 block size when config.json does not give one.
var DefaultBlockSize = [2]int{128, 128}

// ErrNotFound is wrapped by errors for a tensor the checkpoint does not hold.
var ErrNotFound = errors.New("not found")

// Info describes one stored tensor. Begin and End are absolute byte offsets in
// File (header included), so File[Begin:End] is the tensor's data.
type Info struct {
	Name  string
	DType DType
	Shape []int // reference (row-major, PyTorch) order
	File  string
	Begin int64
	End   int64
}

// Numel is the number of elements (1 for a scalar).
func (i Info) Numel() int {
	n := 1
	for _, d := range i.Shape {
		n *= d
	}
	return n
}

// tensor is an Info plus its bytes inside the owning file's mapping.
type tensor struct {
	Info
	data []byte
}

// mapping is one memory-mapped file.
type mapping struct {
	path    string
	data    []byte
	release func() error
}

// Checkpoint is an open set of safetensors files. Its reading methods are safe
// for concurrent use; Close must not run concurrently with them.
type Checkpoint struct {
	path     string // as given to Open, for error messages
	files    []*mapping
	tensors  map[string]tensor
	names    []string // sorted
	metadata map[string]string
	block    atomic.Pointer[[2]int]
	closed   atomic.Bool
}

// Open opens a checkpoint:
//   - a file: that one safetensors file, or, for a *.index.json file, the
//     sharded checkpoint it indexes;
//   - a directory with model.safetensors.index.json: the shards its weight_map
//     names (every listed tensor must be in the shard the index says);
//   - otherwise a directory with model.safetensors: that file alone (so
//     fixture folders that also hold expected.safetensors open as the model);
//   - otherwise every *.safetensors file in the directory.
//
// Files are memory-mapped and only headers are parsed; tensors are decoded on
// request. The FP8 block size comes from quantization_config.weight_block_size
// in config.json next to the files, DefaultBlockSize if there is none.
// A tensor name held by two files is an error.
func Open(path string) (*Checkpoint, error) {
	c := &Checkpoint{path: path, tensors: map[string]tensor{}, metadata: map[string]string{}}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	dir := path
	var files []string
	var weightMap map[string]string
	if st.IsDir() {
		files, weightMap, err = listDir(path)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %s: %w", path, err)
		}
	} else {
		dir = filepath.Dir(path)
		files = []string{path}
		if strings.HasSuffix(path, ".index.json") {
			files, weightMap, err = readIndex(path)
			if err != nil {
				return nil, fmt.Errorf("checkpoint %s: %w", path, err)
			}
		}
	}
	block, err := readBlockSize(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	c.block.Store(&block)

	for _, f := range files {
		if err := c.addFile(f); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(weightMap)) {
		file := weightMap[name]
		t, ok := c.tensors[name]
		if !ok {
			c.Close()
			return nil, fmt.Errorf("checkpoint %s: the index lists tensor %q in %s, which does not hold it", path, name, filepath.Base(file))
		}
		if t.File != file {
			c.Close()
			return nil, fmt.Errorf("checkpoint %s: the index lists tensor %q in %s, but it is in %s", path, name, filepath.Base(file), filepath.Base(t.File))
		}
	}
	c.sortNames()
	return c, nil
}

// sortNames fills c.names once all files are added.
func (c *Checkpoint) sortNames() {
	c.names = make([]string, 0, len(c.tensors))
	for name := range c.tensors {
		c.names = append(c.names, name)
	}
	sort.Strings(c.names)
}

// listDir picks the files of a checkpoint directory (see Open). weightMap is
// the index's tensor → file path map, nil without an index.
func listDir(dir string) (files []string, weightMap map[string]string, err error) {
	index := filepath.Join(dir, IndexFile)
	if _, err := os.Stat(index); err == nil {
		return readIndex(index)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		return []string{single}, nil, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range entries { // sorted by name
		if strings.HasSuffix(e.Name(), ".safetensors") && !e.IsDir() {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	if len(files) == 0 {
		return nil, nil, errors.New("no *.safetensors files and no " + IndexFile)
	}
	return files, nil, nil
}

// readIndex reads a Hugging Face index (weight_map: tensor → shard file,
// relative to the index's directory) and checks that every shard exists.
// The returned weightMap holds the shards' full paths.
func readIndex(index string) (files []string, weightMap map[string]string, err error) {
	dir, base := filepath.Dir(index), filepath.Base(index)
	buf, err := os.ReadFile(index)
	if err != nil {
		return nil, nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(buf, &idx); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", base, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, nil, fmt.Errorf("%s: no weight_map", base)
	}
	weightMap = make(map[string]string, len(idx.WeightMap))
	seen := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(idx.WeightMap)) {
		f := idx.WeightMap[name]
		if !filepath.IsLocal(f) {
			return nil, nil, fmt.Errorf("%s: tensor %q: shard path %q leaves the directory", base, name, f)
		}
		weightMap[name] = filepath.Join(dir, f)
		if !seen[f] {
			seen[f] = true
			files = append(files, filepath.Join(dir, f))
		}
	}
	sort.Strings(files)
	for _, f := range files {
		if _, err := os.Stat(f); err != nil {
			return nil, nil, fmt.Errorf("%s: shard %s: %w", base, filepath.Base(f), err)
		}
	}
	return files, weightMap, nil
}

// readBlockSize reads quantization_config.weight_block_size from dir/config.json.
// A missing file or field gives DefaultBlockSize; a malformed one is an error.
func readBlockSize(dir string) ([2]int, error) {
	buf, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultBlockSize, nil
	}
	if err != nil {
		return [2]int{}, err
	}
	var cfg struct {
		Quant *struct {
			BlockSize []int `json:"weight_block_size"`
		} `json:"quantization_config"`
	}
	if err := json.Unmarshal(buf, &cfg); err != nil {
		return [2]int{}, fmt.Errorf("config.json: %w", err)
	}
	if cfg.Quant == nil || cfg.Quant.BlockSize == nil {
		return DefaultBlockSize, nil
	}
	b := cfg.Quant.BlockSize
	if len(b) != 2 || b[0] <= 0 || b[1] <= 0 {
		return [2]int{}, fmt.Errorf("config.json: quantization_config.weight_block_size %v: want two positive sizes", b)
	}
	return [2]int{b[0], b[1]}, nil
}

// addFile maps one file and adds its tensors and metadata (first file wins).
func (c *Checkpoint) addFile(path string) error {
	data, release, err := mmap.Map(path)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return c.addMapped(&mapping{path: path, data: data, release: release})
}

// addMapped parses a mapped file's header and adds its tensors; the
// checkpoint owns m from here on, even on error.
func (c *Checkpoint) addMapped(m *mapping) error {
	c.files = append(c.files, m)
	path, data := m.path, m.data
	infos, meta, err := parseHeader(data)
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", path, err)
	}
	for _, info := range infos {
		if prev, ok := c.tensors[info.Name]; ok {
			return fmt.Errorf("checkpoint %s: tensor %q is in both %s and %s", c.path, info.Name, prev.File, path)
		}
		info.File = path
		c.tensors[info.Name] = tensor{Info: info, data: data[info.Begin:info.End:info.End]}
	}
	for k, v := range meta {
		if _, ok := c.metadata[k]; !ok {
			c.metadata[k] = v
		}
	}
	return nil
}

// Close unmaps the files. Slices returned by Raw become invalid; later calls
// return errors. Close is idempotent.
func (c *Checkpoint) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, m := range c.files {
		if err := m.release(); err != nil {
			errs = append(errs, fmt.Errorf("checkpoint %s: unmap: %w", m.path, err))
		}
	}
	c.files = nil
	return errors.Join(errs...)
}

// Path is the path given to Open.
func (c *Checkpoint) Path() string { return c.path }

// Names lists every tensor, *_scale_inv included, sorted.
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Info describes a tensor without reading it.
func (c *Checkpoint) Info(name string) (Info, bool) {
	t, ok := c.tensors[name]
	if !ok {
		return Info{}, false
	}
	info := t.Info
	info.Shape = slices.Clone(info.Shape)
	return info, true
}

// Has reports whether the checkpoint holds the tensor.
func (c *Checkpoint) Has(name string) bool {
	_, ok := c.tensors[name]
	return ok
}

// BlockSize is the FP8 block size [rows, cols] used to dequantise.
func (c *Checkpoint) BlockSize() [2]int { return *c.block.Load() }

// SetBlockSize overrides the FP8 block size from config.json.
func (c *Checkpoint) SetBlockSize(b [2]int) { c.block.Store(&b) }

// Metadata is the __metadata__ of the files, merged (the first file in
// sorted order wins a conflicting key). The map is a copy.
func (c *Checkpoint) Metadata() map[string]string { return maps.Clone(c.metadata) }

// ScaleName is the name of the FP8 scale tensor of a weight:
// "X.weight" → "X.weight_scale_inv".
func ScaleName(weight string) string {
	return strings.TrimSuffix(weight, ".weight") + ".weight_scale_inv"
}

// lookup finds a tensor, or returns an error naming it and the checkpoint.
func (c *Checkpoint) lookup(name string) (tensor, error) {
	if c.closed.Load() {
		return tensor{}, fmt.Errorf("checkpoint %s: tensor %q: checkpoint is closed", c.path, name)
	}
	t, ok := c.tensors[name]
	if !ok {
		return tensor{}, fmt.Errorf("checkpoint %s: tensor %q: %w", c.path, name, ErrNotFound)
	}
	return t, nil
}

// Raw returns the tensor's bytes as stored (little-endian), a read-only slice
// of the file mapping: it is valid until Close, and writing to it faults.
// Copy it to keep it longer.
func (c *Checkpoint) Raw(name string) ([]byte, Info, error) {
	t, err := c.lookup(name)
	if err != nil {
		return nil, Info{}, err
	}
	info, _ := c.Info(name)
	return t.data, info, nil
}

// Float32 decodes a float tensor (F32, F16, BF16, F8_E4M3, F8_E5M2, F8_E8M0,
// F64) into a new slice. An F8_E4M3 tensor "X.weight" with a sibling
// "X.weight_scale_inv" is dequantised with the checkpoint's block size
// [br, bc]: W[i,j] = fp8(W8[i,j]) · scale[i/br, j/bc]. The weight must then be
// 2-D and the scale [ceil(out/br), ceil(in/bc)]. An F8 tensor without a
// sibling scale decodes to its plain FP8 values.
func (c *Checkpoint) Float32(name string) ([]float32, []int, error) {
	t, err := c.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	if !t.DType.IsFloat() {
		return nil, nil, fmt.Errorf("checkpoint %s: tensor %q: dtype %s is not a float type (use Int64)", c.path, name, t.DType)
	}
	shape := slices.Clone(t.Shape)
	out := make([]float32, t.Numel())
	if t.DType == F8E4M3 && c.Has(ScaleName(name)) && ScaleName(name) != name {
		scale, scaleShape, err := c.Float32(ScaleName(name))
		if err != nil {
			return nil, nil, err
		}
		if err := dequantize(out, t.data, shape, scale, ScaleName(name), scaleShape, c.BlockSize()); err != nil {
			return nil, nil, fmt.Errorf("checkpoint %s: tensor %q: %w", c.path, name, err)
		}
		return out, shape, nil
	}
	if err := decodeFloat(out, t.data, t.DType); err != nil {
		return nil, nil, fmt.Errorf("checkpoint %s: tensor %q: reading %s: %w", c.path, name, t.File, err)
	}
	return out, shape, nil
}

// dequantize decodes the FP8 weight w8 [out, in] into w, multiplying each
// element by its block's scale in the same pass.
func dequantize(w []float32, w8 []byte, shape []int, scale []float32, scaleName string, scaleShape []int, block [2]int) error {
	if len(shape) != 2 {
		return fmt.Errorf("FP8 block scales need a 2-D weight, have shape %v", shape)
	}
	br, bc := block[0], block[1]
	if br <= 0 || bc <= 0 {
		return fmt.Errorf("FP8 block size %v: want two positive sizes", block)
	}
	rows, cols := shape[0], shape[1]
	sr, sc := (rows+br-1)/br, (cols+bc-1)/bc
	if len(scaleShape) != 2 || scaleShape[0] != sr || scaleShape[1] != sc {
		return fmt.Errorf("scale %q has shape %v, want [%d %d] for weight shape %v and block size %v",
			scaleName, scaleShape, sr, sc, shape, block)
	}
	err := parallel(rows, max(1, (1<<16)/max(1, cols)), func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row, row8 := w[i*cols:(i+1)*cols], w8[i*cols:(i+1)*cols]
			srow := scale[(i/br)*sc : (i/br+1)*sc]
			for j0, s := range srow {
				lo, hi := j0*bc, min((j0+1)*bc, cols)
				blk, blk8 := row[lo:hi], row8[lo:hi]
				for j, b := range blk8 {
					blk[j] = fp8e4m3Table[b] * s
				}
			}
		}
	})
	if err != nil {
		return fmt.Errorf("reading the FP8 weight: %w", err)
	}
	return nil
}

// Int64 decodes an integer or BOOL tensor, widened to int64. U64 values past
// math.MaxInt64 are an error.
func (c *Checkpoint) Int64(name string) ([]int64, []int, error) {
	t, err := c.lookup(name)
	if err != nil {
		return nil, nil, err
	}
	if !t.DType.IsInt() {
		return nil, nil, fmt.Errorf("checkpoint %s: tensor %q: dtype %s is not an integer type (use Float32)", c.path, name, t.DType)
	}
	out := make([]int64, t.Numel())
	var overflow bool
	if err := parallel(1, 1, func(int, int) { overflow = decodeInt(out, t.data, t.DType) }); err != nil {
		return nil, nil, fmt.Errorf("checkpoint %s: tensor %q: reading %s: %w", c.path, name, t.File, err)
	}
	if overflow {
		return nil, nil, fmt.Errorf("checkpoint %s: tensor %q: U64 value exceeds int64", c.path, name)
	}
	return out, slices.Clone(t.Shape), nil
}

// nativeLittleEndian says whether the host's byte order matches the format's,
// so F32 data can be copied as is.
var nativeLittleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// decodeFloat decodes len(dst) elements of src, in parallel for large tensors.
func decodeFloat(dst []float32, src []byte, dt DType) error {
	const grain = 1 << 16
	le := binary.LittleEndian
	switch dt {
	case F32:
		if nativeLittleEndian {
			return parallel(len(dst), grain, func(lo, hi int) {
				copy(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(dst[lo:hi]))), 4*(hi-lo)), src[4*lo:4*hi])
			})
		}
		return parallel(len(dst), grain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = math.Float32frombits(le.Uint32(src[4*i:]))
			}
		})
	case BF16:
		return parallel(len(dst), grain, func(lo, hi int) {
			s := src[2*lo : 2*hi]
			d := dst[lo:hi]
			for i := range d {
				d[i] = math.Float32frombits(uint32(s[2*i])<<16 | uint32(s[2*i+1])<<24)
			}
		})
	case F16:
		tab := f16Table()
		return parallel(len(dst), grain, func(lo, hi int) {
			s := src[2*lo : 2*hi]
			d := dst[lo:hi]
			for i := range d {
				d[i] = tab[uint16(s[2*i])|uint16(s[2*i+1])<<8]
			}
		})
	case F8E4M3:
		return parallel(len(dst), grain, func(lo, hi int) {
			s := src[lo:hi]
			d := dst[lo:hi]
			for i := range d {
				d[i] = fp8e4m3Table[s[i]]
			}
		})
	case F8E5M2:
		return parallel(len(dst), grain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = FP8E5M2ToFloat32(src[i])
			}
		})
	case F8E8M0:
		return parallel(len(dst), grain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = FP8E8M0ToFloat32(src[i])
			}
		})
	case F64:
		return parallel(len(dst), grain, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = float32(math.Float64frombits(le.Uint64(src[8*i:])))
			}
		})
	}
	return fmt.Errorf("dtype %s is not a float type", dt)
}

// decodeInt widens len(dst) elements of src; it reports a U64 overflow.
func decodeInt(dst []int64, src []byte, dt DType) (overflow bool) {
	le := binary.LittleEndian
	for i := range dst {
		switch dt {
		case BOOL, U8:
			dst[i] = int64(src[i])
		case I8:
			dst[i] = int64(int8(src[i]))
		case U16:
			dst[i] = int64(le.Uint16(src[2*i:]))
		case I16:
			dst[i] = int64(int16(le.Uint16(src[2*i:])))
		case U32:
			dst[i] = int64(le.Uint32(src[4*i:]))
		case I32:
			dst[i] = int64(int32(le.Uint32(src[4*i:])))
		case I64:
			dst[i] = int64(le.Uint64(src[8*i:]))
		case U64:
			v := le.Uint64(src[8*i:])
			overflow = overflow || v > math.MaxInt64
			dst[i] = int64(v)
		}
	}
	return overflow
}

// parallel runs f over [0, n) in contiguous chunks of at least grain elements,
// one per CPU at most, each under guard. It returns the first fault.
func parallel(n, grain int, f func(lo, hi int)) error {
	chunks := min(runtime.GOMAXPROCS(0), n/max(grain, 1))
	if chunks <= 1 {
		return guard(func() { f(0, n) })
	}
	errs := make([]error, chunks)
	var wg sync.WaitGroup
	for k := range chunks {
		lo, hi := n*k/chunks, n*(k+1)/chunks
		wg.Go(func() { errs[k] = guard(func() { f(lo, hi) }) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// guard runs f, which reads mapped memory, and turns a memory fault (the file
// was truncated or its disk failed after Open) into an error instead of a
// crash of the whole process.
func guard(f func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// With SetPanicOnFault, a memory fault panics with an error that has Addr.
			if fault, ok := r.(interface{ Addr() uintptr }); ok {
				err = fmt.Errorf("memory fault at %#x reading the mapped file (truncated or unreadable after Open?)", fault.Addr())
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}
