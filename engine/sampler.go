package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/dsv32/dsv32/model"
)

// SampleParams choose how tokens are drawn from the model's logits.
// The zero value is greedy decoding with no limit but the context.
type SampleParams struct {
	Temperature      float64 // 0: greedy (argmax)
	TopP             float64 // nucleus: keep the smallest set with mass ≥ TopP (0 or 1: off)
	TopK             int     // keep the TopK most likely tokens (0: off)
	MinP             float64 // keep tokens with p ≥ MinP·p_max (0: off)
	PresencePenalty  float64 // subtracted from the logit of every token generated so far
	FrequencyPenalty float64 // times the count of each token generated so far
	Seed             uint64  // with HasSeed: same seed and request → same tokens, drawn on the device or here (model.SeededGumbel)
	HasSeed          bool
	MaxTokens        int       // tokens to generate (0: up to the context)
	StopTokens       []int32   // finish when one of these is generated (it is kept in the output)
	StopSequences    [][]int32 // finish when the output ends with one of these
	Logprobs         bool      // fill Token.Logprob also when decoding greedily
	TopLogprobs      int       // alternatives to report per token (0–20)
}

// Validate names the first bad field.
func (p *SampleParams) Validate() error {
	switch {
	case p.Temperature < 0 || math.IsNaN(p.Temperature) || p.Temperature > 100:
		return fmt.Errorf("temperature %g: must be in [0, 100]", p.Temperature)
	case p.TopP < 0 || p.TopP > 1 || math.IsNaN(p.TopP):
		return fmt.Errorf("top_p %g: must be in [0, 1]", p.TopP)
	case p.TopK < 0:
		return fmt.Errorf("top_k %d: must not be negative", p.TopK)
	case p.MinP < 0 || p.MinP > 1 || math.IsNaN(p.MinP):
		return fmt.Errorf("min_p %g: must be in [0, 1]", p.MinP)
	case math.Abs(p.PresencePenalty) > 2 || math.IsNaN(p.PresencePenalty):
		return fmt.Errorf("presence_penalty %g: must be in [-2, 2]", p.PresencePenalty)
	case math.Abs(p.FrequencyPenalty) > 2 || math.IsNaN(p.FrequencyPenalty):
		return fmt.Errorf("frequency_penalty %g: must be in [-2, 2]", p.FrequencyPenalty)
	case p.MaxTokens < 0:
		return fmt.Errorf("max_tokens %d: must not be negative", p.MaxTokens)
	case p.TopLogprobs < 0 || p.TopLogprobs > 20:
		return fmt.Errorf("top_logprobs %d: must be in [0, 20]", p.TopLogprobs)
	}
	return nil
}

// truncates reports whether sampling keeps only part of the vocabulary.
func (p *SampleParams) truncates() bool {
	return p.Temperature > 0 && ((p.TopP > 0 && p.TopP < 1) || p.TopK > 0 || p.MinP > 0)
}

// TokenLogprob is one candidate token and its log-probability.
type TokenLogprob struct {
	ID      int32
	Logprob float32
}

// Token is one generated token and what RL and `logprobs` need about it.
type Token struct {
	ID int32
	// Logprob is log π(ID) under the model's own distribution (temperature 1,
	// no penalties, no truncation): what OpenAI's `logprobs` reports. Greedy
	// decoding fills it only when asked (Logprobs or TopLogprobs).
	Logprob float32
	// SampleLogprob is log-probability under the distribution actually
	// sampled from: temperature, penalties and truncation, renormalised over
	// the kept set (0 for greedy). RL's π_old with the sampling mask (rl.md §6).
	SampleLogprob float32
	// Top are the TopLogprobs most likely tokens under the model's distribution.
	Top []TokenLogprob
	// Kept is the sorted set of token ids the truncation kept (top-k, top-p,
	// min-p), when the request records it and sampling truncates.
	Kept []int32
}

// sampler draws tokens for one request.
type sampler struct {
	p      SampleParams
	rng    *rand.Rand
	counts map[int32]int // generated tokens so far, for penalties
	drawn  int           // tokens drawn so far: the index of a seeded draw's noise
	kept   bool          // record kept sets
	// scratch, reused from token to token
	order   []int32   // truncation candidates
	all     []int32   // 0…V−1
	model   []float64 // log π
	modelEx []float64 // exp(log π + log z): π unnormalised, from the same pass
	probs   []float64 // tempered, penalised log-probabilities
	probsEx []float64 // theirs, unnormalised likewise
	ex      []float64 // the unnormalised probabilities of the kept set
	adj     []float32 // penalised logits
}

