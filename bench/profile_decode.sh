#!/usr/bin/env bash
# A kernel-level profile of one decode point of `dsv32 bench decode` on the
# GPU machine: builds bench/ktrace (a CUPTI injection library; the machine has
# no nsys), records every kernel and copy, and prints the step's GPU span, busy
# time, kernel count and the costliest kernels. Also dumps the optimised HLO,
# whose fusion names are the kernel names.
#
#   bench/profile_decode.sh OUTDIR [extra bench decode flags, e.g. --config c.json]
#   Env: BIN (default .gpu/dsv32), BATCH (1), CONTEXT (4096), STEPS (20).
set -euo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:?usage: $0 OUTDIR [bench decode flags]}
shift
BIN=${BIN:-.gpu/dsv32}
CUDA=${CUDA:-/usr/local/cuda}
P=${P:-$(python3 -c 'import jax_plugins.xla_cuda13 as m, os; print(os.path.dirname(m.__file__))')/xla_cuda_plugin.so}
export GOMLX_NO_AUTO_INSTALL=1
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
INC=$CUDA/extras/CUPTI/include LIB=$CUDA/extras/CUPTI/lib64 # older toolkits; CUDA 13 keeps CUPTI with the rest
[[ -f $INC/cupti_activity.h ]] || INC=$CUDA/include LIB=$CUDA/lib64
latest() { grep -ho "$1[0-9]*\b" "$INC"/cupti_activity*.h | sort -uV | tail -1; }
KREC=$(latest CUpti_ActivityKernel) MREC=$(latest CUpti_ActivityMemcpy)
echo "== ktrace with $KREC, $MREC"
"$CUDA/bin/nvcc" -shared -Xcompiler -fPIC -DKREC="$KREC" -DMREC="$MREC" -I"$INC" \
	-o "$OUTDIR/ktrace.so" bench/ktrace/ktrace.c -L"$LIB" -lcupti
export LD_LIBRARY_PATH=$LIB:${LD_LIBRARY_PATH:-}
rm -rf "$OUTDIR/hlo"
XLA_FLAGS="${XLA_FLAGS:-} --xla_dump_to=$OUTDIR/hlo --xla_dump_hlo_as_text" \
	CUDA_INJECTION64_PATH=$OUTDIR/ktrace.so KTRACE_OUT=$OUTDIR/trace.csv KTRACE_FLUSH_MS=200 \
	"$BIN" bench decode --backend "xla:$P" --batch "${BATCH:-1}" --context "${CONTEXT:-4096}" --steps "${STEPS:-20}" \
	--prefill 2048 --bandwidth 268435456 "$@"
sleep 1
python3 bench/ktrace/report.py "$OUTDIR/trace.csv" --steps "${STEPS:-20}" | tee "$OUTDIR/report.txt"
