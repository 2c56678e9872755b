"""Training and inference throughput of the registered models.

For each model and width prints: training images/s (forward, backward and an SGD step
on a batch, after a warm-up step), inference images/s (``embed`` of the default
feature layer on whole 64x64 cells in eval mode; for DeepLoc that is five 60x60 crops
per cell), peak memory, and the FLOPs per image counted by
``torch.utils.flop_counter.FlopCounterMode`` (one forward pass; training counts three
times that) with the GFLOP/s achieved. A large ``torch.mm`` gives the machine's
practical peak to compare with.

Each model runs in a fresh child process so that its peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``, on CPU the process's peak resident set size
(``resource.getrusage``; it includes torch itself, shown as the baseline).

Training batches are fixed synthetic tensors (DeepLoc gets 60x60 crops, as from the
training loop); models and inputs are ``channels_last`` by default, which is also the
faster layout on CPU, and on CUDA run under bf16 autocast.

    python benchmarks/bench_models.py [--models deeploc,pci,ae] [--widths 1.0,0.25]
        [--batch-size 64] [--steps 3] [--max-seconds 15] [--device auto|cpu|cuda]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from protrep.models import REGISTRY, ModelConfig, build_model, count_parameters


def rss_mib():
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_rate(fn, n_images, device, steps, max_seconds):
    """Images per second of ``fn()`` over up to ``steps`` calls after one warm-up call.

    Stops early, after at least one timed call, once ``max_seconds`` have passed.
    """
    fn()
    sync(device)
    done, t0 = 0, time.perf_counter()
    while done < steps:
        fn()
        sync(device)
        done += 1
        if time.perf_counter() - t0 > max_seconds:
            break
    return done * n_images / (time.perf_counter() - t0), done


def measure(spec):
    """Numbers for one model and width; runs in the child process."""
    device = torch.device(spec["device"])
    fmt = torch.channels_last if spec["channels_last"] else torch.contiguous_format
    amp = device.type == "cuda"
    base = rss_mib()
    model = build_model(ModelConfig(spec["model"], width=spec["width"]), seed=0).to(device, memory_format=fmt)
    b, size = spec["batch_size"], model.config.image_size
    g = torch.Generator().manual_seed(0)
    cells = torch.rand(b, 2, size, size, generator=g)
    crop = model.train_crop or size
    batch = {
        "image": cells[..., :crop, :crop].contiguous(),
        "label": torch.randint(0, model.config.n_classes, (b,), generator=g),
        "partner": torch.rand(b, 2, size, size, generator=g),
    }
    batch = {k: (v.to(device).contiguous(memory_format=fmt) if v.ndim == 4 else v.to(device)) for k, v in batch.items()}
    cells = cells.to(device).contiguous(memory_format=fmt)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    with FlopCounterMode(display=False) as counter, autocast():
        model(batch)
    train_flops = 3 * counter.get_total_flops() / b
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.inference_mode(), autocast():
        model.embed(cells)
    infer_flops = counter.get_total_flops() / b

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step():
        with autocast():
            loss = model(batch)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_rate, train_steps = timed_rate(train_step, b, device, spec["steps"], spec["max_seconds"])
    model.eval()

    def infer():
        with torch.inference_mode(), autocast():
            model.embed(cells)

    infer_rate, infer_steps = timed_rate(infer, b, device, spec["steps"], spec["max_seconds"])
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss_mib()
    return {
        "model": spec["model"], "width": spec["width"], "params": count_parameters(model),
        "train_rate": train_rate, "train_steps": train_steps, "infer_rate": infer_rate, "infer_steps": infer_steps,
        "train_gflop": train_flops / 1e9, "infer_gflop": infer_flops / 1e9, "peak_mib": peak, "base_mib": base,
    }


def matmul_gflops(device, dtype, n, repeats=10):
    """GFLOP/s of ``torch.mm`` on ``n x n`` matrices, best of three rounds."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    sync(device)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            torch.mm(a, b)
        sync(device)
        best = max(best, repeats * 2 * n**3 / (time.perf_counter() - t0) / 1e9)
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(REGISTRY), help="comma-separated registry names")
    p.add_argument("--widths", default="1.0,0.25", help="comma-separated width multipliers (CPU default 0.25)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step) per measurement")
    p.add_argument("--max-seconds", type=float, default=15.0, help="stop timing a measurement after this long")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--contiguous", action="store_true", help="NCHW tensors instead of channels_last")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(args.child))))
        return

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        p.error(f"unknown models {unknown}; known: {sorted(REGISTRY)}")
    widths = [float(w) for w in args.widths.split(",")]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    precision = "bf16 autocast" if device.type == "cuda" else "float32"
    layout = "contiguous" if args.contiguous else "channels_last"
    print(f"torch {torch.__version__} on {name}; {precision}, {layout}, batch {args.batch_size}")
    n = 8192 if device.type == "cuda" else 2048
    line = f"matmul reference ({n}x{n} torch.mm): {matmul_gflops(device, torch.float32, n):,.0f} GFLOP/s float32"
    if device.type == "cuda":
        line += f", {matmul_gflops(device, torch.bfloat16, n):,.0f} GFLOP/s bf16"
    print(line)
    header = (f"{'model':<8} {'width':>5} {'params':>11} {'train img/s':>11} {'infer img/s':>11} "
              f"{'GFLOP/img tr|inf':>17} {'GFLOP/s tr|inf':>15} {'peak MiB':>9}")
    print(header)
    print("-" * len(header))
    bases = []
    for model_name in names:
        for width in widths:
            spec = {"model": model_name, "width": width, "device": str(device), "batch_size": args.batch_size,
                    "steps": args.steps, "max_seconds": args.max_seconds, "channels_last": not args.contiguous}
            proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode:
                print(f"{model_name:<8} {width:>5} failed:\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            flops = f"{r['train_gflop']:.3f}|{r['infer_gflop']:.3f}"
            rates = f"{r['train_rate'] * r['train_gflop']:.0f}|{r['infer_rate'] * r['infer_gflop']:.0f}"
            bases.append(r["base_mib"])
            print(f"{model_name:<8} {width:>5} {r['params']:>11,} {r['train_rate']:>11,.1f} {r['infer_rate']:>11,.1f} "
                  f"{flops:>17} {rates:>15} {r['peak_mib']:>9,.0f}", flush=True)
    if device.type == "cpu" and bases:
        print(f"peak MiB on CPU: the child process's peak RSS, torch included (~{min(bases):,.0f} MiB before building)")
    else:
        print("peak MiB on CUDA: torch.cuda.max_memory_allocated during training and inference")
    print("training FLOPs = 3 x one forward; DeepLoc inference = five 60x60 crops per cell")


if __name__ == "__main__":
    main()
