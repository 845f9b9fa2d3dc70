package engine

import "testing"

// A device loop compiles a program per step count: chains round down to
// powers of two, never up (a chain must not pass a row's budget).
func TestLoopSteps(t *testing.T) {
	for _, c := range []struct{ k, want int }{
		{0, 0}, {1, 1}, {2, 2}, {3, 2}, {4, 4}, {5, 4}, {7, 4}, {8, 8}, {9, 8}, {31, 16},
	} {
		if got := loopSteps(c.k); got != c.want {
			t.Errorf("loopSteps(%d) = %d, want %d", c.k, got, c.want)
		}
	}
}
