//go:build !unix

// Package mmap maps files read-only, so that large checkpoints and token
// shards are paged in lazily instead of read whole.
package mmap

import "os"

// Map reads the whole file where memory mapping is not available (Windows,
// Plan 9): correct, but not lazy.
func Map(path string) (data []byte, release func() error, err error) {
	data, err = os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return nil }, nil
}