func (s *sampler) penalises() bool {
	return len(s.counts) > 0 && (s.p.FrequencyPenalty != 0 || s.p.PresencePenalty != 0)
}

// truncate returns the tokens top-k, then min-p, then top-p keep, in
// descending probability (ties: lower id first). Each of the three reads
// only a prefix of that order, and the tokens at or above a threshold are
// such a prefix, so only they are sorted: the threshold starts 8 nats under
// the maximum and is lowered until the prefix decides the cut, which gives
// exactly what sorting the whole vocabulary would, at O(V) instead of
// O(V log V) (V is 129,280 for DeepSeek-V3.2).
func (s *sampler) truncate(lp []float64) []int32 {
	mx := math.Inf(-1)
	for _, v := range lp {
		if v > mx { // plain comparisons: the builtin max checks for NaN at every entry
			mx = v
		}
	}
	for _, gap := range []float64{8, 16, 32, 64, 256, math.Inf(1)} {
		thr, all := mx-gap, math.IsInf(gap, 1)
		s.order = s.order[:0]
		for i, v := range lp {
			if v >= thr || all {
				s.order = append(s.order, int32(i))
			}
		}
		sort.SliceStable(s.order, func(a, b int) bool { return lp[s.order[a]] > lp[s.order[b]] })
		if keep, ok := s.p.cut(lp, s.order, len(lp)); ok {
			return s.order[:keep]
		}
	}
	panic("unreachable: the last threshold keeps every token")
}

// cut applies top-k, min-p and top-p, in that order, to the candidates
// sorted by descending lp, a prefix of all V tokens so sorted. ok is false
// when the prefix is too short to decide.
func (p *SampleParams) cut(lp []float64, sorted []int32, V int) (keep int, ok bool) {
	if len(sorted) == 0 {
		return 0, false // no candidate at or above the threshold (NaN logits)
	}
	whole := len(sorted) == V
	keep = V
	if p.TopK > 0 {
		keep = min(keep, p.TopK)
	}
	if p.MinP > 0 {
		floor := lp[sorted[0]] + math.Log(p.MinP)
		n := 0
		for n < keep && n < len(sorted) && lp[sorted[n]] >= floor {
			n++
		}
		if n == len(sorted) && n < keep && !whole {
			return 0, false
		}
		keep = max(n, 1)
	}
	if p.TopP > 0 && p.TopP < 1 {
		var mass float64
		n := 0
		for n < keep {
			if n == len(sorted) {
				return 0, false // only when !whole: keep ≤ V
			}
			mass += math.Exp(lp[sorted[n]])
			n++
			if mass >= p.TopP {
				break
			}
		}
		keep = n
	}
	if keep > len(sorted) {
		return 0, false
	}
	return keep, true
}

func newSampler(p SampleParams, recordKept bool, fallbackSeed uint64) *sampler {
	seed := fallbackSeed
	if p.HasSeed {
		seed = p.Seed
	}
	return &sampler{p: p, rng: rand.New(rand.NewPCG(seed, 0x5851f42d4c957f2d)), counts: map[int32]int{}, kept: recordKept}
}

// vocabChunk is how many vocabulary entries one goroutine reduces. A pass
// of exp over V3.2's 129,280 entries takes milliseconds, on the critical
// path of every token at batch 1, so large vocabularies are reduced in
// chunks on several cores. The chunks are fixed and their partial results
// combined in order, so the result does not depend on the number of cores
// (and a vocabulary of one chunk is reduced exactly as a plain loop would).
const vocabChunk = 16384

// chunked runs f on [lo, hi) chunks of n entries, concurrently when there
// are several, and returns one partial result per chunk, in order.
func chunked(n int, f func(lo, hi int) float64) []float64 {
	parts := make([]float64, (n+vocabChunk-1)/vocabChunk)
	if len(parts) == 1 || runtime.GOMAXPROCS(0) == 1 {
		for c := range parts {
			parts[c] = f(c*vocabChunk, min(n, (c+1)*vocabChunk))
		}
		return parts
	}
	var wg sync.WaitGroup
	for c := range parts {
		wg.Go(func() { parts[c] = f(c*vocabChunk, min(n, (c+1)*vocabChunk)) })
	}
	wg.Wait()
	return parts
}

// logSoftmax writes log-softmax(x / temp) into dst (float64) and returns it.
func logSoftmax(dst []float64, x []float32, temp float64) []float64 {
	dst, _, _ = logSoftmaxExp(dst, nil, x, temp)
	return dst
}

