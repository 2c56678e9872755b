#!/usr/bin/env bash
# Run a command as on the slowest machine CI has been seen on (fp32 matmul ~100-110 GFLOP/s:
# two vCPUs that give 1.4-1.9x one, AVX2/FMA and no AVX-512), emulated on a faster one:
# pinned to one core (CORE, default 0), with PyTorch, MKL and oneDNN held to AVX2 kernels.
#
#   benchmarks/slow_machine.sh .venv/bin/python scripts/run_book.py run --profile default
#   CORE=1 benchmarks/slow_machine.sh .venv/bin/python benchmarks/quality_vs_compute.py ...
#
# Measured on a 2-core AVX-512 machine (349 GFLOP/s with both cores): 114 GFLOP/s under this
# emulation; chapters 1 and 2 took 50 s and 454 s, against 56 s and 504 s on the real slow
# machine, so the emulation runs ~10% faster than that machine (its timing table scales by
# the matmul rate it measures, which absorbs most of the difference).
set -euo pipefail
export MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2
exec taskset -c "${CORE:-0}" "$@"
