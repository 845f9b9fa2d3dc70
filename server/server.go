package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/dsv32/dsv32/chat"
	"github.com/dsv32/dsv32/engine"
	"github.com/dsv32/dsv32/tokenizer"
)

// Config sets up a Server.
type Config struct {
	ModelName    string       // the model name clients send (required)
	Thinking     bool         // thinking mode for chat requests that do not choose
	MaxBodyBytes int64        // largest request body (default 16 MiB); larger ones get 413
	MaxN         int          // most choices per request (default 16)
	Logger       *slog.Logger // default slog.Default()
}

// Server is the OpenAI-compatible HTTP API over one engine and tokenizer.
// It is an http.Handler; Close stops its metrics sampler.
type Server struct {
	eng     *engine.Engine
	tok     *tokenizer.BPE
	cfg     Config
	eos     int32
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *metrics
	created int64
	// run is generate; tests replace it to feed chosen tokens.
	run func(ctx context.Context, reqs []engine.Request, handle func(event) bool)
}

// New returns a server for e, whose token ids tok reads and writes.
func New(e *engine.Engine, tok *tokenizer.BPE, cfg Config) (*Server, error) {
	if cfg.ModelName == "" {
		return nil, fmt.Errorf("server: no model name")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 16 << 20
	}
	if cfg.MaxN <= 0 {
		cfg.MaxN = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	eos, ok := tok.TokenToID(chat.EOS)
	if !ok {
		return nil, fmt.Errorf("server: the tokenizer has no %s token", chat.EOS)
	}
	if v := e.Model().Config.VocabSize; tok.VocabSize() > v {
		return nil, fmt.Errorf("server: the tokenizer has %d ids, the model's vocabulary only %d", tok.VocabSize(), v)
	}
	s := &Server{eng: e, tok: tok, cfg: cfg, eos: int32(eos), log: cfg.Logger.With("component", "server"),
		created: time.Now().Unix()}
	s.metrics = newMetrics(e)
	s.run = s.generate
	s.mux = http.NewServeMux()
	s.route("/v1/chat/completions", "chat", http.MethodPost, s.handleChat)
	s.route("/v1/completions", "completions", http.MethodPost, s.handleCompletions)
	s.route("/v1/models", "models", http.MethodGet, s.handleModels)
	s.route("/v1/models/{id...}", "models", http.MethodGet, s.handleModel)
	s.route("/health", "health", http.MethodGet, s.handleHealth)
	s.route("/metrics", "metrics", http.MethodGet, s.metrics.handler().ServeHTTP)
	s.mux.Handle("/", s.wrap("other", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "not_found", "", "no route %s %s", r.Method, r.URL.Path))
	}))
	return s, nil
}

// Close stops the tokens-per-second sampler. It does not close the engine.
func (s *Server) Close() { s.metrics.close() }

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// route registers a handler for one method; other methods get 405.
func (s *Server) route(path, endpoint, method string, h http.HandlerFunc) {
	s.mux.Handle(path, s.wrap(endpoint, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, errorf(http.StatusMethodNotAllowed, "method_not_allowed", "",
				"method %s is not allowed on %s; use %s", r.Method, r.URL.Path, method))
			return
		}
		h(w, r)
	}))
}

// statusWriter records the status for metrics and logs; Unwrap lets
// http.ResponseController flush through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap counts, logs and contains a handler: a panic becomes a 500 for this
// request only.
func (s *Server) wrap(endpoint string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("handler panic", "endpoint", endpoint, "panic", p)
				if sw.status == 0 {
					writeError(sw, errorf(http.StatusInternalServerError, "internal_error", "", "internal error: %v", p))
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			s.metrics.request(endpoint, status, time.Since(start))
			level := slog.LevelInfo
			if endpoint == "health" || endpoint == "metrics" {
				level = slog.LevelDebug
			}
			s.log.Log(r.Context(), level, "request", "method", r.Method, "path", r.URL.Path,
				"status", status, "duration", time.Since(start).Round(time.Microsecond))
		}()
		h(sw, r)
	})
}

// marshal is json.Marshal without HTML escaping: model text such as
// "<think>" stays readable on the wire.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// writeJSON sends v with a status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"error":{"message":"encoding the response failed","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(data, '\n'))
}

// writeError sends OpenAI's error JSON.
func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Status, struct {
		Error *Error `json:"error"`
	}{e})
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	st := s.eng.Stats()
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "model": s.cfg.ModelName,
		"waiting": st.Waiting, "running": st.Running})
}

func (s *Server) card() ModelCard {
	return ModelCard{ID: s.cfg.ModelName, Object: "model", Created: s.created, OwnedBy: "dsv32",
		MaxModelLen: s.eng.Config().MaxContext}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, ModelList{Object: "list", Data: []ModelCard{s.card()}})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != s.cfg.ModelName {
		writeError(w, s.unknownModel(id))
		return
	}
	writeJSON(w, http.StatusOK, s.card())
}

// checkModel answers a request for another model with 404.
func (s *Server) checkModel(name string) *Error {
	if name == "" {
		return errorf(http.StatusBadRequest, "missing_required_parameter", "model", "you must provide a model parameter (this server serves %q)", s.cfg.ModelName)
	}
	if name != s.cfg.ModelName {
		return s.unknownModel(name)
	}
	return nil
}

func (s *Server) unknownModel(name string) *Error {
	return errorf(http.StatusNotFound, "model_not_found", "model",
		"The model '%s' does not exist; this server serves '%s'.", name, s.cfg.ModelName)
}

// newID returns prefix + 24 random hex digits.
func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// tokenText is a token's text and bytes for logprobs.
func (s *Server) tokenText(id int32) (string, []int) {
	raw := s.tok.DecodeBytes([]int{int(id)})
	bs := make([]int, len(raw))
	for i, b := range raw {
		bs[i] = int(b)
	}
	return strings.ToValidUTF8(string(raw), "\uFFFD"), bs
}
