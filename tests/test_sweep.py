import numpy as np
import pandas as pd
import pytest

from protrep.dataset import load_dataset
from protrep.errors import DataError
from protrep.profiles import BUDGET_TFLOP, WIDTHS, yeast_training
from protrep.simulate import profile_config, simulate_dataset
from protrep.standards import load_standards
from protrep.sweep import SWEEP_COLUMNS, minutes_at_reference, read_sweep, sweep_point, write_sweep
from protrep.timing import REFERENCE_GFLOPS
from protrep.train import TrainConfig


@pytest.fixture(scope="module")
def screen(tmp_path_factory):
    path = tmp_path_factory.mktemp("sweep") / "ds"
    simulate_dataset(path, profile_config("quick", seed=2), workers=1, progress=False)
    return load_dataset(path), load_standards(path)


def test_every_compared_model_gets_the_same_budget():
    for profile in BUDGET_TFLOP:
        configs = [yeast_training(m, profile, seed=1) for m in ("deeploc", "pci", "ae")]
        assert {t.budget_tflop for _, t in configs} == {BUDGET_TFLOP[profile]}
        assert [m.width for m, _ in configs] == [WIDTHS[profile][m] for m in ("deeploc", "pci", "ae")]
        assert all(t.epochs is None and t.patience == 0 and t.seed == 1 for _, t in configs)
    m, t = yeast_training("ae", "default", width=0.125, budget_tflop=1.5, latent_dim=16, lr=3e-3)
    assert (m.width, m.latent_dim, t.budget_tflop, t.lr) == (0.125, 16, 1.5, 3e-3)
    with pytest.raises(ValueError, match="profile"):
        yeast_training("ae", "huge")
    with pytest.raises(ValueError, match="model"):
        yeast_training("seresnet", "default")


def test_sweep_point_trains_scores_and_reuses_the_run(screen, tmp_path):
    ds, standards = screen
    model_config, _ = yeast_training("deeploc", "quick")
    config = TrainConfig(epochs=None, budget_tflop=0.01, batch_size=16, warmup_steps=2, patience=0)
    row = sweep_point(model_config, config, ds, standards, tmp_path / "run", gflops=123.0)
    assert list(row) == SWEEP_COLUMNS
    assert row["steps"] >= 1 and row["matmul_gflops"] == 123.0 and row["train_seconds"] > 0
    assert 0 <= row["test_accuracy"] <= 1 and 0 <= row["probe_accuracy"] <= 1
    assert row["n_heldout_proteins"] == ds.meta.loc[ds.meta["split"] != "train", "protein"].nunique()
    again = sweep_point(model_config, config, ds, standards, tmp_path / "run", gflops=123.0)
    assert again["train_seconds"] == row["train_seconds"] and again["test_accuracy"] == row["test_accuracy"]
    ae = sweep_point(yeast_training("ae", "quick")[0], config, ds, standards, tmp_path / "ae", gflops=1.0)
    assert np.isnan(ae["test_accuracy"]) and 0 <= ae["probe_accuracy"] <= 1


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
