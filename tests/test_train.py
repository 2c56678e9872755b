import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from protrep.data.dataset import CellDataset, load_dataset
from protrep.data.tables import (
    embedding_tables,
    feature_columns,
    protein_distributions,
    protein_table_path,
    read_table,
    write_table,
)
from protrep.errors import DataError
from protrep.inference.embed import embed_cells, predict_cells
from protrep.models import REGISTRY, ModelConfig
from protrep.profiles import identity_classes
from protrep.training.loop import TrainConfig, train
from protrep.training.runs import load_run, run_budget, run_path

pytestmark = pytest.mark.slow

FAST = TrainConfig(epochs=2, batch_size=16, max_steps=6, warmup_steps=2, seed=3, eval_batch_size=64)


@pytest.fixture(scope="module")
def data(quick_screen):
    return load_dataset(quick_screen)


def _model(name, data=None):
    n_classes = identity_classes(name, data) if data is not None else None
    return ModelConfig(name=name, width=0.125, latent_dim=32, **({"n_classes": n_classes} if n_classes else {}))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_trains_a_few_steps(name, data, tmp_path):
    from protrep.models import build_model

    config = _model(name, data)
    history = train(config, FAST, data, tmp_path / name, progress=False)
    assert int(history["global_step"].iloc[-1]) == FAST.max_steps  # the loop stepped as often as asked
    assert np.isfinite(history[["train_loss", "val_loss"]].to_numpy()).all()
    assert {"run.json", "checkpoint.pt", "best.pt", "history.csv"} <= {p.name for p in (tmp_path / name).iterdir()}
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / name / "history.csv"), history, check_dtype=False)
    model, info = load_run(tmp_path / name, which="last")
    assert info["model"]["name"] == name and not model.training
    start = build_model(config, seed=FAST.seed).state_dict()
    trained = model.state_dict()
    moved = [k for k in start if start[k].is_floating_point() and not torch.equal(start[k], trained[k])]
    assert len(moved) > len(start) // 2  # the optimizer changed the weights from their initialisation
    if model.is_classifier:
        labelled = history["val_accuracy"].notna().all()
        assert labelled == bool((data.meta.loc[data.meta["split"] == "val", "label"] >= 0).any())


def _weights(run):
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]


def test_resume_after_interrupt_gives_the_same_numbers(data, tmp_path):
    config = TrainConfig(epochs=2, batch_size=16, max_steps=8, warmup_steps=2, seed=1, patience=0)
    whole = train(_model("deeploc"), config, data, tmp_path / "whole", progress=False)

    def stop_at_5(state):
        if state["global_step"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_model("deeploc"), config, data, tmp_path / "cut", progress=False, callback=stop_at_5)
    with pytest.raises(DataError, match="--resume"):
        train(_model("deeploc"), config, data, tmp_path / "cut", progress=False)
    resumed = train(_model("deeploc"), config, data, tmp_path / "cut", progress=False, resume=True)
    cols = ["epoch", "global_step", "train_loss", "val_loss", "val_accuracy", "lr"]
    pd.testing.assert_frame_equal(whole[cols], resumed[cols])
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run_and_early_stopping(data, tmp_path):
    frozen = TrainConfig(epochs=5, batch_size=16, max_steps=40, lr=0.0, warmup_steps=1, patience=1, seed=2)
    h1 = train(_model("ae"), frozen, data, tmp_path / "a", progress=False)
    h2 = train(_model("ae"), frozen, data, tmp_path / "b", progress=False)
    assert len(h1) == 2  # no improvement with lr = 0: stops after `patience` epochs without one
    pd.testing.assert_series_equal(h1["val_loss"], h2["val_loss"])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / "history.csv"), h1, check_dtype=False)


def test_run_directory_errors(data, tmp_path):
    train(_model("ae"), FAST, data, tmp_path / "r", progress=False)
    other = TrainConfig(**{**FAST.to_dict(), "lr": 0.5})
    with pytest.raises(DataError, match="different run"):
        train(_model("ae"), other, data, tmp_path / "r", progress=False)
    train(_model("ae"), other, data, tmp_path / "r", progress=False, overwrite=True)
    (tmp_path / "r" / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="best.pt: corrupt or truncated checkpoint"):
        load_run(tmp_path / "r")
    with pytest.raises(DataError, match="not a training run"):
        load_run(tmp_path)


