package engine

import "github.com/dsv32/dsv32/model"

// prefixStore keeps cache rows' prefixes in host memory after their rows
// went to other requests (Config.PrefixStore), so that a conversation whose
// row was taken meanwhile still finds its history: more conversations than
// rows, or an agent's next step after others ran. The least recently used
// go first when the budget is full. It lives on the engine's goroutine.
type prefixStore struct {
	budget, used int64
	clock        int64
	entries      []*storedPrefix
}

// storedPrefix is one row's prefix on the host.
type storedPrefix struct {
	cached
	rc   *model.RowCache
	used int64 // the store's clock at its last use
}

// best returns the entry sharing the longest prefix with prompt (routes:
// only positions whose routes it recorded) that a cache of capacity can
// take, and that length; entries computed with weights other than weights
// are dropped on the way.
func (p *prefixStore) best(prompt []int32, routes bool, weights int64, capacity int) (*storedPrefix, int) {
	p.dropStale(weights)
	var best *storedPrefix
	n := 0
	for _, e := range p.entries {
		if e.rc.Slots() > capacity {
			continue
		}
		m := commonPrefix(prompt, e.tokens)
		if routes {
			m = min(m, len(e.routes))
		}
		if m > n {
			best, n = e, m
		}
	}
	return best, n
}

// touch marks e as just used.
func (p *prefixStore) touch(e *storedPrefix) {
	p.clock++
	e.used = p.clock
}

// holds reports whether an entry already holds c's positions (and routes).
func (p *prefixStore) holds(c cached) bool {
	for _, e := range p.entries {
		if e.weights == c.weights && commonPrefix(c.tokens, e.tokens) == len(c.tokens) && len(e.routes) >= len(c.routes) {
			return true
		}
	}
	return false
}

// add keeps c, whose positions rc holds, evicting the least recently used
// until it fits, and drops the entries c holds all of. A copy larger than
// the whole budget is not kept.
func (p *prefixStore) add(c cached, rc *model.RowCache) {
	size := rc.Bytes()
	if size > p.budget {
		rc.Free()
		return
	}
	kept := p.entries[:0]
	for _, e := range p.entries {
		if e.weights == c.weights && commonPrefix(e.tokens, c.tokens) == len(e.tokens) && len(c.routes) >= len(e.routes) {
			p.free(e)
			continue
		}
		kept = append(kept, e)
	}
	p.entries = kept
	for p.used+size > p.budget {
		oldest := 0
		for i, e := range p.entries {
			if e.used < p.entries[oldest].used {
				oldest = i
			}
		}
		p.free(p.entries[oldest])
		p.entries = append(p.entries[:oldest], p.entries[oldest+1:]...)
	}
	e := &storedPrefix{cached: c, rc: rc}
	p.touch(e)
	p.entries = append(p.entries, e)
	p.used += size
}

// dropStale frees the entries computed with other weights.
func (p *prefixStore) dropStale(weights int64) {
	kept := p.entries[:0]
	for _, e := range p.entries {
		if e.weights != weights {
			p.free(e)
			continue
		}
		kept = append(kept, e)
	}
	p.entries = kept
}

func (p *prefixStore) free(e *storedPrefix) {
	p.used -= e.rc.Bytes()
	e.rc.Free()
}

// close frees every entry.
func (p *prefixStore) close() {
	for _, e := range p.entries {
		p.free(e)
	}
	p.entries = nil
}
