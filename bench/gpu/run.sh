#!/usr/bin/env bash
# The GPU run, on an NVIDIA machine with no Node, no Deno and no internet: unpacks what bench/gpu/pack.sh
# left in .gpu/ and .gl/, then runs the matmul, train, attribute and winograd benches, one ResNet-9 epoch of
# CIFAR-10's size (50,000 images) and a detect on the carried CIFAR-10 subset. Every step has its share of
# the time budget; each writes its JSON (stdout) to OUT_DIR/NAME.json and its progress to OUT_DIR/run.log.
# The PyTorch peer rows use CUDA where the machine's python3 has it.
# usage: bench/gpu/run.sh OUT_DIR [SECONDS]   (from the repository root; SECONDS defaults to 480)
#        QUICK=1 bench/gpu/run.sh OUT_DIR     (small sizes: a dry run of the script on any adapter)
#        ONLY="matmul detect" bench/gpu/run.sh OUT_DIR   (those steps alone, each with its usual share)
set -uo pipefail
out=${1:?usage: bench/gpu/run.sh OUT_DIR [SECONDS]}
budget=${2:-480}
mkdir -p "$out"
log() { echo "[$SECONDS s] $*" | tee -a "$out/run.log" >&2; }

# The Vulkan loader, unless the machine has one; the NVIDIA driver's manifest where the loader misses it.
if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -r "$icd" ] && export VK_DRIVER_FILES=$icd
mkdir -p /tmp/gpu-run
if ! command -v deno >/dev/null; then
  xz -dc .gpu/deno.xz >/tmp/gpu-run/deno && chmod +x /tmp/gpu-run/deno
  export PATH=/tmp/gpu-run:$PATH
fi
[ -d node_modules/zod ] || tar -xJf .gpu/node_modules.tar.xz
export XDG_RUNTIME_DIR=/tmp DENO_NO_UPDATE_CHECK=1 DENO_DIR=/tmp/gpu-run/deno-dir

{
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv 2>&1 || echo "no nvidia-smi"
  deno --version | head -1
  deno eval 'const a = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    const i = a?.info;
    console.log(a ? `${i.vendor} ${i.architecture} ${i.device} ${i.description}` : "no WebGPU adapter");'
} >"$out/machine.txt" 2>&1
tee -a "$out/run.log" <"$out/machine.txt" >&2
python3 -c 'import torch; exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && export TORCH_DEVICE=cuda

# step NAME SHARE_OF_BUDGET_PERCENT ARGS...: `deno run src/cli/run.ts ARGS`, bounded by its share.
step() {
  local name=$1 share=$2 t0=$SECONDS
  shift 2
  [[ -z "${ONLY:-}" || " $ONLY " == *" $name "* ]] || return 0
  log "$name: $* (at most $((budget * share / 100)) s)"
  timeout --kill-after=5 $((budget * share / 100)) deno run -A --no-check src/cli/run.ts "$@" \
    >"$out/$name.json" 2>>"$out/run.log"
  log "$name: exit $? after $((SECONDS - t0)) s"
}

if [ -n "${QUICK:-}" ]; then
  step matmul 20 bench matmul --sizes 256 --json
  step train 25 bench train --json
  step attribute 25 bench attribute --model trak-cnn --sizes 64 --json
  step winograd 5 bench winograd --sizes 8 --json
  step detect 25 detect --data .gpu/cifar-subset.npz --attack badnets --train 400 --test-size 200 \
    --epochs 1 --json --quiet --out /tmp/gpu-run/detect
  exit 0
fi
step matmul 17 bench matmul --sizes 1024,2048,4096,8192 --json
step train-resnet9 28 bench train --model resnet9 --sizes 50000 --json
step train 16 bench train --json
step attribute 16 bench attribute --model trak-cnn --json
# Whether Winograd wins there too (kernels/winograd.ts winogradWins decides for every adapter).
step winograd 5 bench winograd --sizes 512 --json
step detect 18 detect --data .gpu/cifar-subset.npz --attack badnets --json --quiet --out /tmp/gpu-run/detect
log "done"
