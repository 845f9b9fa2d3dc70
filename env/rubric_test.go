package env_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsv32/dsv32/agent"
	"github.com/dsv32/dsv32/env"
)

// judge is an httptest server playing an OpenAI-compatible judge: reply
// maps the user message it receives to the assistant's content.
type judge struct {
	srv      *httptest.Server
	calls    atomic.Int64
	inFlight atomic.Int64
	maxIn    atomic.Int64
	mu       sync.Mutex
	last     map[string]any // the last request body
}

func newJudge(t *testing.T, delay time.Duration, reply func(user string) (string, int)) *judge {
	j := &judge{}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.calls.Add(1)
		n := j.inFlight.Add(1)
		defer j.inFlight.Add(-1)
		for {
			m := j.maxIn.Load()
			if n <= m || j.maxIn.CompareAndSwap(m, n) {
				break
			}
		}
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		j.mu.Lock()
		j.last = body
		j.mu.Unlock()
		msgs, _ := body["messages"].([]any)
		user := ""
		if len(msgs) > 0 {
			user, _ = msgs[len(msgs)-1].(map[string]any)["content"].(string)
		}
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		content, status := reply(user)
		if status != 0 && status != 200 {
			http.Error(w, `{"error": {"message": "judge overloaded"}}`, status)
			return
		}
		out, _ := json.Marshal(map[string]any{"choices": []any{map[string]any{"index": 0,
			"message": map[string]any{"role": "assistant", "content": content}, "finish_reason": "stop"}}})
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

var criteria = []env.Criterion{
	{Name: "correct", Description: "The answer is right.", Weight: 3},
	{Name: "clear", Description: "The explanation is easy to follow.", Weight: 1},
}

func rubric(j *judge) *env.Rubric {
	return &env.Rubric{Judge: &agent.HTTPClient{BaseURL: j.srv.URL}, Model: "judge-1", Criteria: criteria, Timeout: 2 * time.Second}
}

var question = env.Example{Key: "q1", Prompt: "What is 6 times 7? Explain.", Answer: "42"}

func raw(text string) env.Completion { return env.Completion{Text: text, Raw: true} }

// TestRubricScore: a well-formed verdict gives the weighted mean on [0, 1];
// the judge sees the conversation, the response, the rubric and the
// reference, at temperature 0; the same response again is served from the cache.
func TestRubricScore(t *testing.T) {
	j := newJudge(t, 0, func(string) (string, int) {
		return `{"scores": {"correct": 10, "clear": 4}, "rationale": "right, terse"}`, 0
	})
	r := rubric(j)
	score, d, err := r.Score(context.Background(), question, raw("42, because 6·7 = 42."))
	if err != nil {
		t.Fatal(err)
	}
	if want := (3*1.0 + 1*0.4) / 4; math.Abs(score-want) > 1e-12 {
		t.Errorf("score %g, want %g (note %q)", score, want, d.Note)
	}
	if d.Note != "correct 10, clear 4" {
		t.Errorf("note %q", d.Note)
	}
	j.mu.Lock()
	body := j.last
	j.mu.Unlock()
	if body["model"] != "judge-1" || body["temperature"] != 0.0 {
		t.Errorf("judge request: model %v, temperature %v", body["model"], body["temperature"])
	}
	user := body["messages"].([]any)[1].(map[string]any)["content"].(string)
	for _, want := range []string{"What is 6 times 7?", "42, because 6·7 = 42.", "- correct (weight 3): The answer is right.", "## Reference answer", "clear"} {
		if !strings.Contains(user, want) {
			t.Errorf("the judge's prompt lacks %q:\n%s", want, user)
		}
	}
	again, _, err := r.Score(context.Background(), question, raw("42, because 6·7 = 42."))
	if err != nil || again != score {
		t.Errorf("cached score %g, %v", again, err)
	}
	if st := r.Stats(); st.Calls != 1 || st.CacheHits != 1 || j.calls.Load() != 1 {
		t.Errorf("stats %+v, server calls %d: want one call and one cache hit", st, j.calls.Load())
	}
	// Thinking-mode completion: the judge grades the content, not the reasoning.
	tc := env.Completion{Text: "secret plan</think>The answer is 42.<｜end▁of▁sentence｜>", Thinking: true}
	if _, _, err := r.Score(context.Background(), question, tc); err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	user = j.last["messages"].([]any)[1].(map[string]any)["content"].(string)
	j.mu.Unlock()
	if strings.Contains(user, "secret plan") || !strings.Contains(user, "The answer is 42.") {
		t.Errorf("thinking completion: the judge should see the content alone:\n%s", user)
	}
}

// TestRubricMalformedVerdicts: whatever the judge says, a reply that is not
// exactly the verdict scores 0 with a note, is counted, and is not an error.
func TestRubricMalformedVerdicts(t *testing.T) {
	replies := map[string]string{
		"prose":            "The response is correct and clear. 9/10.",
		"prose around":     `Here you go: {"scores": {"correct": 10, "clear": 10}}`,
		"missing":          `{"scores": {"correct": 10}}`,
		"unknown":          `{"scores": {"correct": 10, "clear": 5, "style": 3}}`,
		"out of range":     `{"scores": {"correct": 11, "clear": 5}}`,
		"negative":         `{"scores": {"correct": -1, "clear": 5}}`,
		"string score":     `{"scores": {"correct": "10", "clear": 5}}`,
		"null score":       `{"scores": {"correct": null, "clear": 5}}`,
		"no scores":        `{"rationale": "fine"}`,
		"extra field":      `{"scores": {"correct": 10, "clear": 5}, "total": 15}`,
		"two objects":      `{"scores": {"correct": 10, "clear": 5}} {"scores": {}}`,
		"array":            `[10, 5]`,
		"empty":            "",
		"unclosed fence":   "```json\n{\"scores\": {\"correct\": 10, \"clear\": 5}}",
		"truncated":        `{"scores": {"correct": 10, "cle`,
		"scores not a map": `{"scores": [10, 5]}`,
	}
	j := newJudge(t, 0, func(user string) (string, int) {
		for name, reply := range replies {
			if strings.Contains(user, "case "+name+".") {
				return reply, 0
			}
		}
		return "```json\n{\"scores\": {\"correct\": 5, \"clear\": 5}}\n```", 0
	})
	r := rubric(j)
	for name := range replies {
		score, d, err := r.Score(context.Background(), question, raw("case "+name+"."))
		if err != nil {
			t.Errorf("%s: error %v, want score 0 and a note", name, err)
			continue
		}
		if score != 0 || !strings.HasPrefix(d.Note, "malformed verdict: ") {
			t.Errorf("%s: score %g, note %q", name, score, d.Note)
		}
		t.Logf("%-16s → %s", name, d.Note)
	}
	if got := r.Stats().Malformed; got != int64(len(replies)) {
		t.Errorf("%d malformed verdicts counted, want %d", got, len(replies))
	}
	// A fenced verdict is accepted.
	score, d, err := r.Score(context.Background(), question, raw("fenced"))
	if err != nil || score != 0.5 {
		t.Errorf("fenced verdict: %g %q %v", score, d.Note, err)
	}
	// A malformed verdict is not cached: the judge is asked again.
	before := j.calls.Load()
	r.Score(context.Background(), question, raw("case prose."))
	if j.calls.Load() != before+1 {
		t.Error("a malformed verdict was served from the cache")
	}
}

// TestRubricFailures: a judge that is too slow, down or answers with an HTTP
// error is an error (not a made-up score), counted, and not cached.
func TestRubricFailures(t *testing.T) {
	slow := newJudge(t, 5*time.Second, func(string) (string, int) { return `{"scores": {"correct": 1, "clear": 1}}`, 0 })
	r := rubric(slow)
	r.Timeout = 100 * time.Millisecond
	start := time.Now()
	_, _, err := r.Score(context.Background(), question, raw("42"))
	if err == nil || !strings.Contains(err.Error(), "timed out after 100ms") {
		t.Errorf("slow judge: err %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the timeout took %s", d)
	}
	if _, _, err := r.Score(context.Background(), question, raw("42")); err == nil {
		t.Error("a failed call was cached")
	}
	if st := r.Stats(); st.Failures != 2 || st.Calls != 2 {
		t.Errorf("stats %+v", st)
	}

	down := newJudge(t, 0, func(string) (string, int) { return "", http.StatusServiceUnavailable })
	if _, _, err := rubric(down).Score(context.Background(), question, raw("42")); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("HTTP 503: err %v", err)
	}
	unreachable := &env.Rubric{Judge: &agent.HTTPClient{BaseURL: "http://127.0.0.1:1"}, Model: "m", Criteria: criteria}
	if _, _, err := unreachable.Score(context.Background(), question, raw("42")); err == nil {
		t.Error("unreachable judge: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := rubric(slow).Score(ctx, question, raw("43")); err == nil {
		t.Error("cancelled context: no error")
	}
	if _, _, err := (&env.Rubric{Model: "m", Criteria: criteria}).Score(context.Background(), question, raw("42")); err == nil {
		t.Error("no judge client: no error")
	}
}

// TestRubricConcurrency: at most Concurrency calls reach the judge at once,
// and identical requests in flight share one call.
func TestRubricConcurrency(t *testing.T) {
	j := newJudge(t, 30*time.Millisecond, func(string) (string, int) { return `{"scores": {"correct": 10, "clear": 10}}`, 0 })
	r := rubric(j)
	r.Concurrency = 3
	var wg sync.WaitGroup
	errs := make([]error, 24)
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprintf("answer %d", i)
			if i >= 12 {
				text = "the same answer" // 12 identical requests: one call
			}
			s, _, err := r.Score(context.Background(), question, raw(text))
			if err == nil && s != 1 {
				err = fmt.Errorf("score %g", s)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	t.Logf("server calls %d, at most %d in flight; stats %+v", j.calls.Load(), j.maxIn.Load(), r.Stats())
	if m := j.maxIn.Load(); m > 3 || m < 2 {
		t.Errorf("%d judge calls in flight at once, want 2–3 (Concurrency 3)", m)
	}
	if c := j.calls.Load(); c != 13 {
		t.Errorf("%d judge calls, want 13 (12 distinct + 1 shared)", c)
	}
}

// TestRubricPerExample: an example's Meta["rubric"] replaces the default
// criteria; a bad rubric is an error of the data, not a score.
func TestRubricPerExample(t *testing.T) {
	j := newJudge(t, 0, func(user string) (string, int) {
		if strings.Contains(user, "- polite") {
			return `{"scores": {"polite": 2.5}}`, 0
		}
		return `{"scores": {"correct": 0, "clear": 0}}`, 0
	})
	r := rubric(j)
	r.Scale = 5
	ex := question
	ex.Meta = map[string]string{"rubric": `[{"name": "polite", "description": "Says please.", "weight": 2}]`}
	s, d, err := r.Score(context.Background(), ex, raw("42 please"))
	if err != nil || s != 0.5 {
		t.Errorf("per-example rubric: %g %q %v", s, d.Note, err)
	}
	for _, bad := range []string{`not json`, `[]`, `[{"name": "a", "weight": 0}]`, `[{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]`, `[{"name": " ", "weight": 1}]`} {
		ex.Meta["rubric"] = bad
		if _, _, err := r.Score(context.Background(), ex, raw("42")); err == nil {
			t.Errorf("rubric %s: no error", bad)
		}
	}
	r.For = func(env.Example) []env.Criterion {
		return []env.Criterion{{Name: "correct", Weight: 1}, {Name: "clear", Weight: 1}}
	}
	if s, _, err := r.Score(context.Background(), ex, raw("42")); err != nil || s != 0 {
		t.Errorf("For: %g %v", s, err)
	}
}

// A Rubric is a Reward and composes in a Sum.
func TestRubricInSum(t *testing.T) {
	j := newJudge(t, 0, func(string) (string, int) { return `{"scores": {"correct": 10, "clear": 0}}`, 0 })
	sum := env.Sum{{Reward: rubric(j), Weight: 1}, {Reward: env.Length{Max: 100}, Weight: 1}}
	s, d, err := sum.Score(context.Background(), question, raw("42"))
	if err != nil || s != 0.75 || d.Parts[0].Name != "rubric" {
		t.Errorf("sum: %g %+v %v", s, d, err)
	}
}

func FuzzParseVerdict(f *testing.F) {
	for _, s := range []string{`{"scores": {"correct": 10, "clear": 4}}`, "```json\n{}\n```", `{"scores": {"correct": 1e309}}`, "```", `{"scores":{"correct":NaN}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		s, note, ok := env.ParseVerdict(reply, criteria, 10)
		if !(s >= 0 && s <= 1) || (!ok && s != 0) || note == "" && !ok {
			t.Errorf("%q → %g %q %v", reply, s, note, ok)
		}
	})
}

func TestLoadCriteria(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/good.json"
	os.WriteFile(good, []byte(`[{"name": "correct", "description": "right", "weight": 2}]`), 0o644)
	cs, err := env.LoadCriteria(good)
	if err != nil || len(cs) != 1 || cs[0].Weight != 2 {
		t.Errorf("%v %v", cs, err)
	}
	for i, bad := range []string{`{}`, `[]`, `[{"name": "a", "weight": -1}]`, `[{"name": "a", "weight": 1, "points": 3}]`} {
		p := fmt.Sprintf("%s/bad%d.json", dir, i)
		os.WriteFile(p, []byte(bad), 0o644)
		if _, err := env.LoadCriteria(p); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
	if _, err := env.LoadCriteria(dir + "/missing.json"); err == nil {
		t.Error("missing file: no error")
	}
}