// logSoftmaxExp is logSoftmax that also keeps, in ex (when not nil), each
// entry's exp(x/temp − max): the probabilities times exp(ls), ls the log of
// their sum, so that drawing from them needs no second pass of exp over the
// vocabulary.
func logSoftmaxExp(dst, ex []float64, x []float32, temp float64) (lp, e []float64, ls float64) {
	keep := ex != nil
	dst = slices.Grow(dst[:0], len(x))[:len(x)]
	if keep {
		ex = slices.Grow(ex[:0], len(x))[:len(x)]
	}
	// The largest logit, by plain comparisons on the float32 logits (a NaN
	// never wins; math.Max is a call per entry), scaled once: temp > 0.
	mx := math.Inf(-1)
	for _, m := range chunked(len(x), func(lo, hi int) float64 {
		m := float32(math.Inf(-1))
		for _, v := range x[lo:hi] {
			if v > m {
				m = v
			}
		}
		return float64(m) / temp
	}) {
		mx = max(mx, m)
	}
	var sum float64
	for _, part := range chunked(len(x), func(lo, hi int) float64 {
		var sum float64
		for i := lo; i < hi; i++ {
			d := float64(x[i])/temp - mx
			dst[i] = d
			e := math.Exp(d)
			if keep {
				ex[i] = e
			}
			sum += e
		}
		return sum
	}) {
		sum += part
	}
	ls = math.Log(sum)
	for i := range dst {
		dst[i] -= ls
	}
	return dst, ex, ls
}

// next draws the next token from logits [V].
// draw is how the device draws this sampler's tokens (model.Stepper.Chain,
// ChainSample): greedy decoding, or sampling with temperature, penalties,
// top-k, min-p and top-p from the same distribution as here. Unseeded
// draws take the device's random stream; seeded ones the seed's noise, as
// here, so a seed gives the same tokens whichever draws them. The device
// reports each token's log-probability (Logprobs) and the likeliest
// alternatives (TopLogprobs), in float32.
func (s *sampler) draw() model.Draw {
	if s.p.Temperature == 0 {
		return model.Draw{Top: s.p.TopLogprobs}
	}
	d := model.Draw{Temperature: float32(s.p.Temperature), TopK: s.p.TopK, MinP: float32(s.p.MinP), TopP: float32(s.p.TopP),
		Top: s.p.TopLogprobs, Presence: float32(s.p.PresencePenalty), Frequency: float32(s.p.FrequencyPenalty)}
	if d.Presence != 0 || d.Frequency != 0 {
		d.Counts = s.counts // read while the chain is made, before take adds its tokens
	}
	if s.p.HasSeed {
		d.Seeded, d.Seed, d.Drawn = true, s.p.Seed, s.drawn
	}
	return d
}

// wantsLogprob reports whether a greedy token must carry its log-
// probability or alternatives, which only ChainSample computes on the
// device.
func (s *sampler) wantsLogprob() bool { return s.p.Logprobs || s.p.TopLogprobs > 0 }

// take records a token the device drew (see draw), as next would have:
// a greedy token carries its log-probability only when asked.
func (s *sampler) take(t Token) Token {
	if s.p.Temperature == 0 {
		t = Token{ID: t.ID, Logprob: t.Logprob, Top: t.Top}
		if !s.wantsLogprob() {
			t.Logprob = 0
		}
	}
	s.counts[t.ID]++
	s.drawn++
	return t
}

