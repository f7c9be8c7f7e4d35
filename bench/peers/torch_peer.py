"""The PyTorch peer of our benches: the same network (given as our layer list), batch and k.

usage: python3 bench/peers/torch_peer.py train|featurize --model JSON [--batch B] [--k K]
                                         [--device cpu|cuda] [--threads T] [--min-seconds S]
Prints one JSON object on stdout: {"torch", "device", "threads", "img_per_s" | "ex_per_s", ...}.
Runs on Debian's python3-torch (1.13: functorch) and on PyTorch 2 (torch.func).
"""

import argparse
import json
import os
import time

import torch
import torch.nn as nn

try:
    from torch.func import functional_call, grad, vmap
except ImportError:  # PyTorch 1.13
    from functorch import grad, vmap
    from torch.nn.utils.stateless import functional_call


class Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class GlobalPool(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x):
        return x.amax(dim=(2, 3)) if self.kind == "max" else x.mean(dim=(2, 3))


def build(layers: list, shape: list) -> tuple[nn.Sequential, list]:
    """Our LayerSpec list (src/nn/models.ts) as torch modules; `shape` is [c, h, w] or [features]."""
    mods = []
    for spec in layers:
        t = spec["type"]
        if t == "conv":
            k = spec.get("kernel", 3)
            s = spec.get("stride", 1)
            p = spec.get("padding", k // 2)
            mods.append(nn.Conv2d(shape[0], spec["out"], k, s, p, bias=spec.get("bias", False)))
            shape = [spec["out"], (shape[1] + 2 * p - k) // s + 1, (shape[2] + 2 * p - k) // s + 1]
        elif t == "batchnorm":
            mods.append(nn.BatchNorm2d(shape[0]) if len(shape) == 3 else nn.BatchNorm1d(shape[0]))
        elif t == "relu":
            mods.append(nn.ReLU())
        elif t == "maxpool":
            mods.append(nn.MaxPool2d(2))
            shape = [shape[0], shape[1] // 2, shape[2] // 2]
        elif t == "globalpool":
            mods.append(GlobalPool(spec.get("kind", "max")))
            shape = [shape[0]]
        elif t == "flatten":
            mods.append(nn.Flatten())
            shape = [shape[0] * shape[1] * shape[2]] if len(shape) == 3 else shape
        elif t == "dense":
            mods.append(nn.Linear(shape[0], spec["out"], bias=spec.get("bias", True)))
            shape = [spec["out"]]
        elif t == "scale":
            mods.append(Scale(spec["factor"]))
        elif t == "residual":
            body, _ = build(spec["layers"], shape)
            mods.append(Residual(body))
        else:
            raise ValueError(f"layer type {t} has no torch twin here")
    return nn.Sequential(*mods), shape


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(step, device: str, min_seconds: float) -> float:
    """Median seconds per call of step() over 3 samples of at least min_seconds each (after a warm-up)."""
    for _ in range(3):
        step()
    sync(device)
    reps, samples = 1, []
    while len(samples) < 3:
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        sync(device)
        dt = time.perf_counter() - t0
        if dt < min_seconds and not samples:
            reps = max(reps + 1, int(reps * min_seconds * 1.2 / max(dt, 1e-6)))
            continue
        samples.append(dt / reps)
    return sorted(samples)[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("task", choices=["train", "featurize"])
    ap.add_argument("--model", required=True, help='{"input": [c, h, w], "classes": C, "layers": [...]}')
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--k", type=int, default=512)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: every core")
    ap.add_argument("--min-seconds", type=float, default=2.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.loads(a.model)
    model, _ = build(cfg["layers"], list(cfg["input"]))
    model = model.to(a.device)
    params = sum(p.numel() for p in model.parameters())
    x = torch.rand(a.batch, *cfg["input"], device=a.device)
    y = torch.randint(0, cfg["classes"], (a.batch,), device=a.device)
    out = {"torch": torch.__version__, "device": a.device, "threads": torch.get_num_threads(), "params": params}

    if a.task == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
        loss_fn = nn.CrossEntropyLoss()

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()

        s = timed(step, a.device, a.min_seconds)
        out.update(batch=a.batch, img_per_s=a.batch / s)
    else:
        # TRAK's featurisation: per-example gradients of the margin (logit of the label minus logsumexp of
        # the others), projected by a stored Gaussian P x k matrix, as trak's CPU projector does.
        model.eval()
        names = [n for n, _ in model.named_parameters()]
        values = tuple(p.detach() for p in model.parameters())
        buffers = dict(model.named_buffers())

        def margin(ps, xi, yi):
            logits = functional_call(model, ({**dict(zip(names, ps)), **buffers}), (xi.unsqueeze(0),))[0]
            label = torch.arange(logits.shape[0], device=logits.device) == yi
            return (logits * label).sum() - torch.logsumexp(logits.masked_fill(label, float("-inf")), 0)

        per_example = vmap(grad(margin), in_dims=(None, 0, 0))
        proj = torch.randn(params, a.k, device=a.device) / a.k**0.5

        def step():
            g = per_example(values, x, y)
            flat = torch.cat([t.reshape(a.batch, -1) for t in g], 1)
            return flat @ proj

        s = timed(step, a.device, a.min_seconds)
        out.update(batch=a.batch, k=a.k, ex_per_s=a.batch / s)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
