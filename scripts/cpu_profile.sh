#!/usr/bin/env bash
# Run a command as another x86-64 CPU would round floats: scripts/cpu_profile.sh generic|avx2|native CMD...
# torch's own kernels (ATEN_CPU_CAPABILITY), oneDNN's convolutions (ONEDNN_MAX_CPU_ISA) and MKL's BLAS/LAPACK (MKL_CBWR)
# each pick a code path from the CPU; all three are pinned, so a machine with AVX-512 reproduces an AVX2-only or a
# pre-AVX machine's results (ATEN_CPU_CAPABILITY alone leaves convolutions and matmuls on the native path).
set -euo pipefail
profile=${1:?usage: cpu_profile.sh generic|avx2|native CMD...}; shift
case "$profile" in
  generic) export ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_CBWR=COMPATIBLE ;;
  avx2)    export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_CBWR=AVX2 ;;
  native)  ;;
  *) echo "cpu_profile.sh: unknown profile '$profile' (generic, avx2, native)" >&2; exit 2 ;;
esac
exec "$@"
