package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/dsv32/dsv32/internal/mmap"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"unsafe"
)

// Dataset is an opened dataset directory: the index and the shards, memory
// mapped. Documents are read-only views into the mapping, valid until Close.
// A Dataset is safe for concurrent readers.
type Dataset struct {
	Index  *Index
	shards [][]uint32 // [shard][token]
	raw    [][]byte   // the mapped shard bytes
	first  []int      // first[s] is the number of documents before shard s; len(shards)+1 entries
	unmap  []func() error
}

// Open reads dir/index.json, maps every shard and checks each file's size
// against the index. It does not read the tokens; Verify does.
func Open(dir string) (*Dataset, error) {
	data, err := os.ReadFile(filepath.Join(dir, IndexName))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("data: %s has no %s (not a dataset, or its writing never finished)", dir, IndexName)
		}
		return nil, fmt.Errorf("data: %w", err)
	}
	idx, err := ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, dir)
	}
	raw := make([][]byte, len(idx.Shards))
	unmaps := make([]func() error, 0, len(idx.Shards))
	closeAll := func() {
		for _, u := range unmaps {
			u()
		}
	}
	for i, s := range idx.Shards {
		b, unmap, err := mmap.Map(filepath.Join(dir, s.Name))
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("data: shard %d: %w", i, err)
		}
		unmaps = append(unmaps, unmap)
		raw[i] = b
	}
	ds, err := newDataset(idx, raw)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("%w (in %s)", err, dir)
	}
	ds.unmap = unmaps
	return ds, nil
}

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// newDataset checks the shard bytes against a validated index and wraps
// them; it is Open without the files (and what the fuzzer drives).
func newDataset(idx *Index, raw [][]byte) (*Dataset, error) {
	if len(raw) != len(idx.Shards) {
		return nil, fmt.Errorf("data: %d shard files for %d shards in the index", len(raw), len(idx.Shards))
	}
	ds := &Dataset{Index: idx, raw: raw, shards: make([][]uint32, len(raw)), first: make([]int, len(raw)+1)}
	for i, s := range idx.Shards {
		b := raw[i]
		if int64(len(b)) != 4*s.Tokens {
			what := "truncated"
			if int64(len(b)) > 4*s.Tokens {
				what = "longer than the index says"
			}
			return nil, fmt.Errorf("data: %s: %d bytes, but the index says %d tokens (%d bytes): %s", s.Name, len(b), s.Tokens, 4*s.Tokens, what)
		}
		ds.shards[i] = uint32s(b)
		ds.first[i+1] = ds.first[i] + len(s.DocEnds)
	}
	return ds, nil
}

// uint32s views little-endian bytes as []uint32, copying only on big-endian
// hosts or unaligned memory.
func uint32s(b []byte) []uint32 {
	if len(b) == 0 {
		return nil
	}
	if littleEndian && uintptr(unsafe.Pointer(&b[0]))%4 == 0 {
		return unsafe.Slice((*uint32)(unsafe.Pointer(&b[0])), len(b)/4)
	}
	out := make([]uint32, len(b)/4)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// NumDocs is the number of documents.
func (d *Dataset) NumDocs() int { return d.first[len(d.first)-1] }

// NumTokens is the number of tokens, EOS included.
func (d *Dataset) NumTokens() int64 { return d.Index.Tokens }

// locate returns document i's shard and token range.
func (d *Dataset) locate(i int) (shard int, start, end int64) {
	if i < 0 || i >= d.NumDocs() {
		panic(fmt.Sprintf("data: document %d out of range [0, %d)", i, d.NumDocs()))
	}
	s := sort.Search(len(d.shards), func(s int) bool { return d.first[s+1] > i })
	j := i - d.first[s]
	ends := d.Index.Shards[s].DocEnds
	if j > 0 {
		start = ends[j-1]
	}
	return s, start, ends[j]
}

// Doc returns document i's tokens, its EOS last: a read-only view into the
// shard, valid until Close.
func (d *Dataset) Doc(i int) []uint32 {
	s, start, end := d.locate(i)
	return d.shards[s][start:end:end]
}

// DocLen is len(Doc(i)) without touching the shard.
func (d *Dataset) DocLen(i int) int {
	_, start, end := d.locate(i)
	return int(end - start)
}

// Verify reads every shard: its CRC-32C against the index, every id against
// the vocabulary size (when the index knows it), and the EOS at the end of
// every document. The error names the shard and the document.
func (d *Dataset) Verify() error {
	eos := uint32(d.Index.EOS)
	vocab := d.Index.Tokenizer.VocabSize
	for si, s := range d.Index.Shards {
		if got := crc32.Checksum(d.raw[si], castagnoli); got != s.CRC32C {
			return fmt.Errorf("data: %s: CRC-32C %08x, the index says %08x: the shard is corrupt", s.Name, got, s.CRC32C)
		}
		toks := d.shards[si]
		if vocab > 0 {
			for i, id := range toks {
				if int64(id) >= int64(vocab) {
					return fmt.Errorf("data: %s: token %d is id %d, outside the vocabulary (%d ids)", s.Name, i, id, vocab)
				}
			}
		}
		for j, e := range s.DocEnds {
			if toks[e-1] != eos {
				return fmt.Errorf("data: %s: document %d (of the dataset: %d) does not end with EOS %d", s.Name, j, d.first[si]+j, eos)
			}
		}
	}
	return nil
}

// Close unmaps the shards; documents returned earlier must not be used after.
func (d *Dataset) Close() error {
	var err error
	for _, u := range d.unmap {
		err = errors.Join(err, u())
	}
	d.unmap = nil
	d.shards, d.raw = nil, nil
	return err
}
