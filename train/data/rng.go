package data

import "math/bits"

// rng is SplitMix64: tiny, fast, and defined here so that shuffles and
// synthetic documents stay the same across Go releases (math/rand makes no
// such promise for its helpers).
type rng struct{ s uint64 }

// newRNG mixes the seed words into one stream: newRNG(seed, epoch) and
// newRNG(seed, example) give independent streams.
func newRNG(words ...uint64) *rng {
	r := &rng{s: 0x243f6a8885a308d3}
	for _, w := range words {
		r.s ^= w
		r.s = r.next()
	}
	return r
}

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// intn is uniform in [0, n) (Lemire's multiply-and-reject), n > 0.
func (r *rng) intn(n int) int {
	un := uint64(n)
	hi, lo := bits.Mul64(r.next(), un)
	if lo < un {
		thresh := -un % un
		for lo < thresh {
			hi, lo = bits.Mul64(r.next(), un)
		}
	}
	return int(hi)
}

// between is uniform in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// float64 is uniform in [0, 1).
func (r *rng) float64() float64 { return float64(r.next()>>11) / (1 << 53) }

// pick returns a uniformly chosen element.
func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }

// permutation returns a uniformly shuffled 0..n-1 (Fisher–Yates).
func (r *rng) permutation(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}
