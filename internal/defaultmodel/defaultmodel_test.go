package defaultmodel

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestDirConcurrent: processes (here goroutines) racing to write the model
// all get the same complete directory, and no temporary directory remains.
func TestDirConcurrent(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	const n = 4
	dirs, errs := make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); dirs[i], errs[i] = Dir() }()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Fatalf("call %d: %q, %v (call 0: %q)", i, dirs[i], errs[i], dirs[0])
		}
	}
	if filepath.Base(dirs[0]) != Name {
		t.Errorf("directory %s is not named %s", dirs[0], Name)
	}
	for _, name := range Files {
		got, err := os.ReadFile(filepath.Join(dirs[0], name))
		want, _ := files.ReadFile(name)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: differs from the embedded file (%v)", name, err)
		}
	}
	if tmps, _ := filepath.Glob(filepath.Join(cache, "dsv32", ".tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary directories left behind: %v", tmps)
	}
}
