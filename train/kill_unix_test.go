//go:build unix

package train

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dsv32/dsv32/internal/testutil"
)

// TestSIGKILLWhileSaving kills a training process (SIGKILL, no clean-up)
// in the middle of its second save, after the weights are written and
// before the optimizer state: the first checkpoint must stay intact and
// the run must resume from it.
func TestSIGKILLWhileSaving(t *testing.T) {
	cfg := resumeConfig()
	cfg.Accum, cfg.SaveEvery, cfg.Steps = 1, 2, 4
	if out := os.Getenv("DSV32_TRAIN_KILL_OUT"); out != "" { // the child
		run := &Run{Backend: testutil.Backend(t), Model: tinyModel(t), Config: cfg, Data: corpus(t, cfg.SeqLen, cfg), Out: out,
			failSave: func(what string) error {
				if what == "model" && len(mustList(t, out)) == 1 {
					syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
				return nil
			}}
		run.Do(context.Background())
		t.Fatal("the child was not killed")
	}
	out := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLWhileSaving$")
	cmd.Env = append(os.Environ(), "DSV32_TRAIN_KILL_OUT="+out)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want death by SIGKILL", err)
	}
	if _, err := os.Stat(filepath.Join(out, ".tmp-step-00000004", "model.safetensors")); err != nil {
		t.Fatalf("the kill did not land mid-save: %v", err)
	}
	if steps := mustList(t, out); len(steps) != 1 || steps[0] != 2 {
		t.Fatalf("checkpoints %v after the kill, want [2]", steps)
	}
	be := testutil.Backend(t)
	res, err := (&Run{Backend: be, Data: corpus(t, cfg.SeqLen, cfg), Out: out, Resume: out}).Do(context.Background())
	if err != nil {
		t.Fatalf("resume after the kill: %v", err)
	}
	if res.Trainer.StepsDone() != 4 {
		t.Errorf("resumed run ended at step %d", res.Trainer.StepsDone())
	}
	if _, err := os.Stat(filepath.Join(out, ".tmp-step-00000004")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed save's temporary directory is still there: %v", err)
	}
}
