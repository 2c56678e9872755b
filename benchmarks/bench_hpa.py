"""Inference throughput of SE-ResNet on 512 x 512 four-channel HPA images, in images per minute.

Chen (2020) reports 4,500 images per minute for an SE-ResNet on HPA Kaggle images (the
hardware is not stated). This prints, for each width, the images per minute of
``predict_proba`` (eval mode, channels-last, no gradients; bf16 autocast on CUDA) on
random 512 x 512 images after one warm-up batch, via :func:`protrep.inference.throughput.inference_throughput`,
and the ratio to that anchor. File reading and normalisation are not timed.

    python benchmarks/bench_hpa.py [--widths 0.25,1.0] [--images 32] [--batch-size 8]
        [--size 512] [--device auto|cpu|cuda]
"""

import argparse
import json
import platform

import torch

from protrep.data.hpa import HPA_CLASSES
from protrep.inference.throughput import inference_throughput
from protrep.models import ModelConfig, build_model, count_parameters
from protrep.training.runs import resolve_device

ANCHOR = 4500  # images per minute, Chen 2020


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="0.25,1.0")
    parser.add_argument("--images", type=int, default=32, help="images timed per width (after a warm-up batch)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON line per width")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# device: {device} ({name}); torch {torch.__version__}; anchor {ANCHOR} images/min (Chen 2020)")
    for width in (float(w) for w in args.widths.split(",")):
        model = build_model(ModelConfig("seresnet", in_channels=4, n_classes=len(HPA_CLASSES), image_size=args.size,
                                        width=width), seed=0)
        r = inference_throughput(model, size=args.size, n_images=args.images, batch_size=args.batch_size,
                                 device=device)
        r.update(width=width, parameters=count_parameters(model), ratio_to_anchor=r["images_per_min"] / ANCHOR)
        if args.json:
            print(json.dumps(r))
        else:
            print(f"width {width:5.3f}  {r['parameters'] / 1e6:6.2f} M params  {r['images_per_min']:9.0f} images/min "
                  f"({r['ratio_to_anchor']:.2f} x anchor)  {r['n_images']} images in {r['seconds']:.1f} s")


if __name__ == "__main__":
    main()
