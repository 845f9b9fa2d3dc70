//go:build xla

package testutil

import _ "github.com/gomlx/go-xla/compute/xla" // with -tags xla, tests can run on XLA (DSV32_TEST_BACKEND)
