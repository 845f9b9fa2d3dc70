package model

import (
	"math"

	"github.com/gomlx/compute"
	"github.com/gomlx/compute/dtypes"
	"github.com/gomlx/compute/shapes"
	"github.com/gomlx/gomlx/core/graph"
	gm "github.com/gomlx/gomlx/ml/model"
)

// Multi-head Latent Attention with DSA (dsa.md §3–4). Axes: B batch, T new
// tokens (queries), S keys, H heads; d_n, d_r, d_v, r_q, r_kv as in the spec.

// LayerCache is one layer's cache: what later queries need and nothing more
// (dsa.md §8). KV [B, C, r_kv+d_r] is c after kv_a_layernorm followed by k_pe
// after RoPE (one buffer, so a step writes it once, DSA gathers it once and
// one product scores both parts), IndexKey [B, C, d_I] the indexer key after
// LayerNorm and RoPE (absent without an indexer). C is the capacity; slot s
// holds the token at position s.
//
// The nodes may hold their values' bits as integers of the same width
// (words; see wordDType): the stepper keeps them so on XLA, where a cache
// updated through a bitcast is copied instead of written in place.
type LayerCache struct {
	KV, IndexKey *graph.Node
}

// layerOut is what one attention call produces besides its output.
type layerOut struct {
	topK      *graph.Node // [B, T, k'] int32 indexer selection (nil in dense mode without indexer)
	cache     *LayerCache // updated cache (nil without one)
	indexerKL *graph.Node // scalar Σ_t KL(p_t ‖ softmax(I_t)) when asked for
}

// attention runs MLA for the new tokens x [B, T, D] (already normed) at
// absolute positions pos [B, T]; with a cache, their keys are written into it
// first and the queries read the whole cache. Returns [B, T, D].
func attention(scope *gm.Scope, cfg *Config, x, pos, cos, sin *graph.Node, cache *LayerCache, opts *Options) (*graph.Node, layerOut) {
	g := x.Graph()
	dims := x.Shape().Dimensions
	B, T := dims[0], dims[1]
	H, dn, dr, dv, rkv := cfg.NumHeads, cfg.QKNopeHeadDim, cfg.QKRopeHeadDim, cfg.VHeadDim, cfg.KVLoRARank
	var res layerOut

	// Queries.
	qr := rmsNorm(scope.At("q_a_layernorm"), linear(scope.At("q_a_proj"), x, cfg.QLoRARank), cfg.RMSNormEps) // [B, T, r_q]
	q := graph.Reshape(linear(scope.At("q_b_proj"), qr, H*cfg.QKHeadDim()), B, T, H, cfg.QKHeadDim())        // [B, T, H, d_qk]
	qNope := graph.SliceAxis(q, -1, graph.AxisRange(0, dn))                                                  // [B, T, H, d_n]
	qPE := ropeInterleaved(graph.SliceAxis(q, -1, graph.AxisRangeToEnd(dn)), cos, sin)                       // [B, T, H, d_r]

	// Keys of the new tokens: the latent and the shared rope key.
	kv := linear(scope.At("kv_a_proj_with_mqa"), x, rkv+dr)                                                      // [B, T, r_kv+d_r]
	cKV := rmsNorm(scope.At("kv_a_layernorm"), graph.SliceAxis(kv, -1, graph.AxisRange(0, rkv)), cfg.RMSNormEps) // [B, T, r_kv]
	kPE := ropeInterleaved(graph.SliceAxis(kv, -1, graph.AxisRangeToEnd(rkv)), cos, sin)                         // [B, T, d_r]
	var kIdx *graph.Node
	if cfg.HasIndexer() {
		kIdx = indexerKeys(scope.At("indexer"), cfg, graph.StopGradient(x), cos, sin) // [B, T, d_I]
	}

	// All keys the queries may read, and whether each is causal for each query.
	keysC, keysPE, keysIdx := cKV, kPE, kIdx
	var keysKV *graph.Node // [B, S, r_kv+d_r], with a cache
	var keyPos *graph.Node // [B or 1, S]
	if cache != nil {
		w := newCacheWriter(pos, opts.RowWrites)
		res.cache = &LayerCache{}
		res.cache.KV, keysKV = w.write(cache.KV, graph.Concatenate([]*graph.Node{cKV, kPE}, -1))
		if kIdx != nil {
			res.cache.IndexKey, keysIdx = w.write(cache.IndexKey, kIdx)
		}
		keyPos = graph.Iota(g, shapes.Make(dtypes.Int32, 1, keysKV.Shape().Dim(1)), 1)
	} else {
		keyPos = pos
	}
	S := keyPos.Shape().Dim(1)
	allowed := causalMask(keyPos, pos, opts.Segments) // [B, T, S]

	// The indexer's choice.
	var idxScores, selected *graph.Node
	sparse := cfg.HasIndexer() && !opts.Dense
	if cfg.HasIndexer() && (sparse || opts.CaptureTopK || opts.IndexerLoss != NoIndexerLoss) {
		idxScores = indexerScores(scope.At("indexer"), cfg, x, qr, keysIdx, allowed, cos, sin) // [B, T, S]
		var sel *graph.Node
		method := topKRadix
		switch {
		case opts.NativeTopK && opts.DigitTopK && idxScores.Shape().Dim(1) == 1:
			method = topKDigits
		case opts.NativeTopK:
			method = topKNative
		}
		res.topK, sel = selectTopK(idxScores, cfg.IndexTopK, method) // [B, T, k'], [B, T, S]
		if sparse && res.topK.Shape().Dim(-1) < S {
			selected = sel
		}
	}
	mask := allowed
	if selected != nil {
		mask = graph.LogicalAnd(allowed, selected)
	}

	// Main attention, in one of its equivalent forms.
	scale := cfg.SoftmaxScale()
	kvb := weight(scope.At("kv_b_proj"), g, x.DType(), nil, "weight", H*(dn+dv), rkv) // [H·(d_n+d_v), r_kv]
	var o, probs *graph.Node
	switch {
	case cache == nil:
		o, probs = attendExpanded(kvb, cfg, qNope, qPE, keysC, keysPE, mask, scale)
	case sparse && selected != nil && opts.IndexerLoss == NoIndexerLoss:
		// With a cache, read only the k' selected latents per query: O(T·k), not O(T·S).
		o = attendGathered(kvb, cfg, qNope, qPE, keysKV, pickedAllowed(allowed, pos, res.topK, opts.Segments), res.topK, scale)
	default:
		o, probs = attendAbsorbed(kvb, cfg, qNope, qPE, keysKV, mask, scale)
	}
	out := linear(scope.At("o_proj"), graph.Reshape(o, B, T, H*dv), cfg.HiddenSize) // [B, T, D]

	if opts.IndexerLoss != NoIndexerLoss && idxScores != nil {
		keySet := allowed
		if opts.IndexerLoss == SparseIndexerLoss {
			keySet = mask
		}
		res.indexerKL = indexerKL(probs, idxScores, keySet, opts.TokenMask)
	}
	return out, res
}

