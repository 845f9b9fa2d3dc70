//go:build !noxla

package main

import _ "github.com/gomlx/go-xla/compute/xla" // XLA, used only with a configured PJRT plugin
