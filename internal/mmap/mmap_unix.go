//go:build unix

// Package mmap maps files read-only, so that large checkpoints and token
// shards are paged in lazily instead of read whole.
package mmap

import (
	"fmt"
	"math"
	"os"
	"syscall"
)

// Map maps the whole file read-only; release unmaps it. The mapping outlives
// the descriptor. Reading a page of a file truncated after mapping faults
// (callers that must survive that recover with debug.SetPanicOnFault).
func Map(path string) (data []byte, release func() error, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	size := st.Size()
	if size == 0 {
		return []byte{}, func() error { return nil }, nil
	}
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("%s: %d bytes are too many to map", path, size)
	}
	data, err = syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