// writeCoords returns the cache slots (b, pos[b,t]) of the new tokens: [B, T, 2].
func writeCoords(pos *graph.Node) *graph.Node {
	dims := pos.Shape().Dimensions
	b := graph.Iota(pos.Graph(), shapes.Make(dtypes.Int32, dims[0], dims[1], 1), 0)
	return graph.Concatenate([]*graph.Node{b, graph.ExpandAxes(graph.ConvertDType(pos, dtypes.Int32), -1)}, -1)
}

// slotWrite is how cache slots are overwritten. graph.ScatterUpdate costs two
// scatters plus a mask and a select over the whole cache per write; these
// touch only the written slots, so the write stays in place in a donated
// buffer and its cost does not grow with the capacity.
type slotWrite int

const (
	// writeSlice: one DynamicUpdateSlice (one slot: decode at batch 1).
	writeSlice slotWrite = iota
	// writeRows: one DynamicUpdateSlice per row (one slot each: decode at
	// batch B, with Options.RowWrites).
	writeRows
	// writeBits: scatter-add new−old on the integer view of the bits, with
	// wrap-around: exactly new, in one scatter. For backends whose Bitcast is
	// free (XLA).
	writeBits
	// writeZeroAdd: scatter-add −old, then new: exactly new for finite old
	// values (−0 becomes +0). For the Go backend, which has no
	// DynamicUpdateSlice and whose Bitcast between float and int copies.
	writeZeroAdd
)

