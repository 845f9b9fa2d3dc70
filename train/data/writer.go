package data

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/dsv32/dsv32/internal/atomicfile"
	"hash"
	"hash/crc32"
	"os"
	"path/filepath"
)

// DefaultShardTokens is the shard size when WriterOptions leaves it 0:
// 16M tokens, 64 MiB per shard.
const DefaultShardTokens = 1 << 24

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriterOptions configures a Writer.
type WriterOptions struct {
	EOS         int           // appended after every document
	ShardTokens int           // tokens per shard (a longer document gets a shard of its own); 0: DefaultShardTokens
	Tokenizer   TokenizerInfo // recorded in the index; VocabSize > 0 also bounds the ids Add accepts
}

// Writer writes a dataset directory: shards first, each to a temporary name
// renamed when complete, and index.json last, the same way. Until Close
// returns, the directory has no index.json, so a half-written dataset never
// opens.
type Writer struct {
	dir  string
	opts WriterOptions
	idx  Index

	f     *os.File // the shard being written, under a temporary name
	buf   *bufio.Writer
	crc   hash.Hash32
	cur   ShardInfo
	bytes []byte // one document's bytes
	err   error  // sticky
	close bool
}

// Create starts a dataset in dir, creating it if needed. An index.json
// already there is removed first; its shards are overwritten as new ones
// complete, and any beyond the new count stay, unreferenced.
func Create(dir string, opts WriterOptions) (*Writer, error) {
	if opts.ShardTokens == 0 {
		opts.ShardTokens = DefaultShardTokens
	}
	if opts.ShardTokens < 0 {
		return nil, fmt.Errorf("data: shard size %d tokens is negative", opts.ShardTokens)
	}
	if opts.EOS < 0 || int64(opts.EOS) > 0xffffffff || (opts.Tokenizer.VocabSize > 0 && opts.EOS >= opts.Tokenizer.VocabSize) {
		return nil, fmt.Errorf("data: eos id %d is not in the vocabulary (%d ids)", opts.EOS, opts.Tokenizer.VocabSize)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if err := os.Remove(filepath.Join(dir, IndexName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("data: %w", err)
	}
	return &Writer{dir: dir, opts: opts, idx: Index{
		Format: Format, Version: Version, DType: DType,
		Tokenizer: opts.Tokenizer, EOS: opts.EOS, ShardTokens: opts.ShardTokens,
		Shards: []ShardInfo{},
	}}, nil
}

// Add appends one document and the EOS id after it. An empty document is
// skipped (it would be a lone EOS).
func (w *Writer) Add(doc []int) error {
	if w.err != nil {
		return w.err
	}
	if w.close {
		return errors.New("data: Add after Close")
	}
	if len(doc) == 0 {
		return nil
	}
	for i, id := range doc {
		if id < 0 || int64(id) > 0xffffffff || (w.opts.Tokenizer.VocabSize > 0 && id >= w.opts.Tokenizer.VocabSize) {
			w.err = fmt.Errorf("data: document %d: token %d is id %d, outside the vocabulary (%d ids)", w.idx.Documents, i, id, w.opts.Tokenizer.VocabSize)
			w.abort()
			return w.err
		}
	}
	n := int64(len(doc) + 1)
	if w.f != nil && w.cur.Tokens+n > int64(w.opts.ShardTokens) {
		if w.err = w.finishShard(); w.err != nil {
			return w.err
		}
	}
	if w.f == nil {
		if w.err = w.startShard(); w.err != nil {
			return w.err
		}
	}
	w.bytes = w.bytes[:0]
	for _, id := range doc {
		w.bytes = binary.LittleEndian.AppendUint32(w.bytes, uint32(id))
	}
	w.bytes = binary.LittleEndian.AppendUint32(w.bytes, uint32(w.opts.EOS))
	w.buf.Write(w.bytes) // errors surface at Flush
	w.crc.Write(w.bytes)
	w.cur.Tokens += n
	w.cur.DocEnds = append(w.cur.DocEnds, w.cur.Tokens)
	w.idx.Documents++
	w.idx.Tokens += n
	return nil
}

func (w *Writer) startShard() error {
	name := ShardName(len(w.idx.Shards))
	f, err := os.CreateTemp(w.dir, name+".*.tmp")
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	w.f, w.buf, w.crc = f, bufio.NewWriterSize(f, 1<<20), crc32.New(castagnoli)
	w.cur = ShardInfo{Name: name}
	return nil
}

func (w *Writer) finishShard() error {
	f := w.f
	w.f = nil
	err := w.buf.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(w.dir, w.cur.Name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("data: writing %s: %w", w.cur.Name, err)
	}
	w.cur.CRC32C = w.crc.Sum32()
	w.idx.Shards = append(w.idx.Shards, w.cur)
	return nil
}

// abort removes the shard in progress.
func (w *Writer) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
		w.f = nil
	}
}

// Abort gives up: the shard in progress is removed and no index is written.
func (w *Writer) Abort() {
	w.abort()
	w.close = true
}

// Close completes the last shard and writes index.json; the returned index
// is what it holds.
func (w *Writer) Close() (*Index, error) {
	if w.close {
		return nil, errors.New("data: Close called twice")
	}
	w.close = true
	if w.err != nil {
		return nil, w.err
	}
	if w.f != nil {
		if err := w.finishShard(); err != nil {
			return nil, err
		}
	}
	data, err := json.Marshal(&w.idx)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(w.dir, IndexName), append(data, '\n')); err != nil {
		return nil, err
	}
	idx := w.idx
	return &idx, nil
}

// writeFileAtomic writes data to path atomically (internal/atomicfile).
func writeFileAtomic(path string, data []byte) error {
	if err := atomicfile.Write(path, data); err != nil {
		return fmt.Errorf("data: %w", err)
	}
	return nil
}
