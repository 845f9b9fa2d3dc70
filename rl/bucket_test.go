package rl

import "testing"

// TestShapeBucket: every length maps to a size at least as large, with at
// most 1.5× padding past 8, through few distinct sizes (each is a compiled
// GRPO step).
func TestShapeBucket(t *testing.T) {
	for _, c := range []struct{ n, want int }{{0, 8}, {1, 8}, {8, 8}, {9, 12}, {13, 16}, {17, 24}, {25, 32}, {33, 48}, {49, 64}, {65, 96}, {1000, 1024}} {
		if got := shapeBucket(c.n); got != c.want {
			t.Errorf("shapeBucket(%d) = %d, want %d", c.n, got, c.want)
		}
	}
	sizes := map[int]bool{}
	for n := 1; n <= 4096; n++ {
		b := shapeBucket(n)
		if b < n || (n > 8 && float64(b) > 1.5*float64(n)) {
			t.Fatalf("shapeBucket(%d) = %d", n, b)
		}
		sizes[b] = true
	}
	if len(sizes) > 20 {
		t.Errorf("%d distinct sizes for lengths 1…4096", len(sizes))
	}
}
