package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsv32/dsv32/model"
	"github.com/gomlx/compute"
)

// Config sizes the engine.
type Config struct {
	MaxBatch     int // sequences decoded together (default 8)
	MaxContext   int // longest prompt + completion (default: the model's context, at most 32768)
	PrefillChunk int // largest prefill chunk in tokens (default 256)
	// MixedTokens bounds the rows × chunk tokens of a mixed step, where every
	// row feeds its prompt chunk or its next token at once (default 1024;
	// -1 turns mixed steps off). Larger work runs chunk by chunk instead.
	MixedTokens  int
	MemoryBudget int64 // bytes the caches may take (default 4 GiB); larger requests are refused
	// ChainSteps is how many decode steps run back to back on the device
	// (model.Stepper.Chain, ChainSample) while no running request is
	// prefilling nor, without NativeTopK, samples (default 8; -1 turns
	// chains off): greedy decoding and
	// sampling (seeds, penalties, temperature, top-k, min-p, top-p), with or
	// without log-probabilities, alternatives, recorded routes and kept sets
	// (computed on the device in float32).
	// No token crosses to the host between the steps; new requests and
	// cancellations wait for the chain's end.
	ChainSteps int
	// PrefixReuse is the fewest prompt tokens a new request takes from
	// another row's cache instead of prefilling them (default 16; -1 never):
	// a running request's, or a finished one's whose row is still free. A
	// position's cache depends only on the tokens up to it, so a follow-up
	// turn, or a prompt behind a shared system prompt, prefills only what
	// is new. A request recording routes reuses only positions whose routes
	// the other request recorded too.
	PrefixReuse int
	// PrefixStore is the host memory that keeps cache rows' prefixes after
	// their rows went to other requests, for PrefixReuse to find later
	// (default 1 GiB; -1 none): a conversation's history when more
	// conversations than rows take turns. A row's prefix is copied to the
	// host when a request that does not continue it takes the row, or when
	// the batch shrinks past it; the least recently used go first.
	PrefixStore int64
	Dense       bool // attend to every causal key (no top-k)
	NativeTopK  bool // the indexer uses the backend's TopK op (set it for XLA; see model.Options)
	DigitTopK   bool // with NativeTopK: decode steps and chains select by digit search (model.Options.DigitTopK)
	DeviceLoop  bool // chains run as one program, a loop on the device (model.Options.DeviceLoop; backends that model.CanLoop, with DigitTopK)
	// WaitForLoops, with DeviceLoop, makes a chain whose loop program has
	// not compiled wait for it. By default the program compiles in the
	// background while chains step from the host (model.Options.
	// LoopsInBackground): seconds each on XLA, which no request should wait.
	WaitForLoops bool
}

func (c *Config) defaults(m *model.Model) {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 8
	}
	if c.MaxContext <= 0 {
		c.MaxContext = min(m.Config.MaxPositionEmbeddings, 32768)
		if c.MaxContext <= 0 {
			c.MaxContext = 4096
		}
	}
	if c.PrefillChunk <= 0 {
		c.PrefillChunk = 256
	}
	if c.MemoryBudget <= 0 {
		c.MemoryBudget = 4 << 30
	}
	if c.MixedTokens == 0 {
		c.MixedTokens = 1024
	}
	if c.ChainSteps == 0 {
		c.ChainSteps = 8
	}
	if c.PrefixReuse == 0 {
		c.PrefixReuse = 16
	}
	if c.PrefixStore == 0 {
		c.PrefixStore = 1 << 30
	}
}

// Request is one generation: a prompt of token ids and how to sample.
type Request struct {
	Prompt []int32
	Params SampleParams
	// RecordRoutes keeps each MoE layer's expert ids for every position the
	// model processed (keep routing, rl.md §5).
	RecordRoutes bool
	// RecordKept keeps each token's kept set (keep sampling mask, rl.md §6).
	RecordKept bool
}

// Finish says why a generation ended.
type Finish string

const (
	FinishStop      Finish = "stop"      // a stop token or sequence
	FinishLength    Finish = "length"    // max tokens or the context
	FinishCancelled Finish = "cancelled" // the caller's context ended
)

// Result is a finished generation.
type Result struct {
	Tokens       []Token
	Finish       Finish
	PromptTokens int
	// CachedTokens of the prompt were taken from another request's cache
	// instead of prefilled (Config.PrefixReuse).
	CachedTokens int
	// Routes[p][l] are the K expert ids MoE layer l routed position p to, for
	// every processed position (the prompt and all generated tokens but the
	// last), with RecordRoutes.
	Routes           [][][]int32
	TimeToFirstToken time.Duration
	Duration         time.Duration
}

// Errors callers can test for.
var (
	ErrContextOverflow = errors.New("context overflow")
	ErrTooLarge        = errors.New("request exceeds the cache memory budget")
	ErrClosed          = errors.New("engine closed")
)

// Engine runs generations on one model with continuous batching: requests
// join the running decode batch as rows free up, prompts are prefilled in
// chunks between decode steps, and finished sequences leave at once.
type Engine struct {
	m       *model.Model
	backend compute.Backend
	cfg     Config

	submit chan *seq
	quit   chan struct{}
	wg     sync.WaitGroup
	seed   atomic.Uint64
	// weights counts WeightsChanged calls: caches computed before the last
	// one are not reused.
	weights atomic.Int64

	stats statsCounters
}

// WeightsChanged tells the engine that its model's weights were updated (an
// RL or training step on the same store): what its caches hold was computed
// with the old weights, so no new request reuses it (Config.PrefixReuse).
// Requests already running keep their own caches.
func (e *Engine) WeightsChanged() { e.weights.Add(1) }

