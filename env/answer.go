package env

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ExtractAnswer finds the final answer in a response's content. It tries, in
// order, and takes the last occurrence of:
//
//  1. \boxed{…} (braces balanced), the math convention;
//  2. <answer>…</answer>, TinyZero's convention;
//  3. a line with "Answer:" (any case), the rest of that line;
//  4. otherwise the last non-blank line.
//
// The result is trimmed of space, of surrounding '$' and '**', and of a final
// '.'. It reports false when nothing is left.
func ExtractAnswer(content string) (string, bool) {
	a, ok := lastBoxed(content)
	if !ok {
		a, ok = lastTagged(content)
	}
	if !ok {
		a, ok = lastAnswerLine(content)
	}
	if !ok {
		a = lastLine(content)
	}
	a = cleanAnswer(a)
	return a, a != ""
}

// lastBoxed finds the \boxed{…} that starts last among those whose braces
// close, in one pass: braces are matched with a stack, and a '{' that ends
// a "\boxed" is remembered on it.
func lastBoxed(s string) (string, bool) {
	const box = `\boxed`
	type open struct {
		at    int // index after the '{'
		boxed bool
	}
	var stack []open
	best, bestEnd := -1, -1
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			stack = append(stack, open{i + 1, strings.HasSuffix(s[:i], box)})
		case '}':
			if len(stack) == 0 {
				continue
			}
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if o.boxed && o.at > best {
				best, bestEnd = o.at, i
			}
		}
	}
	if best < 0 {
		return "", false
	}
	return s[best:bestEnd], true
}

func lastTagged(s string) (string, bool) {
	end := strings.LastIndex(s, "</answer>")
	if end < 0 {
		return "", false
	}
	start := strings.LastIndex(s[:end], "<answer>")
	if start < 0 {
		return "", false
	}
	return s[start+len("<answer>") : end], true
}

func lastAnswerLine(s string) (string, bool) {
	k := indexFold(s, "answer:")
	if k < 0 {
		return "", false
	}
	rest := s[k+len("answer:"):]
	if end := strings.IndexByte(rest, '\n'); end >= 0 {
		rest = rest[:end]
	}
	return rest, true
}

// indexFold is the byte index of the last ASCII-case-insensitive match of
// lower (an ASCII lowercase needle) in s, or -1.
func indexFold(s, lower string) int {
	for i := len(s) - len(lower); i >= 0; i-- {
		match := true
		for j := 0; j < len(lower); j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}

func lastLine(s string) string {
	s = strings.TrimRightFunc(s, unicode.IsSpace)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func cleanAnswer(a string) string {
	for {
		b := strings.TrimSpace(a)
		b = strings.TrimSuffix(b, ".")
		for _, wrap := range []string{"**", "$"} {
			if len(b) >= 2*len(wrap) && strings.HasPrefix(b, wrap) && strings.HasSuffix(b, wrap) {
				b = b[len(wrap) : len(b)-len(wrap)]
			}
		}
		if b == a {
			break
		}
		a = b
	}
	if !utf8.ValidString(a) {
		a = strings.ToValidUTF8(a, "\uFFFD")
	}
	return a
}