// cacheWriter writes the new tokens' rows into caches [B, C, W] at slots
// pos [B, T] (distinct within a row).
type cacheWriter struct {
	mode slotWrite
	at   *graph.Node     // [B, T, 2] slots, for the scatter modes
	dus  [][]*graph.Node // start indices of each row's slot, for writeSlice and writeRows
}

func newCacheWriter(pos *graph.Node, rowWrites bool) *cacheWriter {
	g := pos.Graph()
	dims := pos.Shape().Dimensions
	hasDUS := g.Backend().Capabilities().Operations[compute.OpTypeDynamicUpdateSlice]
	switch {
	case hasDUS && dims[1] == 1 && (dims[0] == 1 || rowWrites):
		zero := graph.ScalarZero(g, dtypes.Int32)
		p := graph.ConvertDType(pos, dtypes.Int32) // [B, 1]
		w := &cacheWriter{mode: writeSlice}
		if dims[0] > 1 {
			w.mode = writeRows
		}
		for b := range dims[0] {
			row := graph.Reshape(graph.Slice(p, graph.AxisElem(b), graph.AxisRange())) // []
			w.dus = append(w.dus, []*graph.Node{graph.Scalar(g, dtypes.Int32, b), row, zero})
		}
		return w
	case hasDUS:
		return &cacheWriter{mode: writeBits, at: writeCoords(pos)}
	default:
		return &cacheWriter{mode: writeZeroAdd, at: writeCoords(pos)}
	}
}

// write returns cache with upd [B, T, W] written at the writer's slots, as
// stored (cache's dtype) and as keys to read (upd's dtype). A cache of words
// is written as words, so the buffer the step was given is the one it
// updates; the keys are a bitcast of the result.
func (w *cacheWriter) write(cache, upd *graph.Node) (stored, keys *graph.Node) {
	dt := upd.DType()
	words := cache.DType() != dt
	if words {
		upd = graph.Bitcast(upd, cache.DType())
	}
	switch w.mode {
	case writeSlice:
		stored = graph.DynamicUpdateSlice(cache, upd, w.dus[0])
	case writeRows:
		stored = cache
		for b, start := range w.dus {
			stored = graph.DynamicUpdateSlice(stored, graph.Slice(upd, graph.AxisElem(b)), start) // [1, 1, W] at (b, pos[b])
		}
	default:
		stored = overwrite(cache, w.at, upd, nil, w.mode)
	}
	if words {
		return stored, graph.Bitcast(stored, dt)
	}
	return stored, stored
}

// wordDType is the integer type of dt's width, the type of a cache kept as
// words (false for widths without one).
func wordDType(dt dtypes.DType) (dtypes.DType, bool) {
	switch dt.Size() {
	case 2:
		return dtypes.Int16, true
	case 4:
		return dtypes.Int32, true
	case 8:
		return dtypes.Int64, true
	}
	return dt, false
}

// overwrite is ScatterUpdate(operand, at, upd) for unique indices at, by
// writeBits or writeZeroAdd; it reads only the slots it writes. old, when
// given, is Gather(operand, at), already at hand.
func overwrite(operand, at, upd, old *graph.Node, mode slotWrite) *graph.Node {
	if mode == writeBits {
		it, ok := wordDType(operand.DType())
		if !ok {
			mode = writeZeroAdd
		} else {
			// Integers (words) are written as they are; floats through their bits.
			bits, updBits, oldBits := operand, upd, old
			if !operand.DType().IsInt() {
				bits, updBits = graph.Bitcast(operand, it), graph.Bitcast(upd, it)
				if old != nil {
					oldBits = graph.Bitcast(old, it)
				}
			}
			if oldBits == nil {
				oldBits = graph.Gather(bits, at)
			}
			written := graph.ScatterSum(bits, at, graph.Sub(updBits, oldBits), false, true)
			if operand.DType().IsInt() {
				return written
			}
			return graph.Bitcast(written, operand.DType())
		}
	}
	if old == nil {
		old = graph.Gather(operand, at)
	}
	cleared := graph.ScatterSum(operand, at, graph.Neg(old), false, true)
	return graph.ScatterSum(cleared, at, upd, false, true)
}

