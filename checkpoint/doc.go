// Package checkpoint reads and writes safetensors checkpoints: single files,
// directories of files, and Hugging Face sharded checkpoints
// (model.safetensors.index.json), including DeepSeek's FP8 block-scaled weights.
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of
// JSON mapping tensor names to {dtype, shape, data_offsets}, and the raw
// little-endian tensor bytes. Open memory-maps every file and parses only the
// headers; a tensor's bytes are touched when it is asked for, so a 600 GB
// checkpoint costs address space, not memory.
//
// Reading order of the files:
//
//	dtype.go       DType, element sizes, BF16/F16/FP8 (e4m3fn, e5m2, e8m0) conversions
//	header.go      the header parser and its validation (the part exposed to untrusted bytes)
//	checkpoint.go  Open (file, directory, sharded index), Info, Raw, Float32, Int64, FP8 dequantisation
//	mmap_*.go      memory-mapping, with a read-the-file fallback where mmap is unavailable
//	write.go       Write, WriteSharded (temporary file, fsync, rename), FromFloat32, QuantizeFP8
//
// FP8 weights (dsa.md §7.2): a tensor "X.weight" of dtype F8_E4M3 with a sibling
// "X.weight_scale_inv" of shape [ceil(out/br), ceil(in/bc)] is dequantised by
// Float32 as W[i,j] = fp8(W8[i,j]) · scale_inv[i/br, j/bc]. The block size
// [br, bc] comes from quantization_config.weight_block_size in the checkpoint's
// config.json, [128, 128] when absent.
//
// Every malformed input (truncated files, bad JSON, wrong sizes, overlapping
// offsets, unknown dtypes, missing shards or tensors) is an error that names
// the file and, where there is one, the tensor. Nothing here panics on bad
// bytes; FuzzParseHeader keeps it that way.
//
// What it deliberately does not do:
//   - It knows nothing about models: no name mapping to graph variables, no
//     config.json beyond the FP8 block size (that is package model's job).
//   - It does not depend on GoMLX and returns plain Go slices.
//   - It does not decode sub-byte dtypes (F4, F6_*) or complex numbers; such
//     files are rejected at Open as unknown dtypes.
//   - It does not make a multi-file write atomic as a whole: each shard and
//     the index is replaced atomically, and the index is written last.
package checkpoint
