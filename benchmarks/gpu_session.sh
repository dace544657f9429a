#!/bin/bash
# One lease on a GPU machine (H100/H200), run from the repository root there:
#   bash benchmarks/gpu_session.sh STEP...      (steps below; output under $OUT)
# Needs the wheels of ../shared/bench/fetch_gpu_wheels.sh in .whl/stack and, for BenchMARL,
# those of fetch_benchmarl_wheels.sh in .whl/bm and .whl/common (carry: .whl). The steps used for
# docs/benchmarks.md's GPU table, e.g. one call of the device tool:
#   bash benchmarks/gpu_session.sh mappo-all maddpg-benchmarl masac-benchmarl 2>&1 | tee $OUT/log
# and for the rest of docs/benchmarks.md's GPU section:
#   bash benchmarks/gpu_session.sh probe to90 balance-benchmarl profile-eager profile
# Each step has its own timeout, and rows are printed as they finish.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
pip_target() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$@"; }
pip_target /tmp/site .whl/stack/*.whl || exit 1
[ -d .whl/bm ] && { pip_target /tmp/benchmarl .whl/common/*.whl .whl/bm/*.whl || exit 1; }
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv,noheader
python3 -c "import torch, torchrl, vmas; print('torch', torch.__version__, 'torchrl', torchrl.__version__)"
V=benchmarks/vs_benchmarl.py
EAGER=(--variant eager=); CG=(--variant cudagraphs=algo.cudagraphs=true)
BM=(--benchmarl-site /tmp/benchmarl)
for step in "$@"; do
  echo "=== $step $(date +%T)"
  case $step in
    mappo-all) timeout 240 python3 $V --algo mappo --task navigation --iters 3 --device cuda --timeout 150 "${BM[@]}" "${EAGER[@]}" "${CG[@]}" ;;
    balance-cg) timeout 100 python3 $V --algo mappo --task balance --iters 3 --device cuda --timeout 80 "${CG[@]}" ;;
    balance-benchmarl) timeout 200 python3 $V --algo mappo --task balance --iters 3 --device cuda --timeout 150 "${BM[@]}" "${CG[@]}" ;;
    maddpg-cg|masac-cg) timeout 100 python3 $V --algo ${step%-cg} --iters 3 --device cuda --timeout 90 --no-ceiling "${CG[@]}" ;;
    maddpg-benchmarl|masac-benchmarl) timeout 200 python3 $V --algo ${step%-benchmarl} --iters 3 --device cuda --timeout 120 --no-ceiling "${BM[@]}" "${CG[@]}" ;;
    profile|profile-eager) # the captured run (profile) or the eager one (profile-eager): the before/after breakdown,
             # 2 iterations of 600 envs x 20 steps and 3 epochs (the profiler's summary of 60 000-frame iterations takes minutes)
             [ $step = profile ] && P=algo.cudagraphs=true || P=
             timeout 90 python3 benchmarks/profile_fit.py --algo mappo --rows 25 -- trainer=gpu env.device=cuda env.num_envs=600 \
               collector.frames_per_batch=12000 collector.total_frames=24000 algo.num_epochs=3 algo.minibatch_size=4096 $P > "$OUT/$step.txt" 2>&1
             grep -E "^sync|kernel launches|Self CPU time total|Self CUDA time total" "$OUT/$step.txt" ;;
    probe) timeout 60 python3 benchmarks/vmas_step_capture.py --num-envs 600 ;;
    rollout) # TorchRL's collector against collector=cudagraph, navigation and balance
             for task in navigation balance; do timeout 90 python3 benchmarks/captured_rollout.py --task $task --batches 3; done ;;
    captured-rest) # the captured rollout for the off-policy work, balance, and time to 0.9 (BenchMARL's rows: other calls)
             CAP=(--variant "captured=algo.cudagraphs=true collector=cudagraph")
             for a in maddpg masac; do timeout 100 python3 $V --algo $a --iters 3 --device cuda --timeout 90 --no-ceiling "${CAP[@]}"; done
             timeout 100 python3 $V --algo mappo --task balance --iters 3 --device cuda --timeout 90 --no-ceiling "${CAP[@]}"
             ;;
    maddpg-captured) timeout 160 python3 $V --algo maddpg --iters 3 --device cuda --timeout 70 --no-ceiling \
               --variant "captured=algo.cudagraphs=true collector=cudagraph" ;;
    maddpg-vs|masac-vs|mappo-vs) # MADDPG/MASAC/MAPPO captured (rollout and update) against BenchMARL on the same card
             timeout 230 python3 $V --algo ${step%-vs} --iters 3 --device cuda --timeout 100 --no-ceiling "${BM[@]}" \
               --variant "captured=algo.cudagraphs=true collector=cudagraph" ;;
    captured) # MAPPO with the update and the rollout captured, against BenchMARL and the update alone captured
             timeout 330 python3 $V --algo mappo --task ${TASK:-navigation} --iters 3 --device cuda --timeout 120 "${BM[@]}" "${CG[@]}" \
               --variant "captured=algo.cudagraphs=true collector=cudagraph" ;;
    tf32) # MAPPO captured with cuBLAS's TF32 matmuls forced (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1, the whole process):
          # seconds per iteration at BenchMARL's work, then time to 0.9 with 600 envs (compare with to90's float32 run)
          export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1
          timeout 100 python3 $V --algo mappo --iters 3 --device cuda --timeout 90 --no-ceiling \
            --variant "captured-tf32=algo.cudagraphs=true collector=cudagraph"
          timeout 60 python3 $V --algo mappo --task navigation --device cuda --to-return 0.9 --total-frames 600000 --timeout 50 \
            --extra "algo.cudagraphs=true collector=cudagraph env.num_envs=600"
          unset TORCH_ALLOW_TF32_CUBLAS_OVERRIDE ;;
    to90) # one run per ';'-separated config in TO90, each with TO90_TIMEOUT seconds (start-up included)
          IFS=';' read -ra CONFIGS <<< "${TO90:-algo.cudagraphs=true;algo.cudagraphs=true env.num_envs=200;algo.cudagraphs=true env.num_envs=600}"
          for c in "${CONFIGS[@]}"; do
            timeout $(( ${TO90_TIMEOUT:-50} + 10 )) python3 $V --algo mappo --task navigation --device cuda --to-return 0.9 \
              --total-frames ${TO90_FRAMES:-600000} --timeout ${TO90_TIMEOUT:-50} --extra "$c"
          done ;;
    *) echo "unknown step $step" ;;
  esac
done