def test_dataset_that_does_not_fit_the_model_is_named(data, tmp_path):
    three = CellDataset(np.zeros((4, 3, 64, 64), np.float32),
                        pd.DataFrame({"protein": list("abcd"), "split": "train", "label": 0}),
                        ("gfp", "rfp", "dapi"), source="three.h5")
    with pytest.raises(DataError, match="three.h5: has 3 channels"):
        train(_model("ae"), FAST, three, tmp_path / "x", progress=False)
    small = CellDataset(np.zeros((4, 2, 32, 32), np.float32), three.meta, ("gfp", "rfp"), source="small")
    with pytest.raises(DataError, match="32 x 32|\\(32, 32\\)"):
        train(_model("ae"), FAST, small, tmp_path / "x", progress=False)
    unlabelled = CellDataset(np.zeros((4, 2, 64, 64), np.float32), three.meta.assign(label=-1), ("gfp", "rfp"),
                             source="unlabelled")
    with pytest.raises(DataError, match="no localization labels"):
        train(_model("deeploc"), FAST, unlabelled, tmp_path / "x", progress=False)


def test_embeddings_and_predictions(data, tmp_path):
    train(_model("deeploc"), FAST, data, tmp_path / "d", progress=False)
    model, info = load_run(tmp_path / "d")
    feats = embed_cells(model, data, batch_size=50)
    assert feats.shape[0] == len(data) and np.isfinite(feats).all()
    centre = embed_cells(model, data, crops="centre")
    assert centre.shape == feats.shape and not np.allclose(centre, feats)
    with pytest.raises(ValueError, match="crops"):
        embed_cells(model, data, crops="all")
    cells, proteins = embedding_tables(data, feats)
    first = proteins["protein"].iloc[0]
    cols = feature_columns(cells)
    assert len(cols) == feats.shape[1] and "field" in cells
    assert np.allclose(proteins.loc[0, cols].to_numpy(float), cells.loc[cells["protein"] == first, cols].mean().to_numpy())
    assert proteins["n_cells"].sum() == len(data)
    probs = predict_cells(model, data)
    dist = protein_distributions(data, probs, info["classes"])
    assert np.allclose(dist[info["classes"]].sum(axis=1), 1, atol=1e-5)
    assert set(dist["top_class"]) <= set(info["classes"])
    path = write_table(proteins, tmp_path / "emb.csv.gz")
    back = read_table(path)
    assert np.allclose(back[cols].to_numpy(), proteins[cols].to_numpy(), rtol=1e-5)
    assert protein_table_path("x/emb.parquet").name == "emb.proteins.parquet"
    with pytest.raises(ValueError, match="csv"):
        write_table(proteins, tmp_path / "emb.txt")


def test_cli_train_embed_predict(data, tmp_path, capsys):
    from protrep.cli import main

    src = data.source
    run = tmp_path / "run"
    assert main(["train", "--model", "deeploc", "--data", src, "--out", str(run), "--width", "0.125",
                 "--batch-size", "16", "--max-steps", "3", "--epochs", "1", "--quiet"]) == 0
    assert main(["embed", "--run", str(run), "--data", src, "--out", str(tmp_path / "e.csv")]) == 0
    assert read_table(tmp_path / "e.proteins.csv")["protein"].nunique() == data.meta["protein"].nunique()
    assert main(["predict", "--run", str(run), "--data", src, "--out", str(tmp_path / "p.csv")]) == 0
    assert "top_class" in capsys.readouterr().out
    assert set(read_table(tmp_path / "p.csv")["protein"]) == set(data.meta["protein"].astype(str))
    assert main(["embed", "--run", str(tmp_path / "nope"), "--data", src, "--out", str(tmp_path / "e.csv")]) == 2


def test_predict_on_real_crops(data, tmp_path, shared_data):
    from protrep.data.readers import read_crop_folder

    train(_model("deeploc"), FAST, data, tmp_path / "d", progress=False)
    model, info = load_run(tmp_path / "d")
    real = read_crop_folder(shared_data / "yeast-crops")
    dist = protein_distributions(real, predict_cells(model, real), info["classes"])
    assert list(dist["protein"]) == ["AAC1", "AAH1", "AAP1"]


def test_distributed_training_with_two_cpu_processes(data, tmp_path):
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "protrep", "train", "--model", "ae", "--data", data.source, "--out", str(run), "--width", "0.125",
           "--batch-size", "16", "--max-steps", "4", "--epochs", "1", "--quiet", "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 1 and np.isfinite(history["train_loss"]).all()
    assert json.loads((run / "run.json").read_text())["model"]["name"] == "ae"


