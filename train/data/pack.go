package data

import (
	"errors"
	"fmt"
)

// Corpus is a numbered set of token documents; *Dataset and Docs are ones.
type Corpus interface {
	NumDocs() int
	Doc(i int) []uint32
}

// Docs is a Corpus in memory.
type Docs [][]uint32

func (d Docs) NumDocs() int       { return len(d) }
func (d Docs) Doc(i int) []uint32 { return d[i] }

// Mode is how a Packer lays documents into rows.
type Mode int

const (
	// Concat lays the documents end to end (each already ends with EOS) and
	// cuts the stream into rows: one segment per row, full causal attention,
	// documents split across rows wherever the cut falls.
	Concat Mode = iota
	// Boundaries keeps documents apart: each document is its own segment
	// (attention masked to it, positions from 0), a document that does not
	// fit in what is left of a row starts the next row and the rest of the row
	// is padding, and only a document longer than a whole row is cut, into
	// row-sized pieces that are segments of their own.
	Boundaries
)

func (m Mode) String() string {
	switch m {
	case Concat:
		return "concat"
	case Boundaries:
		return "boundaries"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// PackConfig configures a Packer.
type PackConfig struct {
	SeqLen  int    // T: rows hold T+1 tokens, inputs [0, T) and targets [1, T+1)
	Mode    Mode   // Concat or Boundaries
	Shuffle bool   // shuffle the document order, anew each epoch
	Seed    uint64 // the shuffle's seed: the same seed gives the same order
	Pad     int32  // the id on padding positions (they carry no loss)
}

// Row is one training row. T+1 tokens give T next-token predictions:
// input t is Tokens[t], its target Tokens[t+1].
//
// Loss mask. Mask[t] is 1 when target t is a real prediction: input and
// target are both real tokens of the same segment. It is 0 on padding and
// on the first token of each segment: in Boundaries mode a document's first
// token cannot be predicted from the previous document, which attention no
// longer sees, so that position trains nothing. The EOS closing a document
// is a target within its segment, so the model learns where documents end.
// In Concat mode the whole row is one segment and only padding is masked.
//
// Attention: query t may attend key s ≤ t when Segments[s] == Segments[t];
// RoPE takes Positions. In Concat mode that is plain causal attention.
type Row struct {
	Tokens    []int32   // [T+1] token ids
	Segments  []int32   // [T+1] 1, 2, … for the row's segments in order; 0 on padding
	Positions []int32   // [T+1] position within the segment, from 0 (0 on padding)
	Mask      []float32 // [T] loss weight of target t (Tokens[t+1]): 1 or 0
}

// Inputs is Tokens[:T].
func (r Row) Inputs() []int32 { return r.Tokens[:len(r.Tokens)-1] }

// Targets is Tokens[1:].
func (r Row) Targets() []int32 { return r.Tokens[1:] }

// State is where a Packer is: the epoch, the index into that epoch's
// document order of the next document to read, and how many of its tokens
// earlier rows already took (a document cut across rows). It is what a
// training checkpoint saves; Seek(State) continues with identical rows.
type State struct {
	Epoch  int `json:"epoch"`
	Index  int `json:"index"`
	Offset int `json:"offset"`
}

// Packer yields fixed-length rows from a corpus, epoch after epoch, in a
// deterministic order. Within one epoch every token of every document is
// in exactly one row, at one position. An epoch's last row is padded; the
// next epoch starts a fresh row. A Packer is not safe for concurrent use.
type Packer struct {
	c     Corpus
	cfg   PackConfig
	n     int
	st    State
	order []int // this epoch's document order; nil: 0..n-1
	ordEp int   // the epoch order belongs to
}

// NewPacker checks the configuration and starts at epoch 0.
func NewPacker(c Corpus, cfg PackConfig) (*Packer, error) {
	if cfg.SeqLen < 1 {
		return nil, fmt.Errorf("data: sequence length %d, want at least 1", cfg.SeqLen)
	}
	if cfg.Mode != Concat && cfg.Mode != Boundaries {
		return nil, fmt.Errorf("data: unknown packing mode %v", cfg.Mode)
	}
	n := c.NumDocs()
	nonEmpty := false
	for i := 0; i < n && !nonEmpty; i++ {
		nonEmpty = len(c.Doc(i)) > 0
	}
	if !nonEmpty {
		return nil, errors.New("data: the corpus has no tokens to pack")
	}
	p := &Packer{c: c, cfg: cfg, n: n, ordEp: -1}
	return p, nil
}

// State returns the position of the next row.
func (p *Packer) State() State { return p.st }

// Seek moves to s, a State returned by State, possibly by another Packer
// over the same corpus and configuration.
func (p *Packer) Seek(s State) error {
	if s.Epoch < 0 || s.Index < 0 || s.Index >= p.n || s.Offset < 0 {
		return fmt.Errorf("data: packer state %+v out of range (%d documents)", s, p.n)
	}
	old := p.st
	p.st = s // p.doc reads the epoch
	if l := len(p.doc(s.Index)); s.Offset > 0 && s.Offset >= l {
		p.st = old
		return fmt.Errorf("data: packer state %+v: offset beyond the document's %d tokens", s, l)
	}
	return nil
}

// doc returns the document at position i of the current epoch's order.
func (p *Packer) doc(i int) []uint32 {
	if p.cfg.Shuffle && p.ordEp != p.st.Epoch {
		p.order = newRNG(p.cfg.Seed, uint64(p.st.Epoch)).permutation(p.n)
		p.ordEp = p.st.Epoch
	}
	if p.cfg.Shuffle {
		return p.c.Doc(p.order[i])
	}
	return p.c.Doc(i)
}

// Next returns the next row (its slices are new).
func (p *Packer) Next() Row {
	T1 := p.cfg.SeqLen + 1
	r := Row{
		Tokens:    make([]int32, T1),
		Segments:  make([]int32, T1),
		Positions: make([]int32, T1),
		Mask:      make([]float32, T1-1),
	}
	fill, seg := 0, int32(0)
	for fill < T1 && p.st.Index < p.n {
		d := p.doc(p.st.Index)[p.st.Offset:]
		if len(d) == 0 {
			p.st.Index, p.st.Offset = p.st.Index+1, 0
			continue
		}
		space := T1 - fill
		take := min(len(d), space)
		if p.cfg.Mode == Boundaries && len(d) > space && fill > 0 {
			break // the document starts the next row
		}
		pos0 := int32(0)
		if p.cfg.Mode == Concat {
			seg, pos0 = 1, int32(fill)
		} else {
			seg++
		}
		for k, id := range d[:take] {
			r.Tokens[fill+k] = int32(id)
			r.Segments[fill+k] = seg
			r.Positions[fill+k] = pos0 + int32(k)
		}
		fill += take
		if take == len(d) {
			p.st.Index, p.st.Offset = p.st.Index+1, 0
		} else {
			p.st.Offset += take
		}
	}
	for k := fill; k < T1; k++ {
		r.Tokens[k] = p.cfg.Pad
	}
	for t := range r.Mask {
		if r.Segments[t] != 0 && r.Segments[t+1] == r.Segments[t] {
			r.Mask[t] = 1
		}
	}
	for p.st.Index < p.n && p.st.Offset == 0 && len(p.doc(p.st.Index)) == 0 {
		p.st.Index++ // so that no row is padding only
	}
	if p.st.Index == p.n {
		p.st = State{Epoch: p.st.Epoch + 1}
	}
	return r
}
