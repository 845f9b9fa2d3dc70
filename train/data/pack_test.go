package data

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"
)

// randomDocs returns n documents of 1..maxLen tokens, each ending in EOS,
// with distinct contents (the first token is the document's number).
func randomDocs(n, maxLen int, seed uint64) Docs {
	r := newRNG(seed)
	d := make(Docs, n)
	for i := range d {
		doc := []uint32{uint32(1000 + i)}
		for range r.intn(maxLen) {
			doc = append(doc, uint32(r.intn(100)))
		}
		if len(doc) > 1 {
			doc[len(doc)-1] = testEOS
		}
		d[i] = doc
	}
	return d
}

// epochRows returns the rows of the packer's current epoch.
func epochRows(p *Packer) []Row {
	e := p.State().Epoch
	var rows []Row
	for p.State().Epoch == e {
		rows = append(rows, p.Next())
	}
	return rows
}

func checkRowShape(t *testing.T, r Row, T int) {
	t.Helper()
	if len(r.Tokens) != T+1 || len(r.Segments) != T+1 || len(r.Positions) != T+1 || len(r.Mask) != T {
		t.Fatalf("row lengths %d %d %d %d, want %d (mask %d)", len(r.Tokens), len(r.Segments), len(r.Positions), len(r.Mask), T+1, T)
	}
	for i := range r.Mask {
		want := float32(0)
		if r.Segments[i] != 0 && r.Segments[i] == r.Segments[i+1] {
			want = 1
		}
		if r.Mask[i] != want {
			t.Fatalf("mask[%d] = %v, segments %d→%d", i, r.Mask[i], r.Segments[i], r.Segments[i+1])
		}
	}
}

func TestPackConcatExact(t *testing.T) {
	docs := randomDocs(57, 40, 1)
	for _, T := range []int{1, 7, 64, 2000} {
		for _, shuffle := range []bool{false, true} {
			t.Run(fmt.Sprintf("T=%d/shuffle=%v", T, shuffle), func(t *testing.T) {
				p, err := NewPacker(docs, PackConfig{SeqLen: T, Shuffle: shuffle, Seed: 9, Pad: -1})
				if err != nil {
					t.Fatal(err)
				}
				for epoch := range 3 {
					order := identity(len(docs))
					if shuffle {
						order = newRNG(9, uint64(epoch)).permutation(len(docs))
					}
					var stream []int32
					for _, i := range order {
						for _, id := range docs[i] {
							stream = append(stream, int32(id))
						}
					}
					var got []int32
					rows := epochRows(p)
					for k, r := range rows {
						checkRowShape(t, r, T)
						for i, s := range r.Segments {
							switch {
							case s == 1:
								if r.Positions[i] != int32(i) {
									t.Fatalf("row %d position %d = %d", k, i, r.Positions[i])
								}
								got = append(got, r.Tokens[i])
							case s != 0 || r.Tokens[i] != -1 || k != len(rows)-1:
								t.Fatalf("row %d: position %d: segment %d token %d (padding only ends an epoch)", k, i, s, r.Tokens[i])
							}
						}
					}
					if !slices.Equal(got, stream) {
						t.Fatalf("epoch %d: the rows hold %d tokens, not the %d of the documents in order", epoch, len(got), len(stream))
					}
				}
			})
		}
	}
}

func identity(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	return p
}

