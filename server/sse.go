package server

import "net/http"

// sseWriter writes server-sent events: "data: {json}\n\n" each, flushed at
// once, and "data: [DONE]\n\n" at the end. The headers go out with the
// first event, so a request that fails before any output still gets a plain
// JSON error with its status.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func newSSE(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

func (s *sseWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	s.w.WriteHeader(http.StatusOK)
}

func (s *sseWriter) send(v any) error {
	data, err := marshal(v)
	if err != nil {
		return err
	}
	return s.write(data)
}

func (s *sseWriter) write(data []byte) error {
	s.start()
	buf := make([]byte, 0, len(data)+8)
	buf = append(append(append(buf, "data: "...), data...), "\n\n"...)
	if _, err := s.w.Write(buf); err != nil {
		return err
	}
	return s.rc.Flush()
}

// finish ends the stream: with [DONE], or with the error as JSON (an event
// when the stream has begun, else a plain error response).
func (s *sseWriter) finish(e *Error) {
	if e != nil {
		if !s.started {
			writeError(s.w, e)
			return
		}
		s.send(struct {
			Error *Error `json:"error"`
		}{e})
	}
	s.write([]byte("[DONE]"))
}
