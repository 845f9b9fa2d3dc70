#!/usr/bin/env bash
# Do XLA's CUDA graphs (command buffers) pay off for the decode step? On the
# GPU machine: `dsv32 bench decode` with graphs off (dsv32's default) and on,
# each with and without aliased cache donation (bench/donors/build.sh), in
# alternation and repeated, then one traced run with graphs on that counts the
# graph nodes XLA updates before each launch (bench/ktrace, KTRACE_API=1).
# A graph replays in one launch only if no buffer it uses moved since the
# last step; otherwise XLA updates every node that uses one that did.
#
#   bench/decode_graphs.sh OUTDIR
#   Env: BIN (.gpu/dsv32), DONORS (.gpu/dsv32-donors; skipped if missing),
#        BATCH (1,8), CONTEXT (4096), STEPS (40), REPEAT (2).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:?usage: $0 OUTDIR}
BIN=${BIN:-.gpu/dsv32} DONORS=${DONORS:-.gpu/dsv32-donors}
P=${P:-$(python3 -c 'import jax_plugins.xla_cuda13 as m, os; print(os.path.dirname(m.__file__))')/xla_cuda_plugin.so}
export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0 P
mkdir -p "$OUTDIR"
point() { # NAME BIN GRAPHS(true|false) [env…]
	local name=$1 bin=$2 graphs=$3
	shift 3
	echo "== $name"
	# Graphs off said in XLA_FLAGS: with GOXLA_BUFFER_DONORS set they are on by default.
	if [[ $graphs == false ]]; then set -- "$@" XLA_FLAGS=--xla_gpu_enable_command_buffer=; fi
	env "$@" timeout 120 "$bin" bench decode --backend "xla:$P" --cuda-graphs="$graphs" --batch "${BATCH:-1,8}" \
		--context "${CONTEXT:-4096}" --steps "${STEPS:-40}" --prefill 2048 --bandwidth 1073741824 2>&1 | grep "^decode"
}
for ((r = 1; r <= ${REPEAT:-2}; r++)); do
	point "graphs off" "$BIN" false
	point "graphs on" "$BIN" true
	if [[ -x $DONORS ]]; then
		point "graphs off, donated caches aliased" "$DONORS" false GOXLA_BUFFER_DONORS=1
		point "graphs on, donated caches aliased" "$DONORS" true GOXLA_BUFFER_DONORS=1
	fi
done
traced() { # NAME BIN [env…]
	local name=$1 bin=$2
	shift 2
	echo "== traced: $name"
	env KTRACE_API=1 BIN="$bin" BATCH=1 "$@" timeout 150 bench/profile_decode.sh "$OUTDIR/$name" --cuda-graphs 2>&1 |
		grep -E "^decode|graphs|^steps|^copies|^driver|cuGraph|cuLaunchKernel"
}
traced graphs "$BIN"
if [[ -x $DONORS ]]; then traced graphs-donors "$DONORS" GOXLA_BUFFER_DONORS=1; fi
# XLA's own account: how often it re-records the graph, and how many commands.
echo "== XLA's log of graph updates (batch 1; the last lines)"
TF_CPP_MIN_LOG_LEVEL=0 TF_CPP_VMODULE=command_buffer_thunk=3 timeout 120 "$BIN" bench decode --backend "xla:$P" --cuda-graphs \
	--batch 1 --context 4096 --steps 20 --prefill 2048 --bandwidth 1073741824 >"$OUTDIR/xla-vlog.txt" 2>&1
grep -c "Update command buffer" "$OUTDIR/xla-vlog.txt"
grep "Update command buffer\|Updated command buffer" "$OUTDIR/xla-vlog.txt" | tail -4
