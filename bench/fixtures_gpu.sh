#!/usr/bin/env bash
# The model's reference-fixture tests on the GPU, for this tree and for
# earlier commits: finds the commit where XLA-on-GPU numbers left the
# reference (docs/model.md). The Go backend runs these tests in CI; the GPU
# machine has no Go, so the test binaries are built here.
#
#   bench/fixtures_gpu.sh build [REV...]   # here: .gpu/fixtures/model-<rev>.test (stripped; the working tree as "work")
#   bench/fixtures_gpu.sh run OUTDIR        # on the GPU machine: each binary's fixture tests, one summary line each
#
# run then repeats the tests of the binaries whose name matches VARIANT_ON
# (a regular expression, default work) under each of VARIANTS
# (';'-separated environment settings), to tell a change in the code from
# one in how the machine's XLA computes (TF32 in cuBLAS, Triton GEMMs). This
# tree's tests turn TF32 off themselves (internal/testutil); older ones may not.
#
# Binaries of earlier commits run from this checkout's model/ directory, but
# those whose testutil finds testdata from its source path look in the
# removed work tree they were built in, and fail to open the fixtures (as in
# session 8: docs/bench/session8_h200/fixtures-summary.txt).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
dir=$root/.gpu/fixtures
case ${1:-} in
build)
	shift
	mkdir -p "$dir"
	CGO_ENABLED=1 go test -c -tags xla -ldflags "-s -w" -o "$dir/model-work.test" ./model || exit 1
	for rev in "$@"; do
		short=$(git rev-parse --short "$rev") || exit 1
		wt=$(mktemp -d)
		git worktree add --quiet --detach "$wt" "$rev" || exit 1
		(cd "$wt" && CGO_ENABLED=1 go test -c -tags xla -ldflags "-s -w" -o "$dir/model-$short.test" ./model)
		rc=$?
		git worktree remove --force "$wt"
		[[ $rc == 0 ]] || exit $rc
	done
	ls -la "$dir"
	;;
run)
	out=${2:?usage: $0 run OUTDIR}
	mkdir -p "$out"
	P=${P:-$(python3 -c 'import jax_plugins.xla_cuda13 as m, os; print(os.path.dirname(m.__file__))')/xla_cuda_plugin.so}
	export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0
	one() { # name binary env...
		local name=$1 bin=$2
		shift 2
		(cd model && env "$@" DSV32_TEST_BACKEND="xla:$P" timeout "${TEST_TIMEOUT:-120}" "$bin" -test.count=1 -test.v \
			-test.run "${RUN:-MatchesReference|Dense|FP8}" >"$out/$name.log" 2>&1)
		local rc=$?
		local worst
		worst=$(grep -oE "(hidden_[0-9]+|logits|decode_logits)[^:]*: rel [0-9.e+-]+" "$out/$name.log" | sort -t' ' -k3 -g | tail -1)
		echo "$name${*:+ ($*)}: exit $rc, $(grep -c -- '^--- FAIL' "$out/$name.log") failed; worst: ${worst:-none}"
	}
	for bin in "$dir"/model-*.test; do
		one "$(basename "$bin" .test)" "$bin"
	done
	IFS=';' read -ra variants <<<"${VARIANTS-NVIDIA_TF32_OVERRIDE=0;NVIDIA_TF32_OVERRIDE=0 XLA_FLAGS=--xla_gpu_enable_triton_gemm=false}"
	for bin in "$dir"/model-*.test; do
		name=$(basename "$bin" .test)
		[[ $name =~ ${VARIANT_ON:-work} ]] || continue
		for i in "${!variants[@]}"; do
			read -ra kv <<<"${variants[$i]}"
			one "$name-v$((i + 1))" "$bin" "${kv[@]}"
		done
	done
	;;
*)
	echo "usage: $0 build [REV...] | run OUTDIR" >&2
	exit 2
	;;
esac