def test_forward_examples_show_what_the_model_outputs(data, tmp_path):
    from protrep.inference.embed import forward_examples

    train(_model("pci"), FAST, data, tmp_path / "p", progress=False)
    model, _ = load_run(tmp_path / "p")
    ex = forward_examples(model, data, [0, 5, 9])
    assert ex["image"].shape == ex["partner"].shape == (3, 2, 64, 64)
    assert ex["prediction"].shape == (3, 1, 64, 64) and np.isfinite(ex["prediction"]).all()
    assert data.meta.groupby("protein").size().min() > 1  # so every partner is another cell
    assert all(not np.allclose(ex["image"][i], ex["partner"][i]) for i in range(3))


def test_a_run_of_other_code_is_not_reused(data, tmp_path):
    train(_model("ae"), FAST, data, tmp_path / "r", progress=False)
    spec = tmp_path / "r" / "run.json"
    info = json.loads(spec.read_text())
    assert len(info["code"]) == 16
    spec.write_text(json.dumps({**info, "code": "older"}))
    with pytest.raises(DataError, match="code differ"):
        train(_model("ae"), FAST, data, tmp_path / "r", progress=False, resume=True)


def test_write_embeddings_puts_proteins_beside_cells(data, tmp_path):
    from protrep.inference.embed import write_embeddings

    feats = np.random.default_rng(0).random((len(data), 3)).astype(np.float32)
    cells, proteins = write_embeddings(data, feats, tmp_path / "e.csv.gz")
    assert len(read_table(tmp_path / "e.csv.gz")) == len(data) == len(cells)
    assert read_table(tmp_path / "e.proteins.csv.gz")["protein"].tolist() == proteins["protein"].tolist()


def test_training_flops_are_three_forward_passes_and_scale_with_width():
    from protrep.models import training_flops

    # DeepLoc's first convolution at 60 x 60 on 2 channels into 16 (width 0.25): 2 * 9 * 2 * 16 * 3600 FLOPs
    narrow, wide = (training_flops(ModelConfig(name="deeploc", width=w)) for w in (0.25, 0.5))
    assert 3.5 < wide / narrow < 4.1  # channels double on both sides of most layers
    assert training_flops(ModelConfig(name="deeploc", width=0.25)) > 3 * 2 * 9 * 2 * 16 * 3600
    assert training_flops(ModelConfig(name="pci", width=0.25)) > narrow  # PCI's decoder runs at full resolution


def test_budget_sets_the_number_of_steps(data, tmp_path):
    from protrep.models import training_flops
    from protrep.training.loop import total_training_steps

    model = _model("deeploc")
    per_step = training_flops(model) * 16
    budget = TrainConfig(epochs=None, batch_size=16, budget_tflop=7 * per_step / 1e12, warmup_steps=2, seed=1,
                         patience=0)
    assert total_training_steps(budget, model, steps_per_epoch=4) == 7
    capped = TrainConfig(**{**budget.to_dict(), "epochs": 1})
    assert total_training_steps(capped, model, steps_per_epoch=4) == 4
    history = train(model, budget, data, tmp_path / "b", progress=False)
    assert int(history["global_step"].iloc[-1]) == 7
    cost = run_budget(tmp_path / "b")
    n_train = int((data.meta["split"] == "train").sum())
    assert cost["steps"] == 7 and cost["images_seen"] == 7 * 16
    assert cost["epochs"] == pytest.approx(7 * 16 / n_train)
    assert cost["val_loss"] == pytest.approx(float(history["val_loss"].iloc[-1]))
    assert cost["seconds"] == pytest.approx(float(history["seconds"].sum()))
    with pytest.raises(DataError, match="history"):
        run_budget(tmp_path / "nothing")


