package engine_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dsv32/dsv32/checkpoint"
	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/internal/testutil"
	"github.com/dsv32/dsv32/model"
	"github.com/gomlx/compute/dtypes"
)

var (
	tinyOnce sync.Once
	tiny     *model.Model
	tinyIDs  []int32
)

// tinyModel is the tiny-dsa reference checkpoint (index_topk 16) and its
// 64 fixture token ids.
func tinyModel(t testing.TB) (*model.Model, []int32) {
	t.Helper()
	tinyOnce.Do(func() {
		m, err := model.Load(testutil.Testdata("tiny-dsa"), dtypes.Float32)
		if err != nil {
			t.Fatal(err)
		}
		ck, err := checkpoint.Open(testutil.Testdata("tiny-dsa", "expected.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		defer ck.Close()
		ids, _, err := ck.Int64("input_ids")
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range ids {
			tinyIDs = append(tinyIDs, int32(v))
		}
		tiny = m
	})
	if tiny == nil {
		t.Fatal("tiny model did not load")
	}
	return tiny, tinyIDs
}

func newEngine(t testing.TB, cfg engine.Config) (*engine.Engine, []int32) {
	t.Helper()
	m, ids := tinyModel(t)
	e, err := engine.New(m, testutil.Backend(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, ids
}

// greedyReference decodes by re-running a full prefill for every token: the
// slow, obviously correct path the engine must agree with. The sequence is
// padded to a multiple of 16 tokens (the model is causal: what follows a
// position does not change its logits), so that a few programs serve every
// length: each one compiles for seconds on XLA.
func greedyReference(t *testing.T, prompt []int32, n int) []int32 {
	t.Helper()
	m, _ := tinyModel(t)
	V := m.Config.VocabSize
	seq := slices.Clone(prompt)
	var out []int32
	for range n {
		padded := append(slices.Clone(seq), make([]int32, (16-len(seq)%16)%16)...)
		res, err := m.RunPrefill(testutil.Backend(t), padded, model.Options{})
		if err != nil {
			t.Fatal(err)
		}
		last := res.Logits[(len(seq)-1)*V : len(seq)*V]
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		out = append(out, int32(best))
		seq = append(seq, int32(best))
	}
	return out
}

// checkRoutes fails the test unless res recorded, for every position it
// processed (the prompt and every generated token but the last), the
// experts a prefill of those tokens routes them to.
func checkRoutes(t *testing.T, what string, prompt []int32, res *engine.Result) {
	t.Helper()
	m, _ := tinyModel(t)
	seq := append(slices.Clone(prompt), ids(res.Tokens[:len(res.Tokens)-1])...)
	if len(res.Routes) != len(seq) {
		t.Fatalf("%s: %d route records for %d processed positions", what, len(res.Routes), len(seq))
	}
	pre, err := m.RunPrefill(testutil.Backend(t), seq, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	K := m.Config.NumExpertsPerTok
	for p := range seq {
		for l, r := range pre.Routes {
			want, got := slices.Clone(r[p*K:(p+1)*K]), slices.Clone(res.Routes[p][l])
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("%s, position %d, MoE layer %d: recorded experts %v, prefill routes %v", what, p, l, got, want)
			}
		}
	}
}

func ids(ts []engine.Token) []int32 {
	out := make([]int32, len(ts))
	for i, t := range ts {
		out[i] = t.ID
	}
	return out
}

func TestGreedyMatchesFullRecompute(t *testing.T) {
	e, fx := newEngine(t, engine.Config{PrefillChunk: 16})
	prompt := fx[:37] // three prefill chunks, past index_topk
	res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, Params: engine.SampleParams{MaxTokens: 10}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := greedyReference(t, prompt, 10)
	if got := ids(res.Tokens); !slices.Equal(got, want) {
		t.Fatalf("engine greedy %v, full recompute %v", got, want)
	}
	if res.Finish != engine.FinishLength || res.PromptTokens != 37 {
		t.Errorf("finish %q, prompt tokens %d", res.Finish, res.PromptTokens)
	}
}

// Concurrent requests join and leave a running batch (MaxBatch 2, five
// requests) and each gets exactly what it gets alone.
func TestContinuousBatchingIsolation(t *testing.T) {
	e, fx := newEngine(t, engine.Config{MaxBatch: 2, PrefillChunk: 16})
	type job struct {
		prompt []int32
		n      int
	}
	jobs := []job{{fx[:20], 6}, {fx[5:40], 9}, {fx[10:13], 4}, {fx[30:64], 7}, {fx[:50], 5}}
	got := make([][]int32, len(jobs))
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.Generate(context.Background(), engine.Request{Prompt: j.prompt, Params: engine.SampleParams{MaxTokens: j.n}}, nil)
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = ids(res.Tokens)
		}()
	}
	wg.Wait()
	for i, j := range jobs {
		if want := greedyReference(t, j.prompt, j.n); !slices.Equal(got[i], want) {
			t.Errorf("request %d: batched %v, alone %v", i, got[i], want)
		}
	}
	if st := e.Stats(); st.Requests != int64(len(jobs)) || st.Running != 0 {
		t.Errorf("stats after the run: %+v", st)
	}
}

// TestLoopsCompileInBackground: a looping engine that does not wait for its
// loops decodes with the host's chains while they compile, then with the
// loops, and the tokens are the same throughout.
func TestLoopsCompileInBackground(t *testing.T) {
	if !model.CanLoop(testutil.Backend(t)) {
		t.Fatal("the test backend cannot run device loops")
	}
	e, fx := newEngine(t, engine.Config{ChainSteps: 4, NativeTopK: true, DigitTopK: true, DeviceLoop: true})
	want := greedyReference(t, fx[:12], 10)
	// Requests until a loop has compiled: a request takes far less than a
	// compile on XLA, so the bound is time.
	deadline := time.Now().Add(3 * time.Minute)
	for i := 0; e.Stats().LoopedSteps == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("no step ran in a device loop after %d requests: %+v", i, e.Stats())
		}
		res, err := e.Generate(context.Background(), engine.Request{Prompt: fx[:12], Params: engine.SampleParams{MaxTokens: 10}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(res.Tokens), want) {
			t.Fatalf("request %d: %v, full recompute %v", i, ids(res.Tokens), want)
		}
	}
	if st := e.Stats(); st.LoopedSteps == st.ChainedSteps {
		t.Errorf("every chained step ran in a loop (%d): the first chains waited for their loops to compile", st.LoopedSteps)
	}
}

// TestChainedDecoding runs the same batches with chains of 4 steps and
// with chains off, and every request gets the same tokens: greedy requests
// whose stop token or budget ends them part-way through a chain, alone and
// together, and a batch that mixes in seeded sampled requests (the device
// draws them with the seed's noise, as the host does).
func TestChainedDecoding(t *testing.T) {
	type job struct {
		prompt []int32
		p      engine.SampleParams
	}
	_, fx := tinyModel(t)
	// A stop token first drawn at the 6th greedy token: inside the second chain.
	ref := greedyReference(t, fx[5:30], 12)
	stop := int32(-1)
	for i := 5; i < len(ref) && stop < 0; i++ {
		if !slices.Contains(ref[:i], ref[i]) {
			stop = ref[i]
		}
	}
	if stop < 0 {
		t.Fatalf("no fresh token in %v to stop on", ref)
	}
	greedy := []job{
		{fx[:20], engine.SampleParams{MaxTokens: 11}},
		{fx[5:30], engine.SampleParams{MaxTokens: 20, StopTokens: []int32{stop}}},
		{fx[10:13], engine.SampleParams{MaxTokens: 6}},
	}
	mixed := append(slices.Clone(greedy),
		job{fx[30:64], engine.SampleParams{MaxTokens: 9, Temperature: 0.8, Seed: 3, HasSeed: true}},
		job{fx[:9], engine.SampleParams{MaxTokens: 3}},
		job{fx[12:20], engine.SampleParams{MaxTokens: 10, Temperature: 1, TopP: 0.9, PresencePenalty: 0.5, Seed: 1 << 40, HasSeed: true}})
	run := func(jobs []job, chain int) ([][]int32, engine.Stats) {
		// NativeTopK: sampled rows chain only with the backend's TopK (XLA).
		e, _ := newEngine(t, engine.Config{MaxBatch: 3, PrefillChunk: 16, ChainSteps: chain, NativeTopK: true})
		got := make([][]int32, len(jobs))
		var wg sync.WaitGroup
		for i, j := range jobs {
			wg.Go(func() {
				res, err := e.Generate(context.Background(), engine.Request{Prompt: j.prompt, Params: j.p}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				got[i] = ids(res.Tokens)
			})
		}
		wg.Wait()
		return got, e.Stats()
	}
	for _, c := range []struct {
		name string
		jobs []job
	}{{"greedy", greedy}, {"mixed", mixed}} {
		chained, on := run(c.jobs, 4)
		plain, off := run(c.jobs, -1)
		for i := range c.jobs {
			if !slices.Equal(chained[i], plain[i]) {
				t.Errorf("%s batch, request %d: with chains %v, without %v", c.name, i, chained[i], plain[i])
			}
		}
		if n := len(plain[1]); n < 6 || plain[1][n-1] != stop {
			t.Errorf("%s batch: the stop token request gave %v, want at least 6 tokens ending in %d", c.name, plain[1], stop)
		}
		if off.ChainedSteps != 0 || on.ChainedSteps == 0 {
			t.Errorf("%s batch: %d chained steps with chains on, %d with them off", c.name, on.ChainedSteps, off.ChainedSteps)
		}
	}
	// Unseeded sampling is drawn on the device too, truncated or not: the
	// greedy requests beside it keep their tokens, and each drawn token
	// carries the model's log-probabilities.
	withUnseeded := append(slices.Clone(greedy),
		job{fx[30:50], engine.SampleParams{MaxTokens: 9, Temperature: 1}},
		job{fx[2:14], engine.SampleParams{MaxTokens: 7, Temperature: 0.7}},
		job{fx[7:19], engine.SampleParams{MaxTokens: 8, Temperature: 1, TopP: 0.9}},
		job{fx[1:6], engine.SampleParams{MaxTokens: 6, Temperature: 1, TopK: 20, MinP: 0.01}},
		job{fx[3:15], engine.SampleParams{MaxTokens: 8, Temperature: 0.9, PresencePenalty: 1, FrequencyPenalty: 0.5}})
	plain, _ := run(greedy, -1)
	// Also with the digit search selecting the indexer's keys and cutting
	// top-k and top-p (engine.Config.DigitTopK; on the Go backend the native
	// TopK it stands beside is a sort).
	cfgs := []engine.Config{
		{MaxBatch: 7, PrefillChunk: 16, ChainSteps: 4, NativeTopK: true},
		{MaxBatch: 7, PrefillChunk: 16, ChainSteps: 4, NativeTopK: true, DigitTopK: true},
	}
	// And with each chain one loop on the device (model.CanLoop: XLA, and the
	// Go backend as internal/testutil dresses it).
	if !model.CanLoop(testutil.Backend(t)) {
		t.Fatal("the test backend cannot run device loops")
	}
	cfgs = append(cfgs, engine.Config{MaxBatch: 7, PrefillChunk: 16, ChainSteps: 4, NativeTopK: true, DigitTopK: true, DeviceLoop: true, WaitForLoops: true})
	for _, cfg := range cfgs {
		e, _ := newEngine(t, cfg)
		results := make([]*engine.Result, len(withUnseeded))
		var wg sync.WaitGroup
		for i, j := range withUnseeded {
			wg.Go(func() {
				res, err := e.Generate(context.Background(), engine.Request{Prompt: j.prompt, Params: j.p}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				results[i] = res
			})
		}
		wg.Wait()
		for i, res := range results {
			if res == nil {
				continue
			}
			if i < len(greedy) {
				if !slices.Equal(ids(res.Tokens), plain[i]) {
					t.Errorf("digits %v: greedy request %d beside unseeded sampling: %v, alone without chains %v", cfg.DigitTopK, i, ids(res.Tokens), plain[i])
				}
				continue
			}
			if len(res.Tokens) != withUnseeded[i].p.MaxTokens {
				t.Errorf("digits %v: sampled request %d: %d tokens, want %d", cfg.DigitTopK, i, len(res.Tokens), withUnseeded[i].p.MaxTokens)
			}
			for _, tk := range res.Tokens {
				ok := tk.Logprob < 0 && tk.SampleLogprob < 0 && !math.IsInf(float64(tk.Logprob), 0) // the tiny model is far from certain
				if p := withUnseeded[i].p; p.Temperature == 1 {
					// At temperature 1 the sampled distribution is the model's,
					// renormalised over what truncation keeps.
					if p.TopP == 0 && p.TopK == 0 {
						ok = ok && math.Abs(float64(tk.Logprob-tk.SampleLogprob)) < 1e-4
					} else {
						ok = ok && tk.SampleLogprob > tk.Logprob
					}
				}
				if !ok {
					t.Errorf("digits %v: sampled request %d: token %+v", cfg.DigitTopK, i, tk)
				}
			}
		}
		if st := e.Stats(); st.ChainedSteps == 0 {
			t.Errorf("digits %v: no chained steps for a batch of greedy and unseeded sampled requests", cfg.DigitTopK)
		} else if looped := st.LoopedSteps > 0; looped != cfg.DeviceLoop || st.LoopedSteps > st.ChainedSteps {
			// A looping engine must not fall back to a program a step unseen.
			t.Errorf("device loop %v: %d of %d chained steps ran in device loops", cfg.DeviceLoop, st.LoopedSteps, st.ChainedSteps)
		}
	}

	// A lone greedy request: 10 tokens are the prefill's, chains of 4 and 4,
	// and one plain step.
	e, _ := newEngine(t, engine.Config{ChainSteps: 4})
	res, err := e.Generate(context.Background(), engine.Request{Prompt: fx[:12], Params: engine.SampleParams{MaxTokens: 10}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := greedyReference(t, fx[:12], 10); !slices.Equal(ids(res.Tokens), want) {
		t.Errorf("lone request: %v, full recompute %v", ids(res.Tokens), want)
	}
	if st := e.Stats(); st.ChainedSteps != 8 {
		t.Errorf("lone request: %d chained steps, want 8", st.ChainedSteps)
	}

	// Log-probabilities and alternatives come from the device too: a greedy
	// request asking for them chains, and gets the tokens, log-probabilities
	// and alternatives (to float32's rounding) it gets without chains.
	for _, p := range []engine.SampleParams{{MaxTokens: 10, Logprobs: true}, {MaxTokens: 10, Logprobs: true, TopLogprobs: 4}, {MaxTokens: 10, TopLogprobs: 20}} {
		withLogprobs := func(chain int) ([]engine.Token, engine.Stats) {
			e, _ := newEngine(t, engine.Config{ChainSteps: chain})
			res, err := e.Generate(context.Background(), engine.Request{Prompt: fx[:12], Params: p}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return res.Tokens, e.Stats()
		}
		on, st := withLogprobs(4)
		off, _ := withLogprobs(-1)
		if st.ChainedSteps == 0 {
			t.Errorf("%+v: a greedy request ran no chained steps", p)
		}
		if !slices.Equal(ids(on), ids(off)) {
			t.Fatalf("%+v: chained %v, without chains %v", p, ids(on), ids(off))
		}
		for i := range on {
			a, b := on[i], off[i]
			ok := b.Logprob < 0 && math.Abs(float64(a.Logprob-b.Logprob)) <= 1e-4 && a.SampleLogprob == 0 && len(a.Top) == p.TopLogprobs && len(b.Top) == p.TopLogprobs
			for j := range min(len(a.Top), len(b.Top)) {
				ok = ok && a.Top[j].ID == b.Top[j].ID && math.Abs(float64(a.Top[j].Logprob-b.Top[j].Logprob)) <= 1e-4
			}
			if !ok {
				t.Errorf("%+v token %d: chained %+v, without chains %+v", p, i, a, b)
			}
		}
	}
}

func TestSeedsAndStops(t *testing.T) {
	e, fx := newEngine(t, engine.Config{})
	run := func(p engine.SampleParams) *engine.Result {
		t.Helper()
		res, err := e.Generate(context.Background(), engine.Request{Prompt: fx[:12], Params: p}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	sampled := engine.SampleParams{Temperature: 1, TopP: 0.9, Seed: 7, HasSeed: true, MaxTokens: 12}
	a, b := run(sampled), run(sampled)
	if !slices.Equal(ids(a.Tokens), ids(b.Tokens)) {
		t.Errorf("same seed gave %v and %v", ids(a.Tokens), ids(b.Tokens))
	}
	other := sampled
	other.Seed = 8
	differs := false
	for s := uint64(8); s < 14 && !differs; s++ {
		other.Seed = s
		differs = !slices.Equal(ids(run(other).Tokens), ids(a.Tokens))
	}
	if !differs {
		t.Error("six other seeds all gave the same tokens")
	}

	greedy := run(engine.SampleParams{MaxTokens: 8})
	stopAt := greedy.Tokens[3].ID
	first := slices.Index(ids(greedy.Tokens), stopAt)
	res := run(engine.SampleParams{MaxTokens: 8, StopTokens: []int32{stopAt}})
	if res.Finish != engine.FinishStop || len(res.Tokens) != first+1 {
		t.Errorf("stop token: finish %q after %d tokens, want stop after %d", res.Finish, len(res.Tokens), first+1)
	}
	seqStop := ids(greedy.Tokens[4:6])
	res = run(engine.SampleParams{MaxTokens: 8, StopSequences: [][]int32{seqStop}})
	if res.Finish != engine.FinishStop || !slices.Equal(ids(res.Tokens[len(res.Tokens)-2:]), seqStop) {
		t.Errorf("stop sequence %v: finish %q, tokens %v", seqStop, res.Finish, ids(res.Tokens))
	}
}

func TestCancellationLeavesOthersAlone(t *testing.T) {
	e, fx := newEngine(t, engine.Config{MaxBatch: 4})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var cancelled *engine.Result
	wg.Add(1)
	go func() {
		defer wg.Done()
		n := 0
		res, err := e.Generate(ctx, engine.Request{Prompt: fx[:10], Params: engine.SampleParams{MaxTokens: 500}}, func(engine.Token) {
			if n++; n == 3 {
				cancel()
			}
		})
		if err != nil {
			t.Error(err)
		}
		cancelled = res
	}()
	res, err := e.Generate(context.Background(), engine.Request{Prompt: fx[20:30], Params: engine.SampleParams{MaxTokens: 8}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if cancelled.Finish != engine.FinishCancelled || len(cancelled.Tokens) >= 500 {
		t.Errorf("cancelled request: finish %q after %d tokens", cancelled.Finish, len(cancelled.Tokens))
	}
	if want := greedyReference(t, fx[20:30], 8); !slices.Equal(ids(res.Tokens), want) {
		t.Errorf("neighbour of a cancelled request: %v, want %v", ids(res.Tokens), want)
	}
}

func TestRefusals(t *testing.T) {
	e, fx := newEngine(t, engine.Config{MaxContext: 512, MemoryBudget: 300_000})
	cases := []struct {
		name string
		req  engine.Request
		want error
	}{
		{"context overflow", engine.Request{Prompt: fx, Params: engine.SampleParams{MaxTokens: 500}}, engine.ErrContextOverflow},
		{"cache budget", engine.Request{Prompt: fx, Params: engine.SampleParams{MaxTokens: 400}}, engine.ErrTooLarge},
		{"empty prompt", engine.Request{}, nil},
		{"token outside vocabulary", engine.Request{Prompt: []int32{1, 99999}}, nil},
		{"bad temperature", engine.Request{Prompt: fx[:3], Params: engine.SampleParams{Temperature: -1}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Generate(context.Background(), c.req, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			t.Log(err)
		})
	}
	// The engine still serves after refusing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.Generate(ctx, engine.Request{Prompt: fx[:5], Params: engine.SampleParams{MaxTokens: 3}}, nil); err != nil {
		t.Fatal(err)
	}
}

// Routes recorded while sampling equal those of a prefill of the same tokens
// (keep routing, rl.md §5), and kept sets contain the sampled token.
func TestRecordsForRL(t *testing.T) {
	e, fx := newEngine(t, engine.Config{PrefillChunk: 16})
	prompt := fx[:21]
	res, err := e.Generate(context.Background(), engine.Request{
		Prompt: prompt, RecordRoutes: true, RecordKept: true,
		Params: engine.SampleParams{Temperature: 0.8, TopK: 20, TopP: 0.95, Seed: 3, HasSeed: true, MaxTokens: 6, TopLogprobs: 3, Logprobs: true},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRoutes(t, "routes", prompt, res)
	for i, tok := range res.Tokens {
		if len(tok.Kept) == 0 || len(tok.Kept) > 20 || !slices.Contains(tok.Kept, tok.ID) {
			t.Errorf("token %d: kept set %v does not hold sampled id %d (top-k 20)", i, tok.Kept, tok.ID)
		}
		if tok.SampleLogprob > 0 || tok.Logprob > 0 || len(tok.Top) != 3 {
			t.Errorf("token %d: logprob %g, sample logprob %g, %d alternatives", i, tok.Logprob, tok.SampleLogprob, len(tok.Top))
		}
	}
}

// TestMixedSteps checks both step schedules — mixed steps (prompt chunks and
// next tokens of every row in one call) and chunk-by-chunk prefill — against
// the model run alone: the same greedy tokens and the same recorded routes
// for prompts of different lengths arriving together.
func TestMixedSteps(t *testing.T) {
	for _, mixed := range []int{0, -1} {
		e, fx := newEngine(t, engine.Config{MaxBatch: 8, PrefillChunk: 16, MixedTokens: mixed})
		lengths := []int{3, 17, 9, 40, 1, 23, 16, 33, 5, 12}
		type out struct {
			tokens []int32
			res    *engine.Result
		}
		got := make([]out, len(lengths))
		var wg sync.WaitGroup
		for i, n := range lengths {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := e.Generate(context.Background(), engine.Request{Prompt: fx[i : i+n], RecordRoutes: true,
					Params: engine.SampleParams{MaxTokens: 3 + i%4}}, nil)
				if err != nil {
					t.Error(err)
					return
				}
				got[i] = out{ids(res.Tokens), res}
			}()
		}
		wg.Wait()
		for i, n := range lengths {
			prompt := fx[i : i+n]
			if want := greedyReference(t, prompt, 3+i%4); !slices.Equal(got[i].tokens, want) {
				t.Errorf("mixed %d, request %d: batched %v, alone %v", mixed, i, got[i].tokens, want)
			}
			checkRoutes(t, fmt.Sprintf("mixed %d, request %d", mixed, i), prompt, got[i].res)
		}
	}
}

// TestPrefixReuse: a request whose prompt begins with what a finished
// request's row still holds (its prompt and answer: a follow-up turn)
// prefills only the rest, and gets the tokens and routes it gets alone; a
// request recording routes reuses only positions whose routes were recorded.
func TestPrefixReuse(t *testing.T) {
	for _, c := range []struct {
		name           string
		reuse          int
		first, routes  bool // the first request records routes; the follow-up does
		wantReusedFrom int  // 0: nothing reused
	}{
		{"follow-up", 0, false, false, 1},
		{"follow-up, routes", 0, true, true, 1},
		{"routes not recorded before", 0, false, true, 0},
		{"off", -1, false, false, 0},
		{"weights changed", 0, false, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, fx := newEngine(t, engine.Config{PrefillChunk: 16, PrefixReuse: c.reuse})
			gen := func(prompt []int32, n int, routes bool) *engine.Result {
				t.Helper()
				res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, RecordRoutes: routes,
					Params: engine.SampleParams{MaxTokens: n}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			first := gen(fx[:30], 6, c.first)
			held := 30 + len(first.Tokens) - 1 // the last token was never fed
			if c.name == "weights changed" {
				e.WeightsChanged() // what the first request left was computed with the old weights
			}
			follow := append(append(slices.Clone(fx[:30]), ids(first.Tokens)...), fx[40:52]...)
			second := gen(follow, 5, c.routes)
			if want := greedyReference(t, follow, 5); !slices.Equal(ids(second.Tokens), want) {
				t.Errorf("follow-up: %v, alone %v", ids(second.Tokens), want)
			}
			st := e.Stats()
			want := int64(held * c.wantReusedFrom)
			if st.ReusedTokens != want || st.PromptTokens != int64(30+len(follow))-want {
				t.Errorf("%d prompt tokens reused and %d prefilled, want %d and %d", st.ReusedTokens, st.PromptTokens, want, int64(30+len(follow))-want)
			}
			if !c.routes {
				return
			}
			checkRoutes(t, "follow-up", follow, second)
		})
	}
}

// TestPrefixStore: with one row and two conversations taking turns, each
// turn takes its row from the other conversation, and the prefix store
// keeps each history on the host until its next turn, routes too; without
// the store, every turn prefills its whole history. A store too small for
// a history keeps nothing; new weights make what it keeps stale.
func TestPrefixStore(t *testing.T) {
	_, fx := tinyModel(t)
	// Two conversations, three turns each, their references computed alone.
	type conv struct{ prompt []int32 }
	convs := []*conv{{slices.Clone(fx[:24])}, {slices.Clone(fx[30:50])}}
	const turns, answer = 3, 3
	for _, c := range []struct {
		name       string
		store      int64
		routes     bool
		weights    bool // the weights change before the last round
		wantHits   int64
		wantStored int
	}{
		{"store", 0, false, false, 4, 2},
		{"store, routes", 0, true, false, 4, 2},
		{"off", -1, false, false, 0, 0},
		{"too small", 1000, false, false, 0, 0},
		{"weights changed", 0, false, true, 2, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, _ := newEngine(t, engine.Config{MaxBatch: 1, PrefillChunk: 16, PrefixStore: c.store})
			prompts := []([]int32){slices.Clone(convs[0].prompt), slices.Clone(convs[1].prompt)}
			var reused, prefillable int64
			for turn := range turns {
				if c.weights && turn == turns-1 {
					e.WeightsChanged()
				}
				for i := range prompts {
					before := e.Stats().ReusedTokens
					res, err := e.Generate(context.Background(), engine.Request{Prompt: prompts[i], RecordRoutes: c.routes,
						Params: engine.SampleParams{MaxTokens: answer}}, nil)
					if err != nil {
						t.Fatal(err)
					}
					if want := greedyReference(t, prompts[i], answer); !slices.Equal(ids(res.Tokens), want) {
						t.Fatalf("turn %d of conversation %d: %v, alone %v", turn, i, ids(res.Tokens), want)
					}
					if c.routes {
						checkRoutes(t, fmt.Sprintf("turn %d of conversation %d", turn, i), prompts[i], res)
					}
					got := e.Stats().ReusedTokens - before
					if int64(res.CachedTokens) != got {
						t.Errorf("turn %d of conversation %d: CachedTokens %d, engine counted %d", turn, i, res.CachedTokens, got)
					}
					if turn > 0 {
						prefillable += int64(len(prompts[i]) - 6 - 1) // the history: the previous prompt and its answer, but the last token, never fed
					}
					reused += got
					prompts[i] = append(append(prompts[i], ids(res.Tokens)...), fx[56+turn:62+turn]...)
				}
			}
			st := e.Stats()
			if st.StoreHits != c.wantHits || st.StoredPrefixes != c.wantStored {
				t.Errorf("%d store hits and %d prefixes stored, want %d and %d", st.StoreHits, st.StoredPrefixes, c.wantHits, c.wantStored)
			}
			if c.wantHits == 4 && reused != prefillable {
				t.Errorf("%d prompt tokens reused, want every turn's history: %d", reused, prefillable)
			}
			if c.wantHits == 0 && reused != 0 {
				t.Errorf("%d prompt tokens reused without a store that holds them", reused)
			}
		})
	}
}

// TestPrefixStoreEvicts: three conversations take turns on one row with
// room in the store for two histories. Making room evicts the least
// recently used, never the history the incoming request is about to take:
// in the second round the first and third conversations find theirs, and
// the second, evicted to keep the third's, prefills.
func TestPrefixStoreEvicts(t *testing.T) {
	_, fx := tinyModel(t)
	run := func(store int64) (hits []int64, stored int64) {
		e, _ := newEngine(t, engine.Config{MaxBatch: 1, PrefillChunk: 16, PrefixStore: store})
		prompts := [][]int32{fx[:20], fx[20:40], fx[40:60]} // equal lengths: copies of equal size
		for round := range 2 {
			for i, p := range prompts {
				before := e.Stats().StoreHits
				res, err := e.Generate(context.Background(), engine.Request{Prompt: p, Params: engine.SampleParams{MaxTokens: 3}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if round == 1 {
					if want := greedyReference(t, p, 3); !slices.Equal(ids(res.Tokens), want) {
						t.Fatalf("conversation %d's second turn: %v, alone %v", i, ids(res.Tokens), want)
					}
					hits = append(hits, e.Stats().StoreHits-before)
				}
				prompts[i] = append(append(slices.Clone(p), ids(res.Tokens)...), fx[i:i+4]...)
			}
			if round == 0 {
				stored = e.Stats().StoredBytes
			}
		}
		return hits, stored
	}
	hits, two := run(0)
	if !slices.Equal(hits, []int64{1, 1, 1}) {
		t.Fatalf("with room for all: store hits by conversation %v, want [1 1 1]", hits)
	}
	if hits, _ := run(two); !slices.Equal(hits, []int64{1, 0, 1}) {
		t.Errorf("with room for two (%d bytes): store hits by conversation %v, want [1 0 1]", two, hits)
	}
}

// TestPrefixStoreKeepsShrunkRows: four conversations run together in four
// rows; their next turns come one at a time, so the first shrinks the batch
// to one row, and the store keeps what the rows that go held: every next
// turn reuses its whole history.
func TestPrefixStoreKeepsShrunkRows(t *testing.T) {
	for _, store := range []int64{0, -1} {
		e, fx := newEngine(t, engine.Config{MaxBatch: 4, PrefillChunk: 16, PrefixStore: store})
		prompts := [][]int32{fx[:20], fx[10:30], fx[20:40], fx[30:50]}
		answers := make([]*engine.Result, len(prompts))
		var wg sync.WaitGroup
		for i, p := range prompts {
			wg.Go(func() {
				res, err := e.Generate(context.Background(), engine.Request{Prompt: p, Params: engine.SampleParams{MaxTokens: 3}}, nil)
				if err != nil {
					t.Error(err)
				}
				answers[i] = res
			})
		}
		wg.Wait()
		if slices.Contains(answers, nil) {
			t.FailNow()
		}
		var reused, want int64
		for i, p := range prompts {
			next := append(append(slices.Clone(p), ids(answers[i].Tokens)...), fx[50:54]...)
			res, err := e.Generate(context.Background(), engine.Request{Prompt: next, Params: engine.SampleParams{MaxTokens: 2}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if ref := greedyReference(t, next, 2); !slices.Equal(ids(res.Tokens), ref) {
				t.Errorf("store %d: conversation %d's next turn: %v, alone %v", store, i, ids(res.Tokens), ref)
			}
			reused += int64(res.CachedTokens)
			want += int64(len(p) + len(answers[i].Tokens) - 1)
		}
		if st := e.Stats(); st.Rows != 1 {
			t.Fatalf("store %d: %d rows after the next turns, want 1 (the test needs the batch to shrink)", store, st.Rows)
		}
		if store >= 0 && reused != want {
			t.Errorf("%d prompt tokens reused, want every history: %d", reused, want)
		}
		if store < 0 && reused >= want {
			t.Errorf("without the store, %d prompt tokens reused of %d: the shrink kept them all, so this test checks nothing", reused, want)
		}
	}
}

// TestPrefixReuseBeside reuses while other rows run: a new request takes a
// running request's prefix (its row copied over the new one's), and a
// follow-up takes what a finished request left in its row while the batch
// kept stepping (steps write free rows only past what they hold).
func TestPrefixReuseBeside(t *testing.T) {
	e, fx := newEngine(t, engine.Config{MaxBatch: 4, PrefillChunk: 16})
	gen := func(prompt []int32, n int, onToken func(engine.Token)) *engine.Result {
		t.Helper()
		res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, Params: engine.SampleParams{MaxTokens: n}}, onToken)
		if err != nil {
			t.Error(err)
		}
		return res
	}
	// Three long requests and a short one fill four rows; the short one's
	// row is then free while three run, so the batch keeps its shape.
	started := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	longs := [][]int32{fx[30:54], fx[1:25], fx[8:40]}
	got := make([]*engine.Result, len(longs))
	for i, p := range longs {
		wg.Go(func() {
			n := 0
			got[i] = gen(p, 100, func(engine.Token) {
				if n++; n == 10 && i == 0 {
					once.Do(func() { close(started) })
				}
			})
		})
	}
	gen(fx[:3], 2, nil)
	<-started
	// A prompt behind the first long request's: its row is copied over.
	beside := append(slices.Clone(fx[30:54]), fx[56:64]...)
	b := gen(beside, 4, nil)
	// A follow-up of that one, from the row it left.
	follow := append(append(slices.Clone(beside), ids(b.Tokens)...), fx[20:28]...)
	f := gen(follow, 4, nil)
	reused := e.Stats().ReusedTokens
	wg.Wait()
	if b == nil || f == nil || slices.Contains(got, nil) {
		t.FailNow()
	}
	if want := greedyReference(t, beside, 4); !slices.Equal(ids(b.Tokens), want) {
		t.Errorf("beside a running request: %v, alone %v", ids(b.Tokens), want)
	}
	if want := greedyReference(t, follow, 4); !slices.Equal(ids(f.Tokens), want) {
		t.Errorf("follow-up beside running requests: %v, alone %v", ids(f.Tokens), want)
	}
	if want := greedyReference(t, longs[0], 100); !slices.Equal(ids(got[0].Tokens), want) {
		t.Errorf("the running request: %v, alone %v", ids(got[0].Tokens), want)
	}
	if want := int64(24 + len(beside) + 3); reused != want {
		t.Errorf("%d prompt tokens reused, want %d", reused, want)
	}
}

// TestPrefixReuseAfterIdle: a conversation's next turn finds its whole
// history cached after the engine went idle in between, a history longer
// than the smallest cache (an idle engine does not shrink its caches; the
// next admission does, once it knows what it needs).
func TestPrefixReuseAfterIdle(t *testing.T) {
	e, fx := newEngine(t, engine.Config{PrefillChunk: 64})
	var history []int32
	for range 5 {
		history = append(history, fx...) // 320 tokens: past the smallest capacity
	}
	gen := func(prompt []int32) *engine.Result {
		t.Helper()
		res, err := e.Generate(context.Background(), engine.Request{Prompt: prompt, Params: engine.SampleParams{MaxTokens: 3}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	first := gen(history)
	next := append(append(slices.Clone(history), ids(first.Tokens)...), fx[:10]...)
	second := gen(next)
	if want := greedyReference(t, next, 3); !slices.Equal(ids(second.Tokens), want) {
		t.Errorf("next turn: %v, alone %v", ids(second.Tokens), want)
	}
	if st, want := e.Stats(), int64(len(history)+2); st.ReusedTokens != want {
		t.Errorf("%d prompt tokens reused, want %d (the first turn's prompt and fed answer)", st.ReusedTokens, want)
	}
}

// TestPrefixReuseGroup: samples of one prompt admitted together (a GRPO
// rollout) prefill it once: the others wait for the first's prefill and
// copy it, routes included, and each gets what it gets alone. A sample
// whose leader is cancelled while it waits goes on by itself (it would
// wait forever otherwise).
func TestPrefixReuseGroup(t *testing.T) {
	_, fx := tinyModel(t)
	// A long prompt prefilled chunk by chunk, oldest first, holds the others
	// back until they are all admitted.
	var blocker []int32
	for range 10 { // 640 tokens: 40 chunks
		blocker = append(blocker, fx[32:]...)
		blocker = append(blocker, fx[:32]...)
	}
	start := func(e *engine.Engine, prompt []int32, routes bool, ctx context.Context) chan *engine.Result {
		done := make(chan *engine.Result, 1)
		go func() {
			res, err := e.Generate(ctx, engine.Request{Prompt: prompt, RecordRoutes: routes, Params: engine.SampleParams{MaxTokens: 5}}, nil)
			if err != nil {
				t.Error(err)
			}
			done <- res
		}()
		return done
	}
	waitRunning := func(e *engine.Engine, n int) {
		for e.Stats().Running < n {
			time.Sleep(100 * time.Microsecond)
		}
	}
	cfg := engine.Config{MaxBatch: 8, PrefillChunk: 16, MixedTokens: -1}

	e, _ := newEngine(t, cfg)
	blocked := start(e, blocker, false, context.Background())
	waitRunning(e, 1)
	prompt := fx[:40]
	const G = 4
	var samples []chan *engine.Result
	for range G {
		samples = append(samples, start(e, prompt, true, context.Background()))
	}
	want := greedyReference(t, prompt, 5)
	for i, c := range samples {
		res := <-c
		if res == nil {
			t.FailNow()
		}
		if !slices.Equal(ids(res.Tokens), want) {
			t.Errorf("sample %d: %v, alone %v", i, ids(res.Tokens), want)
		}
		checkRoutes(t, fmt.Sprintf("sample %d", i), prompt, res)
	}
	<-blocked // (it reports to t: it must end before the test does)
	// Each sample feeds the prompt's last token itself; the rest is prefilled once.
	if st := e.Stats(); st.ReusedTokens != (G-1)*int64(len(prompt)-1) {
		t.Errorf("%d prompt tokens reused, want %d", st.ReusedTokens, (G-1)*(len(prompt)-1))
	}

	// A leader cancelled while its follower waits.
	e, _ = newEngine(t, cfg)
	blocked = start(e, blocker, false, context.Background())
	waitRunning(e, 1)
	ctx, cancel := context.WithCancel(context.Background())
	leader := start(e, prompt, false, ctx)
	waitRunning(e, 2)
	follower := start(e, prompt, false, context.Background())
	waitRunning(e, 3)
	cancel()
	<-leader
	if res := <-follower; res == nil || !slices.Equal(ids(res.Tokens), want) {
		t.Errorf("after its leader was cancelled: %v, alone %v", res, want)
	}
	<-blocked
}

// TestPrefixReuseKeepsLeftovers: with several free rows, a follow-up lands
// in the row its own history was left in, not over another conversation's.
func TestPrefixReuseKeepsLeftovers(t *testing.T) {
	e, fx := newEngine(t, engine.Config{MaxBatch: 8, PrefillChunk: 64})
	// The references first: computing them while the engine runs would give
	// the long requests time to finish (seconds of compiling on XLA).
	convs := [][]int32{fx[:20], fx[1:21], fx[2:22]}
	var answers, nexts, wantNext [][]int32
	for _, p := range convs {
		answers = append(answers, greedyReference(t, p, 3))
		next := append(append(slices.Clone(p), answers[len(answers)-1]...), fx[30:36]...)
		nexts = append(nexts, next)
		wantNext = append(wantNext, greedyReference(t, next, 2))
	}
	gen := func(ctx context.Context, prompt []int32, n int) *engine.Result {
		t.Helper()
		res, err := e.Generate(ctx, engine.Request{Prompt: prompt, Params: engine.SampleParams{MaxTokens: n}}, nil)
		if err != nil {
			t.Error(err)
		}
		return res
	}
	// Five long requests keep the batch at 8 rows while three short
	// conversations leave their rows; they are cancelled once done with.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range 5 {
		wg.Go(func() { gen(ctx, fx[40+i:60+i], 120) })
	}
	for e.Stats().Running < 5 {
		time.Sleep(100 * time.Microsecond)
	}
	for i, p := range convs { // one after another: rows 5, 6 and 7
		if res := gen(context.Background(), p, 3); res == nil || !slices.Equal(ids(res.Tokens), answers[i]) {
			t.Fatalf("conversation %d: %v, alone %v", i, res, answers[i])
		}
	}
	before := e.Stats().ReusedTokens
	var want int64
	for _, i := range []int{2, 0} { // the later rows first
		if res := gen(context.Background(), nexts[i], 2); res == nil || !slices.Equal(ids(res.Tokens), wantNext[i]) {
			t.Errorf("conversation %d's next turn: %v, alone %v", i, res, wantNext[i])
		}
		want += int64(len(convs[i]) + len(answers[i]) - 1)
	}
	st := e.Stats()
	if st.Running != 5 {
		t.Fatalf("%d requests running after the next turns, want the 5 long ones: the test needs them to hold their rows", st.Running)
	}
	if reused := st.ReusedTokens - before; reused != want {
		t.Errorf("%d prompt tokens reused by the next turns, want %d (both histories)", reused, want)
	}
}

// TestRLRecordsChain: what GRPO rollouts record (seeded draws under top-p,
// each token's kept set, every position's routes) comes out of chains on
// the device as out of steps on the host: the same tokens, kept sets and
// routes. Without the backend's TopK, sampled draws stay on the host.
func TestRLRecordsChain(t *testing.T) {
	_, fx := tinyModel(t)
	run := func(chain int) (*engine.Result, engine.Stats) {
		// NativeTopK: truncated draws chain where the backend's TopK cuts (XLA).
		e, _ := newEngine(t, engine.Config{ChainSteps: chain, NativeTopK: true})
		res, err := e.Generate(context.Background(), engine.Request{Prompt: fx[:10], RecordKept: true, RecordRoutes: true,
			Params: engine.SampleParams{MaxTokens: 9, Temperature: 1, TopP: 0.3, Seed: 11, HasSeed: true}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res, e.Stats()
	}
	on, st := run(4)
	off, _ := run(-1)
	if st.ChainedSteps == 0 {
		t.Error("a rollout-like request ran no chained steps")
	}
	if !slices.Equal(ids(on.Tokens), ids(off.Tokens)) {
		t.Fatalf("tokens: chained %v, stepped %v", ids(on.Tokens), ids(off.Tokens))
	}
	for i := range on.Tokens {
		if a, b := on.Tokens[i].Kept, off.Tokens[i].Kept; len(b) == 0 || !slices.Equal(a, b) {
			t.Errorf("token %d: kept %v chained, %v stepped", i, a, b)
		}
	}
	checkRoutes(t, "chained", fx[:10], on)
	if len(on.Routes) != len(off.Routes) {
		t.Errorf("%d positions' routes chained, %d stepped", len(on.Routes), len(off.Routes))
	}
	e, _ := newEngine(t, engine.Config{ChainSteps: 4})
	if _, err := e.Generate(context.Background(), engine.Request{Prompt: fx[:10],
		Params: engine.SampleParams{MaxTokens: 9, Temperature: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	if n := e.Stats().ChainedSteps; n != 0 {
		t.Errorf("without the backend's TopK, a sampled request ran %d chained steps", n)
	}
}