func TestPackBoundaries(t *testing.T) {
	docs := randomDocs(80, 30, 2)
	docs = append(docs, make([]uint32, 0)) // an empty document is skipped
	for _, T := range []int{1, 9, 16, 100} {
		t.Run(fmt.Sprintf("T=%d", T), func(t *testing.T) {
			p, err := NewPacker(docs, PackConfig{SeqLen: T, Mode: Boundaries, Shuffle: true, Seed: 3})
			if err != nil {
				t.Fatal(err)
			}
			for epoch := range 2 {
				order := newRNG(3, uint64(epoch)).permutation(len(docs))
				// The segments in row order, each a document or a row-sized piece of one.
				var segs [][]uint32
				for _, r := range epochRows(p) {
					checkRowShape(t, r, T)
					for i := 0; i <= T; i++ {
						if r.Segments[i] == 0 {
							for ; i <= T; i++ {
								if r.Segments[i] != 0 || r.Tokens[i] != 0 {
									t.Fatalf("padding is not at the end of the row: %v", r.Segments)
								}
							}
							break
						}
						if i == 0 || r.Segments[i] != r.Segments[i-1] {
							if r.Segments[i] != int32(1+len(segsOf(r, i))) || r.Positions[i] != 0 {
								t.Fatalf("segment %d starts at %d with position %d", r.Segments[i], i, r.Positions[i])
							}
							segs = append(segs, nil)
						} else if r.Positions[i] != r.Positions[i-1]+1 {
							t.Fatalf("positions %d then %d inside a segment", r.Positions[i-1], r.Positions[i])
						}
						segs[len(segs)-1] = append(segs[len(segs)-1], uint32(r.Tokens[i]))
					}
				}
				k := 0
				for _, i := range order {
					d := docs[i]
					if len(d) == 0 {
						continue
					}
					if len(d) <= T+1 { // whole
						if !slices.Equal(segs[k], d) {
							t.Fatalf("epoch %d: segment %d = %v, want document %d %v", epoch, k, segs[k], i, d)
						}
						k++
						continue
					}
					for off := 0; off < len(d); off += T + 1 { // in row-sized pieces
						if !slices.Equal(segs[k], d[off:min(len(d), off+T+1)]) {
							t.Fatalf("epoch %d: segment %d = %v, want a piece of document %d", epoch, k, segs[k], i)
						}
						k++
					}
				}
				if k != len(segs) {
					t.Fatalf("epoch %d: %d segments, %d expected", epoch, len(segs), k)
				}
			}
		})
	}
}

// segsOf returns the distinct segments before position i of a row.
func segsOf(r Row, i int) []int32 {
	var out []int32
	for k := range i {
		if k == 0 || r.Segments[k] != r.Segments[k-1] {
			out = append(out, r.Segments[k])
		}
	}
	return out
}

func TestPackMask(t *testing.T) {
	docs := Docs{{1, 2, testEOS}, {3, 4, 5, testEOS}}
	tests := []struct {
		mode Mode
		want Row
	}{
		{Concat, Row{
			Tokens:    []int32{1, 2, testEOS, 3, 4, 5, testEOS, 0, 0},
			Segments:  []int32{1, 1, 1, 1, 1, 1, 1, 0, 0},
			Positions: []int32{0, 1, 2, 3, 4, 5, 6, 0, 0},
			Mask:      []float32{1, 1, 1, 1, 1, 1, 0, 0},
		}},
		{Boundaries, Row{
			Tokens:    []int32{1, 2, testEOS, 3, 4, 5, testEOS, 0, 0},
			Segments:  []int32{1, 1, 1, 2, 2, 2, 2, 0, 0},
			Positions: []int32{0, 1, 2, 0, 1, 2, 3, 0, 0},
			Mask:      []float32{1, 1, 0, 1, 1, 1, 0, 0},
		}},
	}
	for _, tc := range tests {
		p, err := NewPacker(docs, PackConfig{SeqLen: 8, Mode: tc.mode})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Next(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v:\n got %+v\nwant %+v", tc.mode, got, tc.want)
		}
		if s := p.State(); s != (State{Epoch: 1}) {
			t.Errorf("%v: state %+v after the epoch's last row", tc.mode, s)
		}
	}
}

func TestShuffleDeterminism(t *testing.T) {
	docs := randomDocs(200, 20, 4)
	rows := func(seed uint64, shuffle bool) []Row {
		p, _ := NewPacker(docs, PackConfig{SeqLen: 32, Mode: Boundaries, Shuffle: shuffle, Seed: seed})
		var out []Row
		for range 300 { // about three epochs
			out = append(out, p.Next())
		}
		return out
	}
	a, b, c := rows(1, true), rows(1, true), rows(2, true)
	if !reflect.DeepEqual(a, b) {
		t.Error("the same seed gave different rows")
	}
	if reflect.DeepEqual(a, c) {
		t.Error("different seeds gave the same rows")
	}
	if reflect.DeepEqual(rows(1, false), a) {
		t.Error("shuffled rows equal the unshuffled ones")
	}
	if slices.Equal(newRNG(1, 0).permutation(200), newRNG(1, 1).permutation(200)) {
		t.Error("two epochs have the same order")
	}
	// The order is pinned: a change to the RNG or the shuffle changes
	// every resumed training run, so it must be deliberate.
	if got, want := newRNG(7, 0).permutation(8), []int{7, 2, 3, 1, 6, 5, 4, 0}; !slices.Equal(got, want) {
		t.Errorf("permutation(seed 7, epoch 0) = %v, pinned %v", got, want)
	}
}

