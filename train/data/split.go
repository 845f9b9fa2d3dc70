package data

import "fmt"

// DocHash is the 64-bit FNV-1a hash of a document's ids (little-endian
// bytes): the same tokens always hash the same, whatever their place in
// the corpus.
func DocHash(doc []uint32) uint64 {
	h := uint64(14695981039346656037)
	for _, id := range doc {
		for k := 0; k < 32; k += 8 {
			h ^= uint64(byte(id >> k))
			h *= 1099511628211
		}
	}
	return h
}

// HeldOut reports whether a document belongs to the held-out split for the
// fraction frac: by its hash, so the split does not move when the corpus is
// reordered or grows, and duplicated documents land on the same side.
func HeldOut(doc []uint32, frac float64) bool {
	return float64(DocHash(doc)>>11)/(1<<53) < frac
}

// Split divides a corpus into training and held-out documents by HeldOut.
func Split(c Corpus, frac float64) (train, heldOut Corpus, err error) {
	if !(frac >= 0 && frac <= 1) {
		return nil, nil, fmt.Errorf("data: held-out fraction %v is not in [0, 1]", frac)
	}
	var tr, ho []int
	for i := range c.NumDocs() {
		if HeldOut(c.Doc(i), frac) {
			ho = append(ho, i)
		} else {
			tr = append(tr, i)
		}
	}
	return Subset{c, tr}, Subset{c, ho}, nil
}

// Subset is the documents of C numbered by IDs, in that order.
type Subset struct {
	C   Corpus
	IDs []int
}

func (s Subset) NumDocs() int       { return len(s.IDs) }
func (s Subset) Doc(i int) []uint32 { return s.C.Doc(s.IDs[i]) }
