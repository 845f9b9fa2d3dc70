package server

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/dsv32/dsv32/engine"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, in a registry of its own (so
// several servers can live in one process, as in tests).
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	ttft      prometheus.Histogram
	completed *prometheus.CounterVec

	mu      sync.Mutex
	samples []rateSample // generated-token totals, one per second, for tokens/s
	quit    chan struct{}
	once    sync.Once
}

type rateSample struct {
	at     time.Time
	tokens int64
}

// rateWindow is the span tokens/s is averaged over.
const rateWindow = 10 * time.Second

func newMetrics(e *engine.Engine) *metrics {
	m := &metrics{reg: prometheus.NewRegistry(), quit: make(chan struct{})}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dsv32_http_requests_total", Help: "HTTP requests by endpoint and status code.",
	}, []string{"endpoint", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "dsv32_http_request_duration_seconds", Help: "Time to answer a request, streams included.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
	}, []string{"endpoint"})
	m.ttft = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "dsv32_time_to_first_token_seconds", Help: "From a generation's submission to its first token (queueing and prefill).",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
	})
	m.completed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dsv32_generations_total", Help: "Finished generations (one per choice) by finish reason.",
	}, []string{"finish_reason"})
	stat := func(name, help string, f func(engine.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(e.Stats()) })
	}
	total := func(name, help string, f func(engine.Stats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return f(e.Stats()) })
	}
	m.reg.MustRegister(m.requests, m.latency, m.ttft, m.completed,
		stat("dsv32_queue_depth", "Generations waiting for a cache row.", func(s engine.Stats) float64 { return float64(s.Waiting) }),
		stat("dsv32_running", "Generations holding a cache row (prefilling or decoding).", func(s engine.Stats) float64 { return float64(s.Running) }),
		stat("dsv32_cache_bytes", "Bytes the KV and indexer caches hold.", func(s engine.Stats) float64 { return float64(s.CacheBytes) }),
		stat("dsv32_cache_budget_bytes", "The caches' memory budget.", func(s engine.Stats) float64 { return float64(s.CacheBudget) }),
		total("dsv32_prompt_tokens_total", "Prompt tokens processed.", func(s engine.Stats) float64 { return float64(s.PromptTokens) }),
		total("dsv32_generated_tokens_total", "Tokens generated.", func(s engine.Stats) float64 { return float64(s.GeneratedTokens) }),
		total("dsv32_decode_steps_total", "Batched decode steps.", func(s engine.Stats) float64 { return float64(s.DecodeSteps) }),
		total("dsv32_chained_decode_steps_total", "Decode steps run back to back on the device (chains).", func(s engine.Stats) float64 { return float64(s.ChainedSteps) }),
		total("dsv32_prompt_tokens_reused_total", "Prompt tokens taken from another request's cache instead of prefilled.", func(s engine.Stats) float64 { return float64(s.ReusedTokens) }),
		stat("dsv32_prefix_store_bytes", "Host memory holding cache prefixes kept for reuse (--prefix-store).", func(s engine.Stats) float64 { return float64(s.StoredBytes) }),
		total("dsv32_prefix_store_hits_total", "Requests whose prompt prefix came back from the prefix store.", func(s engine.Stats) float64 { return float64(s.StoreHits) }),
		total("dsv32_looped_decode_steps_total", "Decode steps run inside one loop on the device (--chain-loop).", func(s engine.Stats) float64 { return float64(s.LoopedSteps) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "dsv32_generated_tokens_per_second", Help: "Tokens generated per second, averaged over the last 10 s.",
		}, m.tokensPerSecond),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.sample(e)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.sample(e)
			case <-m.quit:
				return
			}
		}
	}()
	return m
}

func (m *metrics) sample(e *engine.Engine) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, rateSample{now, e.Stats().GeneratedTokens})
	for len(m.samples) > 2 && now.Sub(m.samples[1].at) >= rateWindow {
		m.samples = m.samples[1:]
	}
}

func (m *metrics) tokensPerSecond() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) < 2 {
		return 0
	}
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(last.tokens-first.tokens) / dt
}

func (m *metrics) close() { m.once.Do(func() { close(m.quit) }) }

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *metrics) request(endpoint string, status int, d time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(endpoint).Observe(d.Seconds())
}

// generation records one finished generation.
func (m *metrics) generation(res *engine.Result, finish string) {
	if res != nil && len(res.Tokens) > 0 {
		m.ttft.Observe(res.TimeToFirstToken.Seconds())
	}
	m.completed.WithLabelValues(finish).Inc()
}