func (s *sampler) next(logits []float32) Token {
	V := len(logits)
	var tok Token
	if s.p.Temperature == 0 {
		// Greedy: argmax, and the log-normaliser in one pass each.
		best := 0
		for i, v := range logits {
			if v > logits[best] {
				best = i
			}
		}
		tok.ID = int32(best)
		if s.p.Logprobs || s.p.TopLogprobs > 0 {
			var sum float64
			mx := float64(logits[best])
			for _, v := range logits {
				sum += math.Exp(float64(v) - mx)
			}
			tok.Logprob = float32(-math.Log(sum))
		}
		if k := s.p.TopLogprobs; k > 0 {
			s.model = logSoftmax(s.model, logits, 1)
			tok.Top = topN(s.model, k)
		}
		s.counts[tok.ID]++
		s.drawn++
		return tok
	}
	if s.modelEx == nil {
		s.modelEx = []float64{}
	}
	var ls float64 // log of the sum of lpEx
	s.model, s.modelEx, ls = logSoftmaxExp(s.model, s.modelEx, logits, 1)
	model := s.model
	if k := s.p.TopLogprobs; k > 0 {
		tok.Top = topN(model, k)
	}

	// Penalised, tempered log-probabilities; without penalties at τ = 1 they
	// are the model's own, computed once.
	lp, lpEx := model, s.modelEx
	if s.p.Temperature != 1 || s.penalises() {
		adj := logits
		if s.penalises() {
			s.adj = append(s.adj[:0], logits...)
			adj = s.adj
			for id, n := range s.counts {
				adj[id] -= float32(s.p.FrequencyPenalty*float64(n) + s.p.PresencePenalty)
			}
		}
		if s.probsEx == nil {
			s.probsEx = []float64{}
		}
		s.probs, s.probsEx, ls = logSoftmaxExp(s.probs, s.probsEx, adj, s.p.Temperature)
		lp, lpEx = s.probs, s.probsEx
	}

	// The kept tokens, in descending probability (ties: lower id first).
	keep := V
	var kept []int32
	if s.p.truncates() {
		kept = s.truncate(lp)
		keep = len(kept)
	} else {
		if len(s.all) != V {
			s.all = make([]int32, V)
			for i := range s.all {
				s.all[i] = int32(i)
			}
		}
		kept = s.all
	}
	s.ex = slices.Grow(s.ex[:0], len(kept))[:len(kept)]
	var z float64
	for _, part := range chunked(len(kept), func(lo, hi int) float64 {
		var z float64
		for j := lo; j < hi; j++ {
			e := lpEx[kept[j]]
			s.ex[j] = e
			z += e
		}
		return z
	}) {
		z += part
	}
	var choice int32
	if s.p.HasSeed {
		choice = s.seededChoice(kept, lp)
	} else {
		u := s.rng.Float64() * z
		choice = kept[len(kept)-1]
		var acc float64
		for j, id := range kept {
			acc += s.ex[j]
			if u < acc {
				choice = id
				break
			}
		}
	}
	tok.ID = choice
	tok.Logprob = float32(model[choice])
	tok.SampleLogprob = float32(lp[choice] + ls - math.Log(z)) // z is the kept mass times exp(ls)
	if s.kept && keep < V {
		tok.Kept = slices.Clone(kept)
		slices.Sort(tok.Kept)
	}
	s.counts[choice]++
	s.drawn++
	return tok
}

// seededChoice draws a seeded request's token from kept, given the
// log-probabilities lp: the Gumbel-max with the seed's noise for this draw
// (model.SeededGumbel), in float32 as the device draws it, so that a
// seeded request gets the same tokens in chains on the device and in steps
// here (but where two scores are within float32 rounding).
func (s *sampler) seededChoice(kept []int32, lp []float64) int32 {
	key, t := model.SeedKey(s.p.Seed), uint32(s.drawn)
	type best struct {
		id    int32
		score float32
	}
	// The likeliest token's score is a floor for the winner's; the noise is
	// at most model.MaxSeededGumbel, so tokens less likely than that floor
	// by more cannot win and need no noise: most of a peaked distribution.
	top := kept[0]
	for _, id := range kept {
		if lp[id] > lp[top] {
			top = id
		}
	}
	floor := float32(lp[top]) + model.SeededGumbel(key, t, top)
	n := len(kept)
	parts := make([]best, (n+vocabChunk-1)/vocabChunk)
	chunked(n, func(lo, hi int) float64 {
		b := best{top, floor}
		for _, id := range kept[lo:hi] {
			l := float32(lp[id])
			if l+model.MaxSeededGumbel < b.score {
				continue
			}
			if v := l + model.SeededGumbel(key, t, id); v > b.score || (v == b.score && id < b.id) {
				b = best{id, v}
			}
		}
		parts[lo/vocabChunk] = b
		return 0
	})
	b := parts[0]
	for _, p := range parts[1:] {
		if p.score > b.score || (p.score == b.score && p.id < b.id) {
			b = p
		}
	}
	return b.id
}

// topN returns the n largest log-probabilities (ties: lower id first).
func topN(lp []float64, n int) []TokenLogprob {
	n = min(n, len(lp))
	top := make([]TokenLogprob, 0, n+1)
	for i, v := range lp {
		if len(top) == n && float32(v) <= top[n-1].Logprob {
			continue
		}
		t := TokenLogprob{ID: int32(i), Logprob: float32(v)}
		at := sort.Search(len(top), func(j int) bool { return top[j].Logprob < t.Logprob })
		top = slices.Insert(top, at, t)
		if len(top) > n {
			top = top[:n]
		}
	}
	return top
}
