// Package checkpoint reads and writes safetensors checkpoints: single files,
// directories of files and Hugging Face sharded checkpoints
// (model.safetensors.index.json), including DeepSeek's FP8 block-scaled
// weights (dsa.md §7).
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON mapping tensor names to {dtype, shape, data_offsets} (plus an optional
// "__metadata__" object of strings), then the raw little-endian tensor bytes.
// Open memory-maps every file and parses only the headers; a tensor's bytes
// are read when it is asked for, so a 600 GB checkpoint costs address space,
// not memory. Reads are safe from many goroutines.
//
// Reading order:
//
//	dtype.go       DType and the scalar conversions: BF16, F16, FP8 e4m3fn (and e5m2, e8m0)
//	header.go      the header parser and its checks: the part exposed to untrusted bytes
//	checkpoint.go  Open (file, directory, sharded index), Info, Raw, Float32, Int64, FP8 dequantisation
//	mmap_*.go      memory mapping, and a read-the-whole-file fallback where there is none
//	write.go       Write, WriteSharded (temporary file, fsync, rename), FromFloat32, QuantizeFP8
//
// FP8 weights: a tensor "X.weight" of dtype F8_E4M3 with a sibling
// "X.weight_scale_inv" of shape [ceil(out/br), ceil(in/bc)] is dequantised by
// Float32 as W[i,j] = fp8(W8[i,j]) · scale_inv[i/br, j/bc]. The block size
// [br, bc] comes from quantization_config.weight_block_size in the
// checkpoint's config.json, [128, 128] without one. QuantizeFP8 is the
// inverse used by our writer (scale = max(amax, 1e-4)/448 per block, round to
// nearest even, saturate at ±448); it reproduces the tiny-dsa-fp8 fixture and
// PyTorch's float8_e4m3fn conversion bit for bit.
//
// Bad input is an error naming the file and, where there is one, the tensor:
// truncated files, oversized or malformed headers, unknown dtypes, negative
// or overflowing shapes, sizes that disagree with the offsets, overlapping or
// out-of-range offsets, a missing shard or tensor. A file truncated after
// Open turns into an error on read instead of a crash. FuzzParseHeader keeps
// the parser panic-free.
//
// What it deliberately does not do:
//   - It knows nothing about the model: no name mapping to graph variables and
//     no config.json beyond the FP8 block size (package model does that).
//   - It does not import GoMLX; it returns plain Go slices.
//   - It does not decode sub-byte dtypes (F4, F6_*) or complex numbers; files
//     holding them are rejected at Open as unknown dtypes.
//   - It does not stream: Write and WriteSharded take every tensor in memory.
//   - It does not make a multi-file write atomic as a whole: each shard and the
//     index are replaced atomically, shards first and the index last.
package checkpoint
