#!/usr/bin/env bash
# Does chained decoding (model.Stepper.Chain: greedy steps fed from the
# device) keep the GPU busy? On the GPU machine, with the build of
# bench/donors/build.sh: first the model's and the engine's tests on XLA with
# aliased donation and asynchronous execution (no number may change; XLA
# compiles every engine's programs, so the engine's tests take minutes), then
# `dsv32 bench decode` (per step and chained) with execution synchronous
# (go-xla as released) and asynchronous, for each way of selecting the
# indexer's keys (--select), in alternation and repeated.
#
#   bench/decode_chain.sh OUTDIR
#   Env: DONORS (.gpu/dsv32-donors), TESTS (.gpu; model-donors.test, engine-donors.test; "" skips the tests),
#        SUFFIX (-donors: the test binaries' names; "" for `go test -c -tags xla` of the released build),
#        MODEL_RUN, ENGINE_RUN (-test.run patterns; defaults below),
#        DECODE_TIMEOUT (240: seconds for each bench decode run; three contexts with loops need more),
#        BATCH (1,8), CONTEXT (4096,32768), STEPS (30), REPEAT (1), TOPK (sort; e.g. "sort digits": --select),
#        WRITE (scatter; e.g. "scatter rows": --cache-write), LOOP (0; "0 1" adds --chain-loop runs,
#        digits only), SYNC (1; 0 times asynchronous execution only; with LOOP, synchronous is what the
#        device loop is for).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:?usage: $0 OUTDIR}
DONORS=${DONORS:-.gpu/dsv32-donors} TESTS=${TESTS-.gpu}
P=${P:-$(python3 -c 'import jax_plugins.xla_cuda13 as m, os; print(os.path.dirname(m.__file__))')/xla_cuda_plugin.so}
export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0 GOXLA_BUFFER_DONORS=1 P
mkdir -p "$OUTDIR"
root=$(pwd)
# Aliased and asynchronous together: the stricter of the four combinations.
# The model's tests that run programs through the stepper or compare logits
# (its gradient tests do not touch what the switches change).
declare -A only=([model]=${MODEL_RUN:-'Prefill|Dense|Cached|Chain|Step|FP8|Example|RowWrites|Digit'} [engine]=${ENGINE_RUN:-.})
declare -A limit=([model]=180 [engine]=360)
for pkg in ${TESTS:+model engine}; do
	echo "== $pkg tests on XLA, donation aliased, execution asynchronous"
	(cd "$pkg" && GOXLA_ASYNC_EXECUTE=1 DSV32_TEST_BACKEND="xla:$P" \
		timeout "${TEST_TIMEOUT:-${limit[$pkg]}}" "$root/$TESTS/$pkg${SUFFIX--donors}.test" -test.count=1 -test.v -test.run "${only[$pkg]}" \
		>"$OUTDIR/$pkg-tests.log" 2>&1)
	echo "exit $?: $(grep -E "^(--- FAIL|FAIL|PASS|ok)" "$OUTDIR/$pkg-tests.log" | head -5 | tr '\n' ' ')"
done
modes=("" 1)
if [[ ${SYNC:-1} == 0 ]]; then modes=(1); fi
for ((r = 1; r <= ${REPEAT:-1}; r++)); do
	for topk in ${TOPK:-sort}; do
		for write in ${WRITE:-scatter}; do
			for loop in ${LOOP:-0}; do
				[[ $loop == 1 && $topk != digits ]] && continue
				for async in "${modes[@]}"; do
					flags=(--select "$topk" --cache-write "$write") tag=
					if [[ $loop == 1 ]]; then flags+=(--chain-loop) tag=-loop; else flags+=(--no-chain-loop); fi
					echo "== decode, donation aliased, graphs on, execution ${async:+a}synchronous, ${flags[*]}"
					GOXLA_ASYNC_EXECUTE=$async timeout "${DECODE_TIMEOUT:-240}" "$DONORS" bench decode --backend "xla:$P" --batch "${BATCH:-1,8}" \
						--context "${CONTEXT:-4096,32768}" --steps "${STEPS:-30}" --prefill 2048 --bandwidth 1073741824 "${flags[@]}" \
						--out "$OUTDIR/decode-r$r-$topk-$write$tag${async:+-async}.json" 2>&1 |
						grep -E "^(decode|chain)|copy bandwidth"
				done
			done
		done
	done
done
