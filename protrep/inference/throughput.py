"""Inference throughput: images per minute of a classifier, Chen (2020)'s headline measure."""

__all__ = ["inference_throughput"]


def inference_throughput(model, *, size=512, n_images=16, batch_size=8, device="cpu", seed=0):
    """Images per minute of ``model.predict_proba`` on random ``size`` x ``size`` images.

    The model runs in eval mode, channels-last, without gradients (as
    :func:`protrep.inference.embed.predict_cells`), after one untimed warm-up batch; on CUDA
    under bf16 autocast. Normalisation and file reading are not timed.

    Returns
    -------
    dict
        ``images_per_min``, ``seconds``, ``n_images``, ``size``, ``batch_size``, ``device``.
    """
    import time

    import torch

    device = torch.device(device)
    model = model.to(device).eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, model.config.in_channels, size, size, generator=g).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else \
        torch.autocast("cpu", enabled=False)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad(), amp:
        model.predict_proba(x)
        sync()
        n_batches = max(1, -(-n_images // batch_size))
        start = time.perf_counter()
        for _ in range(n_batches):
            model.predict_proba(x)
        sync()
        seconds = time.perf_counter() - start
    n = n_batches * batch_size
    return {"images_per_min": 60 * n / seconds, "seconds": seconds, "n_images": n, "size": size,
            "batch_size": batch_size, "device": str(device)}