def test_seed_runs_train_one_run_per_seed(data, tmp_path):
    from protrep.profiles import book_profile, seed_runs

    runs = seed_runs("ae", book_profile("quick"), data, tmp_path, seeds=[0, 2], device="cpu", progress=False,
                     budget_tflop=0.002)
    assert sorted(runs) == [0, 2]
    assert runs[0]["run"] == run_path(tmp_path, "ae", "quick")
    assert runs[2]["run"] == run_path(tmp_path, "ae", "quick", 2)
    assert runs[2]["run"].name == "ae-quick-s2"
    a, b = (runs[s]["protein_table"] for s in (0, 2))
    assert len(a) == data.meta["protein"].nunique() and not np.allclose(a[feature_columns(a)], b[feature_columns(b)])
    assert (runs[0]["run"] / "embeddings.proteins.csv.gz").is_file()
    # cell tables for the first seed only; every seed's protein table
    assert (runs[0]["run"] / "embeddings.csv.gz").is_file() and not (runs[2]["run"] / "embeddings.csv.gz").exists()
    assert (runs[2]["run"] / "embeddings.proteins.csv.gz").is_file()


def test_embedding_a_stretched_dataset_equals_embedding_the_raw_one(data, tmp_path):
    from protrep.inference.embed import stretched

    train(_model("ae"), FAST, data, tmp_path / "ae", progress=False)
    model, _ = load_run(tmp_path / "ae")
    pre = stretched(data)
    assert pre.info["stretched"] and stretched(pre) is pre and pre.images.dtype == np.float32
    np.testing.assert_array_equal(embed_cells(model, pre), embed_cells(model, data))


@pytest.mark.parametrize("bad", [{"epochs": None}, {"epochs": 0}, {"batch_size": 0}, {"lr": float("nan")},
                                 {"budget_tflop": -1.0}, {"max_steps": 0}])
def test_train_config_rejects_values_that_cannot_train(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_fine_tuning_starts_from_the_run_it_names(data, tmp_path):
    base = train(_model("ae"), FAST, data, tmp_path / "base", progress=False)
    zero_lr = TrainConfig(**{**FAST.to_dict(), "lr": 0.0, "init_from": str(tmp_path / "base")})
    train(_model("ae"), zero_lr, data, tmp_path / "tuned", progress=False)
    start, tuned = load_run(tmp_path / "base")[0].state_dict(), load_run(tmp_path / "tuned")[0].state_dict()
    weights = [k for k in start if "running" not in k and "num_batches" not in k]  # batch-norm statistics move
    assert all(torch.equal(start[k], tuned[k]) for k in weights)
    assert len(base) >= 1
    info = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert info["init"]["run"] == str(tmp_path / "base") and len(info["init"]["sha256"]) == 16
    # retraining the base changes the starting weights: the fine-tuned run is then another run
    train(_model("ae"), TrainConfig(**{**FAST.to_dict(), "seed": 9}), data, tmp_path / "base", progress=False,
          overwrite=True)
    with pytest.raises(DataError, match="different run"):
        train(_model("ae"), zero_lr, data, tmp_path / "tuned", progress=False)
    with pytest.raises(DataError, match="init_from names no trained run"):
        train(_model("ae"), TrainConfig(**{**FAST.to_dict(), "init_from": str(tmp_path / "none")}), data,
              tmp_path / "x", progress=False)


def test_pifia_learns_protein_identity_of_the_training_proteins_only(data, tmp_path):
    from protrep.cli import main
    from protrep.data.dataset import protein_identity

    task = protein_identity(data)
    train_proteins = sorted(data.meta.loc[data.meta["split"] == "train", "protein"].astype(str).unique())
    assert list(task.classes) == train_proteins and task.images is data.images
    held_out = ~data.meta["split"].eq("train").to_numpy()
    assert (task.meta["label"].to_numpy()[held_out] == -1).all() and (task.meta["split"][held_out] == "test").all()
    for protein, cells in task.meta[~held_out].groupby("protein"):  # every class validates on its own cells
        assert set(cells["split"]) == {"train", "val"} and (cells["label"] == train_proteins.index(protein)).all()
    # the wrong number of classes is named with the number to set
    with pytest.raises(DataError, match=f"n_classes={len(train_proteins)}"):
        train(ModelConfig(name="pifia", width=0.125, n_classes=len(train_proteins) + 1), FAST, data, tmp_path / "bad",
              progress=False)
    # the CLI sets n_classes from the data
    run = tmp_path / "pifia"
    assert main(["train", "--model", "pifia", "--data", data.source, "--out", str(run), "--width", "0.125",
                 "--batch-size", "16", "--max-steps", "3", "--epochs", "1", "--quiet"]) == 0
    model, info = load_run(run)
    assert model.config.n_classes == len(train_proteins) and info["classes"] == train_proteins
    assert embed_cells(model, data).shape == (len(data), 64)  # every protein embeds, class or not
