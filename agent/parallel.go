package agent

import (
	"context"
	"sync"
)

// Picker chooses one of several runs, returning its index or -1.
type Picker func(runs []Result) int

// FewestSteps picks the run that answered in the fewest steps (the paper's
// parallel-scaling baseline); ties go to the lower index.
func FewestSteps(runs []Result) int {
	best := -1
	for i, r := range runs {
		if r.Stop != StopAnswer {
			continue
		}
		if best < 0 || r.Steps < runs[best].Steps {
			best = i
		}
	}
	return best
}

// Verified picks, among the runs that answered and pass verify, the one with
// the fewest steps.
func Verified(verify func(Result) bool) Picker {
	return func(runs []Result) int {
		best := -1
		for i, r := range runs {
			if r.Stop != StopAnswer || !verify(r) {
				continue
			}
			if best < 0 || r.Steps < runs[best].Steps {
				best = i
			}
		}
		return best
	}
}

// ParallelResult holds N independent runs and the pick.
type ParallelResult struct {
	Best   int // index into Runs, -1 when no run qualified
	Runs   []Result
	Errors []error // per run
	Steps  int     // total model calls over all runs: the cost
}

// Parallel runs n independent trajectories at once (parallel test-time
// scaling, agent.md §4) and picks one. run gets the run's index, so it can
// vary a seed or tag its trajectory.
func Parallel(ctx context.Context, n int, run func(ctx context.Context, i int) (Result, error), pick Picker) ParallelResult {
	pr := ParallelResult{Runs: make([]Result, n), Errors: make([]error, n)}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr.Runs[i], pr.Errors[i] = run(ctx, i)
		}()
	}
	wg.Wait()
	for _, r := range pr.Runs {
		pr.Steps += r.Steps
	}
	if pick == nil {
		pick = FewestSteps
	}
	pr.Best = pick(pr.Runs)
	return pr
}
