package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/dlclark/regexp2/v2"
)

// splitter is one Split pre-tokenizer. split cuts s into pieces (non-empty,
// in order, covering what the behaviour keeps) and hands each to e.next,
// which runs the following steps and finally BPE.
type splitter interface {
	split(s string, e *encoder, step int)
}

// Split behaviours, as tokenizers spells them.
const (
	behaviorRemoved            = "Removed"
	behaviorIsolated           = "Isolated"
	behaviorMergedWithPrevious = "MergedWithPrevious"
	behaviorMergedWithNext     = "MergedWithNext"
	behaviorContiguous         = "Contiguous"
)

// gpt2Pattern is the regex ByteLevel applies when use_regex is true.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

type preTokenizerJSON struct {
	Type          string            `json:"type"`
	PreTokenizers []json.RawMessage `json:"pretokenizers"`
	Pattern       *struct {
		Regex  *string `json:"Regex"`
		String *string `json:"String"`
	} `json:"pattern"`
	Behavior       string `json:"behavior"`
	Invert         bool   `json:"invert"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	UseRegex       bool   `json:"use_regex"`
}

// parsePreTokenizer turns the pre_tokenizer section into splitters and says
// whether a ByteLevel step is there.
func parsePreTokenizer(raw json.RawMessage, fast bool) ([]splitter, bool, error) {
	if isNull(raw) {
		return nil, false, nil
	}
	var p preTokenizerJSON
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, false, fmt.Errorf("tokenizer: pre_tokenizer: %w", err)
	}
	switch p.Type {
	case "Sequence":
		var steps []splitter
		byteLevel := false
		for i, sub := range p.PreTokenizers {
			s, bl, err := parsePreTokenizer(sub, fast)
			if err != nil {
				return nil, false, fmt.Errorf("%w (pre_tokenizer.pretokenizers[%d])", err, i)
			}
			steps = append(steps, s...)
			byteLevel = byteLevel || bl
		}
		return steps, byteLevel, nil
	case "Split":
		if p.Pattern == nil || (p.Pattern.Regex == nil) == (p.Pattern.String == nil) {
			return nil, false, fmt.Errorf("tokenizer: Split pre-tokenizer needs a pattern with one of Regex or String")
		}
		switch p.Behavior {
		case behaviorRemoved, behaviorIsolated, behaviorMergedWithPrevious, behaviorMergedWithNext, behaviorContiguous:
		default:
			return nil, false, fmt.Errorf("tokenizer: Split behavior %q is not known", p.Behavior)
		}
		if p.Pattern.String != nil {
			return []splitter{&literalSplit{lit: *p.Pattern.String, behavior: p.Behavior, invert: p.Invert}}, false, nil
		}
		s, err := newRegexSplit(*p.Pattern.Regex, p.Behavior, p.Invert, fast)
		if err != nil {
			return nil, false, err
		}
		return []splitter{s}, false, nil
	case "ByteLevel":
		if p.AddPrefixSpace {
			return nil, false, fmt.Errorf("tokenizer: ByteLevel pre-tokenizer with add_prefix_space true is not supported")
		}
		if !p.UseRegex {
			return nil, true, nil
		}
		s, err := newRegexSplit(gpt2Pattern, behaviorIsolated, false, true)
		if err != nil {
			return nil, false, err
		}
		return []splitter{s}, true, nil
	default:
		return nil, false, fmt.Errorf("tokenizer: pre_tokenizer type %q is not supported (only Sequence, Split, ByteLevel)", p.Type)
	}
}

// newRegexSplit compiles a Split pattern. With fast set, DeepSeek's patterns
// get their hand-written scanners; the tests build the regexp2 versions with
// fast unset and use them as the oracle.
func newRegexSplit(pattern, behavior string, invert, fast bool) (splitter, error) {
	if fast && behavior == behaviorIsolated && !invert {
		if s := deepseekSplitter(pattern); s != nil {
			return s, nil
		}
	}
	re, err := regexp2.Compile(pattern, regexp2.None, regexp2.OptionMaxBacktrackingStackSize(-1))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: Split regex %q: %w", pattern, err)
	}
	return &regexSplit{re: re, behavior: behavior, invert: invert}, nil
}

// regexSplit runs a Split pattern through regexp2 (a backtracking engine like
// the Oniguruma engine tokenizers uses, with lookaround).
type regexSplit struct {
	re       *regexp2.Regexp
	behavior string
	invert   bool
}

func (r *regexSplit) split(s string, e *encoder, step int) {
	idx, err := r.re.FindAllStringIndex(s, -1)
	if err != nil {
		// Only a pathological pattern fails (timeouts are off): keep s whole.
		idx = nil
	}
	applyBehavior(s, idx, r.behavior, r.invert, e, step)
}

type literalSplit struct {
	lit      string
	behavior string
	invert   bool
}

func (l *literalSplit) split(s string, e *encoder, step int) {
	var idx [][]int
	if l.lit != "" {
		for i := 0; i < len(s); {
			j := strings.Index(s[i:], l.lit)
			if j < 0 {
				break
			}
			idx = append(idx, []int{i + j, i + j + len(l.lit)})
			i += j + len(l.lit)
		}
	}
	applyBehavior(s, idx, l.behavior, l.invert, e, step)
}

// applyBehavior is NormalizedString::split of tokenizers: matches and the gaps
// between them, flagged, then combined by the behaviour; empty pieces vanish.
func applyBehavior(s string, idx [][]int, behavior string, invert bool, e *encoder, step int) {
	type span struct {
		a, b  int
		match bool
	}
	var spans []span
	prev := 0
	for _, m := range idx {
		if m[0] == m[1] {
			continue // an empty match cuts nothing
		}
		if prev != m[0] {
			spans = append(spans, span{prev, m[0], invert})
		}
		spans = append(spans, span{m[0], m[1], !invert})
		prev = m[1]
	}
	if prev != len(s) {
		spans = append(spans, span{prev, len(s), invert})
	}
	var out []span
	switch behavior {
	case behaviorIsolated:
		out = spans
	case behaviorRemoved:
		for _, sp := range spans {
			if !sp.match {
				out = append(out, sp)
			}
		}
	case behaviorContiguous:
		prevMatch := false
		for _, sp := range spans {
			if sp.match == prevMatch && len(out) > 0 {
				out[len(out)-1].b = sp.b
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
	case behaviorMergedWithPrevious:
		prevMatch := false
		for _, sp := range spans {
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].b = sp.b
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
	case behaviorMergedWithNext:
		prevMatch := false
		for i := len(spans) - 1; i >= 0; i-- {
			sp := spans[i]
			if sp.match && !prevMatch && len(out) > 0 {
				out[len(out)-1].a = sp.a
			} else {
				out = append(out, sp)
			}
			prevMatch = sp.match
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	for _, sp := range out {
		if sp.a < sp.b {
			e.next(s[sp.a:sp.b], step+1)
		}
	}
}

// withSteps returns a copy of b that shares its vocabulary and merges and
// builds its pre-tokenizer anew; with fast false every pattern runs through
// regexp2 (the tests' oracle).
func (b *BPE) withSteps(fast bool) (*BPE, error) {
	steps, _, err := parsePreTokenizer(b.file.PreTokenizer, fast)
	if err != nil {
		return nil, err
	}
	c := *b
	c.steps = steps
	c.pool = &sync.Pool{}
	c.pool.New = func() any { return newEncoder(&c) }
	return &c, nil
}
