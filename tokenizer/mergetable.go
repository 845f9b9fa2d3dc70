package tokenizer

// mergeTable maps a pair of ids to its merge rank: open addressing with
// linear probing over one flat array of 8-byte slots, so a lookup is usually
// one cache miss (the merge loop's hot path) and DeepSeek's 127,741 merges
// take 2 MiB. A slot packs left id (21 bits), right id (21 bits) and
// rank+1 (22 bits); 0 is empty. The merged ids are in a slice by rank.
type mergeTable struct {
	slots  []uint64 // len is a power of two, at most half full
	shift  uint
	merged []int32 // rank → merged id
}

const (
	maxTokenID = 1<<21 - 1 // ids must fit the slot layout
	maxMerges  = 1<<22 - 2
)

func newMergeTable(n int) *mergeTable {
	size, shift := 16, uint(60)
	for size < 2*n {
		size *= 2
		shift--
	}
	return &mergeTable{slots: make([]uint64, size), shift: shift, merged: make([]int32, 0, n)}
}

func (t *mergeTable) index(key uint64) int {
	return int((key * 0x9E3779B97F4A7C15) >> t.shift)
}

// add appends a merge of the next rank; a pair added again keeps its last
// rank, as in tokenizers. l, r and merged must be at most maxTokenID, and
// there may be at most maxMerges merges (build checks both).
func (t *mergeTable) add(l, r, merged int32) {
	rank := uint64(len(t.merged))
	t.merged = append(t.merged, merged)
	key := uint64(l)<<21 | uint64(r)
	mask := len(t.slots) - 1
	for i := t.index(key); ; i = (i + 1) & mask {
		if s := t.slots[i]; s == 0 || s>>22 == key {
			t.slots[i] = key<<22 | (rank + 1)
			return
		}
	}
}

// get returns the rank and merged id of the pair (l, r).
func (t *mergeTable) get(l, r int32) (uint32, int32, bool) {
	key := uint64(uint32(l))<<21 | uint64(uint32(r))
	mask := len(t.slots) - 1
	for i := t.index(key); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s>>22 == key && s != 0 {
			rank := uint32(s&(1<<22-1)) - 1
			return rank, t.merged[rank], true
		}
		if s == 0 {
			return 0, 0, false
		}
	}
}