// New starts an engine. Close stops it.
func New(m *model.Model, backend compute.Backend, cfg Config) (*Engine, error) {
	cfg.defaults(m)
	if cfg.MaxContext > m.Config.MaxPositionEmbeddings && m.Config.MaxPositionEmbeddings > 0 {
		return nil, fmt.Errorf("engine: max context %d exceeds the model's %d", cfg.MaxContext, m.Config.MaxPositionEmbeddings)
	}
	e := &Engine{m: m, backend: backend, cfg: cfg, submit: make(chan *seq), quit: make(chan struct{})}
	e.seed.Store(uint64(time.Now().UnixNano()))
	e.wg.Add(1)
	go e.loop()
	return e, nil
}

// Config returns the engine's configuration (with defaults filled in).
func (e *Engine) Config() Config { return e.cfg }

// Model returns the model the engine runs.
func (e *Engine) Model() *model.Model { return e.m }

// Close stops the engine; running generations end with ErrClosed.
func (e *Engine) Close() {
	select {
	case <-e.quit:
	default:
		close(e.quit)
	}
	e.wg.Wait()
}

// Generate runs one request to completion, calling onToken (if not nil) for
// each token as it is sampled, from the engine's goroutine: onToken must not
// block for long. Cancelling ctx ends the generation with FinishCancelled.
// Invalid requests and requests that cannot fit fail at once, naming why.
func (e *Engine) Generate(ctx context.Context, req Request, onToken func(Token)) (*Result, error) {
	s, err := e.newSeq(ctx, req, onToken)
	if err != nil {
		return nil, err
	}
	select {
	case e.submit <- s:
	case <-e.quit:
		return nil, ErrClosed
	case <-ctx.Done():
		return &Result{Finish: FinishCancelled, PromptTokens: len(req.Prompt)}, nil
	}
	select {
	case <-s.done:
	case <-e.quit:
		<-s.done
	}
	return s.result, s.err
}

// newSeq validates a request and sizes its cache.
func (e *Engine) newSeq(ctx context.Context, req Request, onToken func(Token)) (*seq, error) {
	V := e.m.Config.VocabSize
	if len(req.Prompt) == 0 {
		return nil, fmt.Errorf("engine: empty prompt")
	}
	for i, id := range req.Prompt {
		if id < 0 || int(id) >= V {
			return nil, fmt.Errorf("engine: prompt token %d at position %d is outside the vocabulary [0, %d)", id, i, V)
		}
	}
	if err := req.Params.Validate(); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	maxTok := req.Params.MaxTokens
	room := e.cfg.MaxContext - len(req.Prompt)
	if room <= 0 || maxTok > room {
		return nil, fmt.Errorf("engine: %w: prompt of %d tokens + max_tokens %d exceeds the context of %d",
			ErrContextOverflow, len(req.Prompt), maxTok, e.cfg.MaxContext)
	}
	if maxTok == 0 {
		maxTok = room
	}
	need := len(req.Prompt) + maxTok + minChunk
	if b := model.CacheBytes(e.m, 1, capacityBucket(need)); b > e.cfg.MemoryBudget {
		return nil, fmt.Errorf("engine: %w: %d prompt + %d new tokens need %d bytes of cache, the budget is %d",
			ErrTooLarge, len(req.Prompt), maxTok, b, e.cfg.MemoryBudget)
	}
	s := &seq{
		ctx: ctx, req: req, onToken: onToken, row: -1, maxTokens: maxTok, need: need,
		tokens: append([]int32(nil), req.Prompt...), done: make(chan struct{}), start: time.Now(),
		sampler: newSampler(req.Params, req.RecordKept, e.seed.Add(0x9e3779b97f4a7c15)),
	}
	return s, nil
}

// seq is one generation inside the engine.
type seq struct {
	ctx       context.Context
	req       Request
	onToken   func(Token)
	sampler   *sampler
	row       int     // cache row, −1 while waiting
	tokens    []int32 // prompt + generated
	fed       int     // positions whose keys are in the cache
	maxTokens int
	need      int   // cache slots it may use
	cached    int   // prompt tokens taken from another row's cache
	weights   int64 // Engine.weights when it was admitted: the weights its cache was computed with
	lead      *seq  // the prefilling row whose prompt prefix this one waits to copy (scheduler.lead)
	leadAt    int   // how much of it
	out       []Token
	routes    [][][]int32
	start     time.Time
	firstTok  time.Duration

	done   chan struct{}
	result *Result
	err    error
}

func (s *seq) prefilling() bool { return s.fed < len(s.req.Prompt) }

// accept records a sampled token and reports whether the sequence is done.
func (s *seq) accept(t Token) (Finish, bool) {
	if len(s.out) == 0 {
		s.firstTok = time.Since(s.start)
	}
	s.out = append(s.out, t)
	s.tokens = append(s.tokens, t.ID)
	if s.onToken != nil {
		s.onToken(t)
	}
	for _, id := range s.req.Params.StopTokens {
		if t.ID == id {
			return FinishStop, true
		}
	}
	for _, stop := range s.req.Params.StopSequences {
		if n := len(stop); n > 0 && len(s.out) >= n {
			match := true
			for i, id := range stop {
				if s.out[len(s.out)-n+i].ID != id {
					match = false
					break
				}
			}
			if match {
				return FinishStop, true
			}
		}
	}
	if len(s.out) >= s.maxTokens {
		return FinishLength, true
	}
	return "", false
}

func (s *seq) finish(f Finish, err error) {
	s.result = &Result{Tokens: s.out, Finish: f, PromptTokens: len(s.req.Prompt), CachedTokens: s.cached, Routes: s.routes,
		TimeToFirstToken: s.firstTok, Duration: time.Since(s.start)}
	s.err = err
	close(s.done)
}

func (e *Engine) logger() *slog.Logger { return slog.Default().With("component", "engine") }
