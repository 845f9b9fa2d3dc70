#!/usr/bin/env bash
# Experiments for the decode step (docs/engine.md). First: GoMLX donates the
# cache buffers to each step, but go-xla v0.4.1 never marks a StableHLO
# parameter as a buffer donor, so XLA writes every updated cache into a fresh
# buffer (a device-to-device copy of all caches per step) and the buffer
# addresses change each step. This builds .gpu/dsv32-donors against a copy of
# go-xla whose main-function parameters carry `jax.buffer_donor = true` when
# GOXLA_BUFFER_DONORS is set at run time, so XLA may alias a donated input
# with an output of its shape. The repository's go.mod is untouched.
#
#   bench/donors/build.sh            # writes .gpu/dsv32-donors, .gpu/model-donors.test
#   GOXLA_BUFFER_DONORS=1 .gpu/dsv32-donors bench decode ...
#   GOXLA_BUFFER_DONORS=1 GOXLA_ASYNC_EXECUTE=1 .gpu/dsv32-donors bench decode ...   # chained steps overlap
#   BIN=.gpu/dsv32-donors GOXLA_BUFFER_DONORS=1 bench/profile_decode.sh /tmp/prof-donors
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
src=$(go list -m -f '{{.Dir}}' github.com/gomlx/go-xla)
dst=$root/.gpu/go-xla
rm -rf "$dst"
mkdir -p .gpu
cp -r "$src" "$dst"
chmod -R u+w "$dst"
f=$dst/compute/xla/function.go
perl -0pi -e 's/value, err := f\.fn\.NamedInputWithSharding\(name, ShapeToXLA\(shape\), shardySpec\)/var attrs map[string]any\n\tif f == f.builder.mainFn && os.Getenv("GOXLA_BUFFER_DONORS") != "" {\n\t\tattrs = map[string]any{"jax.buffer_donor": true}\n\t}\n\tvalue, err := f.fn.NamedInputWithShardingAndAttributes(name, ShapeToXLA(shape), shardySpec, attrs)/' "$f"
grep -q GOXLA_BUFFER_DONORS "$f" || { echo "patch did not apply to $f" >&2; exit 1; }
grep -q '"os"' "$f" || perl -0pi -e 's/import \(/import (\n\t"os"/' "$f"
# Second, GOXLA_ASYNC_EXECUTE: go-xla's Execute waits for the device to
# finish every program, so the host cannot queue a decode step while the
# previous one runs. With it set, Execute returns once the work is queued
# (PJRT's buffers carry their own readiness; reading one waits for it), which
# is what model.Stepper.Chain needs to keep the device busy.
g=$dst/pjrt/loadedexecutables.go
perl -0pi -e 's/(\tperDeviceEvents := arenaAllocSlice\[\*C\.PJRT_Event\]\(arena, numDevices\)\n\targs\.device_complete_events = \(\*\*C\.PJRT_Event\)\(unsafe\.SliceData\(perDeviceEvents\)\)\n)/\tif os.Getenv("GOXLA_ASYNC_EXECUTE") == "" {\n$1\t}\n/' "$g"
grep -q GOXLA_ASYNC_EXECUTE "$g" || { echo "patch did not apply to $g" >&2; exit 1; }
grep -q '"os"' "$g" || perl -0pi -e 's/import \(\n\t"runtime"/import (\n\t"os"\n\t"runtime"/' "$g"
cp go.mod .gpu/donors.mod
cp go.sum .gpu/donors.sum
echo "replace github.com/gomlx/go-xla => $dst" >>.gpu/donors.mod
CGO_ENABLED=1 go build -modfile=.gpu/donors.mod -ldflags "-s -w" -o .gpu/dsv32-donors ./cmd/dsv32
# The model's tests against the reference fixtures, and the engine's (greedy
# decoding against a full recompute, concurrent requests, recorded routes),
# to check that aliasing changes no number:
#   DSV32_TEST_BACKEND=xla:$P GOXLA_BUFFER_DONORS=1 .gpu/model-donors.test
#   (cd engine && DSV32_TEST_BACKEND=xla:$P GOXLA_BUFFER_DONORS=1 ../.gpu/engine-donors.test)
CGO_ENABLED=1 go test -c -tags xla -ldflags "-s -w" -modfile=.gpu/donors.mod -o .gpu/model-donors.test ./model
CGO_ENABLED=1 go test -c -tags xla -ldflags "-s -w" -modfile=.gpu/donors.mod -o .gpu/engine-donors.test ./engine
echo "wrote .gpu/dsv32-donors, .gpu/model-donors.test and .gpu/engine-donors.test"
