// Package data is the training data path: text to token shards, shards to
// fixed-length training rows, and synthetic tasks to learn and to evaluate.
//
// Reading order:
//
//   - index.go, writer.go, reader.go: the dataset directory. Shards
//     (shard-00000.bin, …) are raw little-endian uint32 token ids, the EOS id
//     after every document; index.json records the format and version, the
//     tokenizer's SHA-256 and vocabulary size, the EOS id, and per shard its
//     token count, CRC-32C and document end offsets. Documents never span
//     shards. Every file is written under a temporary name and renamed,
//     index.json last, so an interrupted write leaves no dataset to open.
//     Open maps the shards and checks sizes against the index; Verify reads
//     them (checksums, id range, the EOS ending each document).
//   - tokenize.go: text files to documents (a file, a line, or the "text"
//     field of a JSONL line each) and through an Encoder into a Writer.
//   - pack.go, split.go: Packer lays documents into rows of T+1 tokens, either
//     concatenated (Concat) or one segment per document with per-position
//     segment ids, positions and a loss mask (Boundaries); the document
//     order is shuffled per epoch from a seed, and State/Seek resume it
//     exactly. Split holds documents out by a hash of their tokens.
//   - synth.go, retrieval.go, words.go: deterministic synthetic tasks
//     (Stories, Arith, Copy, and the long-context Retrieval task) and
//     exact-match scoring (Score) by answer depth.
//
// The package is a leaf: it imports only the standard library, and reaches
// the tokenizer through the one-method Encoder interface (*tokenizer.BPE
// satisfies it).
//
// What it deliberately does not do: it neither downloads nor cleans data
// (no deduplication, language filtering or quality scoring), holds no
// tensors (rows are Go slices; the trainer builds batches), and does not
// stream from remote storage. Documents are shuffled, not tokens within
// them. Packing is greedy in document order, not bin-packing, so Boundaries
// mode pads rows when the next document does not fit. The synthetic tasks
// are tiny, templated English, for a tiny model and for the sparse-attention
// experiment; they are not a benchmark of language ability.
package data
