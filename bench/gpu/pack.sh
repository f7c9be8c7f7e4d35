#!/usr/bin/env bash
# Packs what bench/gpu/run.sh needs on a GPU machine that has no Node, no Deno and no internet, into two
# ignored folders of the repository: .gpu/ (Deno xz-compressed, the npm packages the benches and detect
# load, a 4,000 + 2,000 image CIFAR-10 subset as .npz) and .gl/ (the Vulkan loader's Debian packages).
# Together with the tracked files they stay under the 64 MiB a device run carries.
# usage: bench/gpu/pack.sh [CIFAR-10 binary tar.gz]   (from the repository root, after npm ci)
set -euo pipefail
cifar=${1:-../shared/datasets/cifar-10-binary.tar.gz}
[ -x node_modules/.bin/deno ] || { echo "pack.sh: run npm ci first (no node_modules/.bin/deno)" >&2; exit 1; }
[ -r "$cifar" ] || { echo "pack.sh: no CIFAR-10 at $cifar (give its path)" >&2; exit 1; }
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo /.gpu/ >>.git/info/exclude
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >>.git/info/exclude
mkdir -p .gpu .gl

echo "deno -> .gpu/deno.xz" >&2
xz -T0 -6 -c "$(readlink -f node_modules/.bin/deno)" >.gpu/deno.xz

echo "npm packages -> .gpu/node_modules.tar.xz" >&2
# The runtime dependencies and the tfjs peers, with everything they depend on; no types, maps or sources.
packages=$(node -e '
  const fs = require("fs");
  const seen = new Set();
  const visit = (n) => {
    const pj = `node_modules/${n}/package.json`;
    if (seen.has(n) || !fs.existsSync(pj)) return;
    seen.add(n);
    const p = JSON.parse(fs.readFileSync(pj, "utf8"));
    Object.keys({ ...p.dependencies, ...p.peerDependencies }).forEach(visit);
  };
  const root = JSON.parse(fs.readFileSync("package.json", "utf8"));
  Object.keys(root.dependencies).filter((n) => n !== "better-sqlite3").forEach(visit);
  Object.keys(root.devDependencies).filter((n) => n.startsWith("@tensorflow/")).forEach(visit);
  console.log([...seen].map((n) => `node_modules/${n}`).join(" "));
')
# shellcheck disable=SC2086
tar -cf - --exclude='*.map' --exclude='*.d.ts' --exclude='*.d.cts' --exclude='*.d.mts' --exclude='*.md' \
  --exclude='*.min.js' --exclude='*.es2017.js' --exclude='*.esm.js' --exclude='*.fesm.js' --exclude='*_test.js' \
  $packages | xz -T0 -6 >.gpu/node_modules.tar.xz

echo "CIFAR-10 subset -> .gpu/cifar-subset.npz" >&2
python3 - "$cifar" .gpu/cifar-subset.npz <<'EOF'
import sys, tarfile, numpy as np
with tarfile.open(sys.argv[1]) as t:
    read = lambda n: np.frombuffer(t.extractfile(f"cifar-10-batches-bin/{n}").read(), np.uint8).reshape(-1, 3073)
    train, test = read("data_batch_1.bin")[:4000], read("test_batch.bin")[:2000]
    names = t.extractfile("cifar-10-batches-bin/batches.meta.txt").read().decode().split()
np.savez_compressed(sys.argv[2], x_train=train[:, 1:].reshape(-1, 3, 32, 32), y_train=train[:, 0],
                    x_test=test[:, 1:].reshape(-1, 3, 32, 32), y_test=test[:, 0], classes=np.array(names))
EOF

echo "Vulkan loader -> .gl/" >&2
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
mkdir -p /tmp/amd64/partial
apt-get "${o[@]}" update >/dev/null
(cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1)
du -ch .gpu .gl $(git ls-files) | tail -1 | sed 's/total/to carry in all (limit 64 MiB)/' >&2