func TestSeekResume(t *testing.T) {
	docs := randomDocs(40, 50, 5)
	tests := []struct {
		mode  Mode
		T     int
		first int // rows before the checkpoint
	}{
		{Concat, 16, 0}, {Concat, 16, 7}, {Concat, 16, 70}, {Concat, 100, 13},
		{Boundaries, 16, 5}, {Boundaries, 16, 101}, {Boundaries, 40, 33},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%v/T=%d/after=%d", tc.mode, tc.T, tc.first), func(t *testing.T) {
			cfg := PackConfig{SeqLen: tc.T, Mode: tc.mode, Shuffle: true, Seed: 11}
			p, _ := NewPacker(docs, cfg)
			for range tc.first {
				p.Next()
			}
			saved, _ := json.Marshal(p.State()) // as a checkpoint would hold it
			var want []Row
			for range 150 { // across epoch boundaries
				want = append(want, p.Next())
			}
			var st State
			if err := json.Unmarshal(saved, &st); err != nil {
				t.Fatal(err)
			}
			q, _ := NewPacker(docs, cfg)
			if err := q.Seek(st); err != nil {
				t.Fatal(err)
			}
			for k := range want {
				if got := q.Next(); !reflect.DeepEqual(got, want[k]) {
					t.Fatalf("row %d after resuming at %s differs", k, saved)
				}
			}
		})
	}
}

func TestSeekErrors(t *testing.T) {
	p, _ := NewPacker(Docs{{1, 2, 3}, {4}}, PackConfig{SeqLen: 2})
	for _, s := range []State{{Epoch: -1}, {Index: 2}, {Index: -1}, {Offset: 3}, {Index: 1, Offset: 1}, {Offset: -1}} {
		if err := p.Seek(s); err == nil {
			t.Errorf("Seek(%+v): no error", s)
		}
	}
	if _, err := NewPacker(Docs{{1}}, PackConfig{SeqLen: 0}); err == nil {
		t.Error("SeqLen 0: no error")
	}
	if _, err := NewPacker(Docs{{}, {}}, PackConfig{SeqLen: 4}); err == nil {
		t.Error("no tokens: no error")
	}
}

func TestSplit(t *testing.T) {
	docs := randomDocs(2000, 20, 6)
	docs = append(docs, docs[0], docs[1]) // duplicates go with their originals
	train, held, err := Split(docs, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if n := held.NumDocs(); n < 150 || n > 260 {
		t.Errorf("%d of %d documents held out at 0.1", n, len(docs))
	}
	if train.NumDocs()+held.NumDocs() != len(docs) {
		t.Fatal("the split loses documents")
	}
	side := map[uint64]bool{}
	for i := range held.NumDocs() {
		side[DocHash(held.Doc(i))] = true
	}
	for i := range train.NumDocs() {
		if side[DocHash(train.Doc(i))] {
			t.Fatalf("a document is on both sides")
		}
	}
	if HeldOut(docs[0], 0.1) != HeldOut(slices.Clone(docs[0]), 0.1) {
		t.Error("the split depends on more than the tokens")
	}
	all, none, _ := Split(docs, 0)
	if all.NumDocs() != len(docs) || none.NumDocs() != 0 {
		t.Error("fraction 0 holds documents out")
	}
	if _, _, err := Split(docs, 1.5); err == nil {
		t.Error("fraction 1.5: no error")
	}
}

func TestSeekErrorKeepsState(t *testing.T) {
	p, _ := NewPacker(Docs{{1, 2, 3}, {4}}, PackConfig{SeqLen: 2})
	p.Next()
	before := p.State()
	if err := p.Seek(State{Epoch: 5, Index: 1, Offset: 1}); err == nil || p.State() != before {
		t.Errorf("a failed Seek moved the packer to %+v (error %v)", p.State(), err)
	}
}