// causalMask is keyPos[b,s] ≤ pos[b,t] (and the same segment, when segments
// are given for packed training rows): [B, T, S].
func causalMask(keyPos, pos, segments *graph.Node) *graph.Node {
	kp := graph.ExpandAxes(graph.ConvertDType(keyPos, dtypes.Int32), 1) // [B|1, 1, S]
	qp := graph.ExpandAxes(graph.ConvertDType(pos, dtypes.Int32), -1)   // [B, T, 1]
	m := graph.LessOrEqual(kp, qp)                                      // [B, T, S]
	if segments != nil {
		seg := graph.ConvertDType(segments, dtypes.Int32)
		m = graph.LogicalAnd(m, graph.Equal(graph.ExpandAxes(seg, 1), graph.ExpandAxes(seg, -1)))
	}
	return m
}

// maskedSoftmax is softmax over the last axis of scores where mask holds.
// Masked entries get the dtype's lowest finite value, as transformers does,
// so a row with no allowed key stays finite.
// The softmax runs in float32 whatever the weights' dtype, as transformers'
// eager attention does.
func maskedSoftmax(scores, mask *graph.Node) *graph.Node {
	dt := scores.DType()
	s32 := graph.ConvertDType(scores, dtypes.Float32)
	s32 = graph.Where(graph.BroadcastToDims(mask, scores.Shape().Dimensions...), s32, lowest(scores.Graph(), dtypes.Float32))
	return graph.ConvertDType(graph.Softmax(s32, -1), dt)
}

// attendExpanded is the expanded form (training and prefill): per-head keys
// and values from W_kvb · c. Returns o [B, T, H, d_v] and P [B, H, T, S].
func attendExpanded(kvb *graph.Node, cfg *Config, qNope, qPE, keysC, keysPE, mask *graph.Node, scale float64) (*graph.Node, *graph.Node) {
	H, dn, dv := cfg.NumHeads, cfg.QKNopeHeadDim, cfg.VHeadDim
	dims := keysC.Shape().Dimensions
	B, S := dims[0], dims[1]
	kvh := graph.DotGeneral(keysC, []int{2}, nil, kvb, []int{1}, nil) // [B, S, H·(d_n+d_v)]
	kvh = graph.Reshape(kvh, B, S, H, dn+dv)                          // [B, S, H, d_n+d_v]
	kNope := graph.SliceAxis(kvh, -1, graph.AxisRange(0, dn))         // [B, S, H, d_n]
	v := graph.SliceAxis(kvh, -1, graph.AxisRangeToEnd(dn))           // [B, S, H, d_v]
	scores := graph.Add(
		graph.Einsum("bthd,bshd->bhts", qNope, kNope),
		graph.Einsum("bthr,bsr->bhts", qPE, keysPE)) // [B, H, T, S]
	scores = graph.MulScalar(scores, scale)
	p := maskedSoftmax(scores, graph.ExpandAxes(mask, 1)) // [B, H, T, S]
	_ = dv
	return graph.Einsum("bhts,bshd->bthd", p, v), p // [B, T, H, d_v]
}

// absorbedWeights splits W_kvb into W_UK [H, d_n, r_kv] and W_UV [H, d_v, r_kv].
func absorbedWeights(kvb *graph.Node, cfg *Config) (wUK, wUV *graph.Node) {
	H, dn, dv, rkv := cfg.NumHeads, cfg.QKNopeHeadDim, cfg.VHeadDim, cfg.KVLoRARank
	w := graph.Reshape(kvb, H, dn+dv, rkv)
	return graph.SliceAxis(w, 1, graph.AxisRange(0, dn)), graph.SliceAxis(w, 1, graph.AxisRangeToEnd(dn))
}

// attendAbsorbed is the absorbed form (decode): queries move into latent
// space, so the cached latents serve every head ("MQA mode", dsa.md §3.4).
// keys [B, S, r_kv+d_r] are the cache's latents and rope keys side by side.
// Returns o [B, T, H, d_v] and P [B, H, T, S].
func attendAbsorbed(kvb *graph.Node, cfg *Config, qNope, qPE, keys, mask *graph.Node, scale float64) (*graph.Node, *graph.Node) {
	wUK, wUV := absorbedWeights(kvb, cfg)
	q := absorbedQuery(qNope, qPE, wUK)                                                                      // [B, T, H, r_kv+d_r]
	scores := graph.MulScalar(graph.Einsum("bthc,bsc->bhts", q, keys), scale)                                // [B, H, T, S]
	p := maskedSoftmax(scores, graph.ExpandAxes(mask, 1))                                                    // [B, H, T, S]
	oLat := graph.Einsum("bhts,bsc->bthc", p, graph.SliceAxis(keys, -1, graph.AxisRange(0, cfg.KVLoRARank))) // [B, T, H, r_kv]
	return graph.Einsum("bthc,hvc->bthv", oLat, wUV), p                                                      // [B, T, H, d_v]
}

