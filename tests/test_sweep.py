import numpy as np
import pandas as pd
import pytest

from protrep.data.dataset import load_dataset
from protrep.data.standards import load_standards
from protrep.errors import DataError
from protrep.evaluation.quality import SWEEP_COLUMNS, minutes_at_reference, read_sweep, sweep_point, write_sweep
from protrep.models import training_flops
from protrep.profiles import PROFILES, yeast_training
from protrep.timing import REFERENCE_GFLOPS
from protrep.training.loop import TrainConfig


@pytest.fixture(scope="module")
def screen(quick_screen):
    return load_dataset(quick_screen), load_standards(quick_screen)


def test_every_compared_model_gets_the_same_budget():
    for name, profile in PROFILES.items():
        configs = [yeast_training(m, name, seed=1) for m in ("deeploc", "pci", "ae")]
        assert {t.budget_tflop for _, t in configs} == {profile.budget_tflop}
        assert [m.width for m, _ in configs] == [profile.widths[m] for m in ("deeploc", "pci", "ae")]
        assert all(t.epochs is None and t.patience == 0 and t.seed == 1 for _, t in configs)
    m, t = yeast_training("ae", "default", width=0.125, budget_tflop=1.5, latent_dim=16, lr=3e-3)
    assert (m.width, m.latent_dim, t.budget_tflop, t.lr) == (0.125, 16, 1.5, 3e-3)
    with pytest.raises(ValueError, match="profile"):
        yeast_training("ae", "huge")
    with pytest.raises(ValueError, match="model"):
        yeast_training("seresnet", "default")


@pytest.mark.slow
def test_sweep_point_trains_scores_and_reuses_the_run(screen, tmp_path):
    ds, standards = screen
    model_config, _ = yeast_training("deeploc", "quick")
    config = TrainConfig(epochs=None, budget_tflop=0.01, batch_size=16, warmup_steps=2, patience=0)
    row = sweep_point(model_config, config, ds, standards, tmp_path / "run", gflops=123.0)
    assert list(row) == SWEEP_COLUMNS
    assert row["steps"] >= 1 and row["matmul_gflops"] == 123.0 and row["train_seconds"] > 0
    assert row["steps"] == max(1, round(0.01e12 / (training_flops(model_config) * 16)))
    test = ds.meta["split"].eq("test") & ds.meta["label"].ge(0) & ~ds.meta["localization"].str.contains(";")
    assert row["test_accuracy"] * test.sum() == pytest.approx(round(row["test_accuracy"] * test.sum()))  # a share
    assert row["n_heldout_proteins"] == ds.meta.loc[ds.meta["split"] != "train", "protein"].nunique()
    again = sweep_point(model_config, config, ds, standards, tmp_path / "run", gflops=123.0)
    assert again["train_seconds"] == row["train_seconds"] and again["test_accuracy"] == row["test_accuracy"]
    ae = sweep_point(yeast_training("ae", "quick")[0], config, ds, standards, tmp_path / "ae", gflops=1.0)
    assert np.isnan(ae["test_accuracy"]) and ae["probe_accuracy"] * test.sum() == pytest.approx(
        round(ae["probe_accuracy"] * test.sum()))


def test_sweep_table_round_trip_and_reference_minutes(tmp_path):
    table = pd.DataFrame([{c: 1.0 for c in SWEEP_COLUMNS} | {"model": "ae", "train_seconds": 120.0,
                                                              "matmul_gflops": 2 * REFERENCE_GFLOPS}])
    path = tmp_path / "s.csv"
    write_sweep(table, path, header=["measured here"])
    assert path.read_text().startswith("# measured here\n")
    back = read_sweep(path)
    assert minutes_at_reference(back).iloc[0] == pytest.approx(4.0)  # 2 min on a machine twice as fast
    pd.DataFrame({"model": ["ae"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="bad.csv: is not a sweep table"):
        read_sweep(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="no sweep table"):
        read_sweep(tmp_path / "none.csv")
