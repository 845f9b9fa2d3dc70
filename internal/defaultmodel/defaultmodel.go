// Package defaultmodel embeds the small model that dsv32 runs when no --model
// is given: a 1.4M-parameter DeepSeek-V3.2-architecture model (MLA, lightning
// indexer, DeepSeekMoE) with its own 1427-id BPE, trained by this repository's
// stack on synthetic stories, arithmetic and conversations. It is a toy; its
// card, with every training command, is docs/default-model.md, and
// scripts/train-default-model.sh retrains it.
//
// model.Load and tokenizer.Load read directories, so Dir writes the embedded
// files once into the user's cache directory, under a name keyed by their
// hash, and returns that directory.
package defaultmodel

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

//go:embed config.json model.safetensors tokenizer.json
var files embed.FS

// Files are the embedded model's files, as model.Load expects them in a
// directory.
var Files = []string{"config.json", "model.safetensors", "tokenizer.json"}

// FS returns the embedded files.
func FS() fs.FS { return files }

// Hash is the first 16 hex digits of the SHA-256 over the embedded files'
// names and contents; it names the cache directory.
func Hash() string { return hash() }

var hash = sync.OnceValue(func() string {
	h := sha256.New()
	for _, name := range Files {
		data, err := files.ReadFile(name)
		if err != nil {
			panic(err) // embedded at build time: cannot happen
		}
		fmt.Fprintf(h, "%s %d\n", name, len(data))
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
})

// Name is the last element of Dir's path, and so the name `dsv32 serve`
// serves the default model under.
const Name = "dsv32-default"

// Dir returns a directory holding the embedded model: os.UserCacheDir()/dsv32/
// default-<hash>/dsv32-default (os.TempDir() when there is no cache
// directory). It is written on first use into a temporary directory beside
// default-<hash> and renamed into place, so a reader never sees half a model
// and concurrent processes do not collide.
// Later calls find the directory complete and write nothing.
func Dir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	base = filepath.Join(base, "dsv32")
	final := filepath.Join(base, "default-"+Hash())
	if complete(filepath.Join(final, Name)) {
		return filepath.Join(final, Name), nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	tmp, err := os.MkdirTemp(base, ".tmp-default-")
	if err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Mkdir(filepath.Join(tmp, Name), 0o755); err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	for _, name := range Files {
		data, err := files.ReadFile(name)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(tmp, Name, name), data, 0o644); err != nil {
			return "", fmt.Errorf("default model: %w", err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("default model: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another process may have renamed its copy into place first.
		if complete(filepath.Join(final, Name)) {
			return filepath.Join(final, Name), nil
		}
		return "", fmt.Errorf("default model: %w", err)
	}
	return filepath.Join(final, Name), nil
}

// complete reports whether dir holds every embedded file at its embedded size.
func complete(dir string) bool {
	for _, name := range Files {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return false
		}
		data, _ := files.ReadFile(name)
		if fi.Size() != int64(len(data)) {
			return false
		}
	}
	return true
}