// absorbedQuery is [q_nope·W_UK | q_pe]: the query against a cached
// [latent | rope key], so one product gives both parts of each score.
func absorbedQuery(qNope, qPE, wUK *graph.Node) *graph.Node {
	qHat := graph.Einsum("bthn,hnc->bthc", qNope, wUK) // [B, T, H, r_kv]
	return graph.Concatenate([]*graph.Node{qHat, qPE}, -1)
}

// pickedAllowed is allowed [B, T, S] at the picked keys idx [B, T, k'] of a
// cache (key s at position s): [B, T, k']. Without segments that is
// idx ≤ pos, computed directly rather than gathered.
func pickedAllowed(allowed, pos, idx, segments *graph.Node) *graph.Node {
	if segments == nil {
		return graph.LessOrEqual(idx, graph.ExpandAxes(graph.ConvertDType(pos, dtypes.Int32), -1))
	}
	g := idx.Graph()
	dims := idx.Shape().Dimensions
	B, T, K := dims[0], dims[1], dims[2]
	full := shapes.Make(dtypes.Int32, B, T, K, 1)
	return graph.Gather(allowed, graph.Concatenate([]*graph.Node{
		graph.Iota(g, full, 0), graph.Iota(g, full, 1), graph.Reshape(idx, B, T, K, 1)}, -1))
}

// attendGathered is DSA's O(k) decode: only the k' selected latents are read.
// idx [B, T, k'] are the indexer's picks; ok [B, T, k'] whether each is causal.
// Returns o [B, T, H, d_v].
func attendGathered(kvb *graph.Node, cfg *Config, qNope, qPE, keys, ok, idx *graph.Node, scale float64) *graph.Node {
	sel := gatherKeys(keys, idx) // [B, T, k', r_kv+d_r]
	wUK, wUV := absorbedWeights(kvb, cfg)
	q := absorbedQuery(qNope, qPE, wUK)                                       // [B, T, H, r_kv+d_r]
	scores := graph.MulScalar(graph.Einsum("bthc,btkc->bthk", q, sel), scale) // [B, T, H, k']
	p := maskedSoftmax(scores, graph.ExpandAxes(ok, 2))                       // [B, T, H, k']
	// Weighting every column of the selected keys and dropping the rope part
	// after costs a quarter more of a small product, where slicing the keys
	// first would copy all of them (one more kernel per layer and step).
	oSel := graph.Einsum("bthk,btkc->bthc", p, sel)                       // [B, T, H, r_kv+d_r]
	oLat := graph.SliceAxis(oSel, -1, graph.AxisRange(0, cfg.KVLoRARank)) // [B, T, H, r_kv]
	return graph.Einsum("bthc,hvc->bthv", oLat, wUV)                      // [B, T, H, d_v]
}

// gatherKeys returns keys [B, S, W] at idx [B, T, k']: [B, T, k', W]. The
// keys are read as one [B·S, W] table at b·S + idx, so the indices need no
// concatenated batch coordinate (at batch 1 they are idx itself).
func gatherKeys(keys, idx *graph.Node) *graph.Node {
	kd, dims := keys.Shape().Dimensions, idx.Shape().Dimensions
	B, S, W := kd[0], kd[1], kd[2]
	flat := idx
	if B > 1 {
		base := graph.Iota(idx.Graph(), shapes.Make(dtypes.Int32, dims...), 0)
		flat = graph.Add(idx, graph.MulScalar(base, float64(S)))
	}
	return graph.Gather(graph.Reshape(keys, B*S, W), graph.ExpandAxes(flat, -1))
}

// lowest is the dtype's most negative finite value, transformers' mask value.
func lowest(g *graph.Graph, dt dtypes.DType) *graph.Node {
	v := -math.MaxFloat32
	switch dt {
	case dtypes.BFloat16:
		v = -3.3895313892515355e38
	case dtypes.Float16:
		v = -65504
	case dtypes.Float64:
		v = -math.MaxFloat64
	}
	return graph.Scalar(g, dt, v)
}
