"""Model registry: every registered model builds, trains, embeds and round-trips its config.

All on CPU, on narrow models (width 0.125-0.25) and batches of a few synthetic cells.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from protrep.models import REGISTRY, ModelConfig, build_model, count_parameters, five_crops

NAMES = sorted(REGISTRY)
SIZE = 64


def synthetic_cells(n, *, seed=0, size=SIZE, n_classes=4):
    """A batch of toy yeast cells: RFP a round cell body, GFP a class-specific pattern.

    Class 0 puts the protein in a central blob (nucleus), 1 on the cell's rim, 2 all
    over the cell, 3 in a few dots. ``partner`` is another cell of the same class.
    """
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")

    def cell(label):
        cy, cx = (size / 2 + 6 * (torch.rand(2, generator=g) - 0.5)).tolist()
        radius = size * (0.25 + 0.08 * torch.rand(1, generator=g).item())
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        body = torch.sigmoid((radius - d) / 1.5)
        if label == 0:
            gfp = torch.exp(-(d / (radius * 0.35)) ** 2)
        elif label == 1:
            gfp = torch.exp(-((d - radius) / 2.0) ** 2)
        elif label == 2:
            gfp = body.clone()
        else:
            gfp = torch.zeros(size, size)
            for _ in range(4):
                r, a = radius * 0.7 * torch.rand(1, generator=g).item(), 2 * math.pi * torch.rand(1, generator=g).item()
                py, px = cy + r * math.sin(a), cx + r * math.cos(a)
                gfp += torch.exp(-((yy - py) ** 2 + (xx - px) ** 2) / 4.0)
        noise = 0.02 * torch.rand(2, size, size, generator=g)
        return torch.stack([gfp * body, body]) + noise

    labels = torch.arange(n) % n_classes
    image = torch.stack([cell(int(k)) for k in labels])
    partner = torch.stack([cell(int(k)) for k in labels])
    return {"image": image, "label": labels, "partner": partner}


def training_batch(model, batch):
    """``batch`` as the training loop hands it to ``model``: centre crops of ``train_crop``."""
    if model.train_crop is None:
        return batch
    c = model.train_crop
    top = (SIZE - c) // 2
    return {**batch, "image": batch["image"][..., top:top + c, top:top + c]}


def small(name, width=0.125, **kw):
    return build_model(ModelConfig(name, width=width, **kw), seed=0)


# --------------------------------------------------------------------------------------
# Every model


@pytest.mark.parametrize("name", NAMES)
def test_forward_gives_finite_loss_and_gradients_everywhere(name):
    model = small(name)
    out = model(training_batch(model, synthetic_cells(6)))
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} gets no gradient"


@pytest.mark.parametrize("name", NAMES)
def test_uses_partner_says_whether_the_loss_reads_the_partner(name):
    # streamed training reads partner cells from disk only for models that declare them
    model = small(name).eval()
    batch = training_batch(model, synthetic_cells(6))
    with torch.no_grad():
        a = model(batch)["loss"]
        b = model({**batch, "partner": torch.zeros_like(batch["partner"])})["loss"]
    assert bool(a != b) == type(model).uses_partner


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_overfit_a_fixed_batch(name):
    model = small(name, width=0.125)
    batch = training_batch(model, synthetic_cells(8, seed=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-3:]) < 0.5 * losses[0], losses


EXPECTED_DIMS = {  # at width 0.25
    "deeploc": {"conv1": 16, "conv2": 16, "conv3": 32, "conv4": 32, "conv5": 64, "conv6": 64, "conv7": 64,
                "conv8": 64, "fc1": 128, "fc2": 128},
    "pci": {"conv1": 24, "conv2": 64, "conv3": 96, "conv4": 96, "conv5": 64},
    "ae": {"conv1": 8, "conv2": 16, "conv3": 32, "conv4": 64, "bottleneck": 256},
    "seresnet": {"conv1": 16, "conv2": 16, "conv3": 32, "conv4": 64, "conv5": 128, "pool": 128},
    # PIFiA: width scales the convolutions only; dense layers 128 and 64 as in the authors' script
    "pifia": {"conv1": 16, "conv2": 16, "conv3": 32, "conv4": 32, "conv5": 64, "conv6": 64, "conv7": 64,
              "conv8": 64, "fc1": 128, "fc2": 64},
}
DEFAULT_LAYER = {"deeploc": "fc2", "pci": "conv4", "ae": "bottleneck", "seresnet": "pool", "pifia": "fc2"}


@pytest.mark.parametrize("name", NAMES)
def test_embed_shapes_for_every_feature_layer(name):
    model = small(name, width=0.25).eval()
    x = synthetic_cells(3)["image"]
    assert set(model.feature_layers) == set(EXPECTED_DIMS[name])
    with torch.no_grad():
        for layer in model.feature_layers:
            z = model.embed(x, layer)
            assert z.shape == (3, EXPECTED_DIMS[name][layer]), layer
            assert z.dtype == torch.float32 and torch.isfinite(z).all()
        assert torch.equal(model.embed(x), model.embed(x, DEFAULT_LAYER[name]))
        other = model.feature_layers[0]
        configured = build_model(ModelConfig(name, width=0.25, feature_layer=other), seed=0).eval()
        assert torch.equal(configured.embed(x), model.embed(x, other))


@pytest.mark.parametrize("name", NAMES)
def test_unknown_feature_layer_raises_listing_the_valid_ones(name):
    model = small(name).eval()
    with pytest.raises(ValueError, match="conv1"):
        model.embed(synthetic_cells(2)["image"], "conv99")
    with pytest.raises(ValueError, match="valid layers"):
        build_model(ModelConfig(name, width=0.125, feature_layer="conv99"))


@pytest.mark.parametrize("name", NAMES)
def test_width_scales_parameters_about_quadratically(name):
    n = {w: count_parameters(small(name, width=w)) for w in (0.25, 0.5)}
    ratio = n[0.5] / n[0.25]
    if name in ("ae", "pifia"):
        # the AE's latent_dim and PIFiA's dense layers are not scaled: they grow linearly with width
        assert 2.0 < ratio < 4.0, ratio
    else:
        assert 3.5 < ratio < 4.2, ratio
    # at a tiny width every hidden layer keeps the floor of 8 channels
    model = small(name, width=0.01)
    hidden = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)][:-1]
    assert min(hidden) == 8


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_matches_contiguous(name):
    model = small(name).eval()
    batch = training_batch(model, synthetic_cells(4))
    cl_model = small(name).eval().to(memory_format=torch.channels_last)
    cl_batch = {k: v.contiguous(memory_format=torch.channels_last) if v.ndim == 4 else v for k, v in batch.items()}
    with torch.no_grad():
        assert torch.allclose(model(batch)["loss"], cl_model(cl_batch)["loss"], atol=1e-5)
        x = synthetic_cells(4)["image"]
        for layer in model.feature_layers:
            a = model.embed(x, layer)
            b = cl_model.embed(x.contiguous(memory_format=torch.channels_last), layer)
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), layer


@pytest.mark.parametrize("name", NAMES)
def test_seeded_build_and_step_are_deterministic_and_leave_global_rng_alone(name):
    state = torch.get_rng_state()
    a, b = small(name), small(name)
    assert torch.equal(state, torch.get_rng_state())
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert not torch.equal(next(small(name).parameters()), next(build_model(ModelConfig(name, width=0.125), seed=1).parameters()))
    batch = training_batch(a, synthetic_cells(4))
    la, lb = a(batch)["loss"], b(batch)["loss"]
    la.backward()
    lb.backward()
    assert torch.equal(la, lb)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p.grad, q.grad)


@pytest.mark.parametrize("name", NAMES)
def test_runs_under_bf16_autocast(name):
    model = small(name)
    batch = training_batch(model, synthetic_cells(4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(batch)["loss"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        z = model.embed(synthetic_cells(2)["image"])
    assert z.shape[0] == 2 and torch.isfinite(z.float()).all()


def test_build_model_sets_interface_attributes():
    for name in NAMES:
        config = ModelConfig(name, width=0.125)
        model = build_model(config)
        assert model.config == config
        assert model.training
        assert isinstance(model.feature_layers, tuple) and DEFAULT_LAYER[name] in model.feature_layers
    assert build_model(ModelConfig("deeploc", width=0.125)).train_crop == 60
    assert build_model(ModelConfig("pci", width=0.125)).train_crop is None
    assert build_model(ModelConfig("ae", width=0.125)).train_crop is None


# --------------------------------------------------------------------------------------
# Config and registry


def test_config_round_trips_through_dict_and_json():
    config = ModelConfig("pci", in_channels=3, n_classes=7, image_size=32, width=0.5, feature_layer="conv3", latent_dim=64)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert ModelConfig.from_dict({"name": "ae"}) == ModelConfig("ae")
    assert ModelConfig("ae", width=1).width == 1.0 and isinstance(ModelConfig("ae", width=1).width, float)


def test_unknown_config_keys_raise_naming_them():
    with pytest.raises(ValueError, match="depth") as info:
        ModelConfig.from_dict({"name": "ae", "depth": 3, "dropout": 0.1})
    assert "dropout" in str(info.value)
    with pytest.raises(ValueError, match="name"):
        ModelConfig.from_dict({"width": 1.0})


@pytest.mark.parametrize("bad", [{"width": 0}, {"width": -1.0}, {"in_channels": 0}, {"n_classes": 1},
                                 {"latent_dim": 0}, {"image_size": 2.5}, {"feature_layer": 3}])
def test_invalid_config_values_raise(bad):
    with pytest.raises(ValueError):
        ModelConfig("deeploc", **bad)


def test_unknown_model_name_raises_listing_known_ones():
    with pytest.raises(ValueError, match="deeploc") as info:
        build_model(ModelConfig("resnet"))
    assert "pci" in str(info.value) and "ae" in str(info.value)


def test_model_specific_constraints_raise():
    with pytest.raises(ValueError, match="marker"):
        build_model(ModelConfig("pci", in_channels=1))
    with pytest.raises(ValueError, match="divisible by 16"):
        build_model(ModelConfig("ae", image_size=40))
    model = small("pci")
    batch = synthetic_cells(2)
    with pytest.raises(ValueError, match="partner"):
        model({**batch, "partner": batch["partner"][..., :32, :32]})
    with pytest.raises(ValueError, match="sides >= 60"):
        small("deeploc").eval().embed(torch.zeros(2, 2, 48, 48))


# --------------------------------------------------------------------------------------
# DeepLoc specifics


def test_five_crops_are_centre_and_corners():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    crops = five_crops(x, 2)[:, 0, 0]
    expected = torch.tensor([[[5, 6], [9, 10]],     # centre
                             [[0, 1], [4, 5]],      # top-left
                             [[2, 3], [6, 7]],      # top-right
                             [[8, 9], [12, 13]],    # bottom-left
                             [[10, 11], [14, 15]]], dtype=torch.float32)
    assert torch.equal(crops, expected)

    x = torch.arange(2 * 3 * 64 * 64, dtype=torch.float32).reshape(2, 3, 64, 64)
    crops = five_crops(x, 60)
    assert crops.shape == (5, 2, 3, 60, 60)
    for crop, (top, left) in zip(crops, [(2, 2), (0, 0), (0, 4), (4, 0), (4, 4)]):
        assert torch.equal(crop, x[..., top:top + 60, left:left + 60])
        assert crop[0, 0, 0, 0] == top * 64 + left
    # odd margins: the centre crop rounds towards the top-left
    assert torch.equal(five_crops(torch.arange(25.0).reshape(1, 1, 5, 5), 2)[0, 0, 0], torch.tensor([[6.0, 7.0], [11.0, 12.0]]))
    with pytest.raises(ValueError):
        five_crops(x, 65)


def test_predict_proba_is_the_mean_softmax_over_five_crops():
    model = small("deeploc", width=0.25, n_classes=5).eval()
    x = synthetic_cells(3)["image"]
    with torch.no_grad():
        p = model.predict_proba(x)
        per_crop = torch.stack([model.predict_proba(c) for c in five_crops(x, 60)])
        direct = torch.stack([F.softmax(model.classifier(model._trunk(c)), dim=-1) for c in five_crops(x, 60)])
        out = model({**synthetic_cells(3), "image": x})
    assert p.shape == (3, 5) and p.dtype == torch.float32
    assert torch.allclose(p.sum(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(per_crop, direct, atol=1e-6)
    assert torch.allclose(p, per_crop.mean(dim=0), atol=1e-6)
    # validation on whole cells: logits are the log of the five-crop probabilities
    assert torch.allclose(F.softmax(out["logits"], dim=-1), p, atol=1e-6)


def test_deeploc_embed_averages_features_over_five_crops():
    model = small("deeploc", width=0.25).eval()
    x = synthetic_cells(2)["image"]
    with torch.no_grad():
        for layer in ("conv3", "fc2"):
            per_crop = torch.stack([model.embed(c, layer) for c in five_crops(x, 60)])
            assert torch.allclose(model.embed(x, layer), per_crop.mean(dim=0), atol=1e-5)


def test_unlabelled_cells_contribute_no_loss():
    model = small("deeploc")
    batch = training_batch(model, synthetic_cells(4))
    loss = model({**batch, "label": torch.full((4,), -1)})["loss"]
    assert loss.item() == 0.0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    with torch.no_grad():
        logits = model(batch)["logits"]
        partial = model({**batch, "label": torch.tensor([0, -1, 2, -1])})["loss"]
    expected = F.cross_entropy(logits[[0, 2]], torch.tensor([0, 2]))
    assert torch.allclose(partial, expected, atol=1e-6)
