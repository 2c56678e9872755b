import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from protrep.data.dataset import CELL_COLUMNS, load_dataset, load_proteins
from protrep.data.simulate import SimConfig, simulate_dataset

TINY = SimConfig(n_proteins=30, cells_per_protein=6, seed=7, min_per_class=2)


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "ds"
    summary = simulate_dataset(out, TINY, workers=1, progress=False)
    return out, summary


def test_dataset_has_documented_layout(tiny):
    out, summary = tiny
    assert {p.name for p in out.iterdir()} == {"dataset.json", "images.npy", "masks.npy", "cells.csv", "proteins.csv",
                                               "standards"}
    ds = load_dataset(out)
    assert ds.images.shape == (summary["n_cells"], 2, 64, 64) and ds.images.dtype == np.float32
    assert ds.masks.shape == (summary["n_cells"], 64, 64) and ds.masks.dtype == bool
    assert ds.channels == ("gfp", "rfp") and len(ds.classes) == 15
    assert list(ds.meta.columns[: len(CELL_COLUMNS)]) == CELL_COLUMNS
    assert ds.meta.groupby("protein").size().max() <= TINY.cells_per_protein
    assert summary["n_proteins"] == 30
    # the centre pixel of every crop belongs to its own centre-cell mask
    assert ds.masks[:, 32, 32].mean() > 0.95
    header = json.loads((out / "dataset.json").read_text())
    assert SimConfig.from_dict(header["config"]) == TINY
    assert {p.stem for p in (out / "standards").iterdir()} == {"compartments", "processes", "pathways", "complexes"}


def test_split_is_by_protein(tiny):
    ds = load_dataset(tiny[0])
    assert (ds.meta.groupby("protein")["split"].nunique() == 1).all()
    proteins = load_proteins(tiny[0])
    assert set(proteins["split"]) == {"train", "val", "test"}
    merged = ds.meta.merge(proteins[["protein", "split"]], on="protein", suffixes=("", "_p"))
    assert (merged["split"] == merged["split_p"]).all()


def test_labels_come_from_the_protein(tiny):
    ds = load_dataset(tiny[0])
    classes = np.array(ds.classes)
    known = ds.meta[ds.meta["label"] >= 0]
    shown = classes[known["label"].to_numpy()]
    annotated = known["localization"].str.split(";")
    # a cell shows one of its protein's classes, or cytoplasm for mislocalizing proteins
    ok = [s in a or s == "cytoplasm" for s, a in zip(shown, annotated)]
    assert np.mean(ok) == 1.0
    assert (ds.meta["label"] >= 0).mean() > 0.8


def test_same_seed_gives_byte_identical_output_for_any_worker_count(tiny, tmp_path):
    again = tmp_path / "again"
    simulate_dataset(again, TINY, workers=2, progress=False)
    assert _digest(again) == _digest(tiny[0])
    other = tmp_path / "other"
    simulate_dataset(other, dataclasses.replace(TINY, seed=8), workers=1, progress=False)
    assert _digest(other) != _digest(tiny[0])


def test_segmentation_finds_95_percent_of_living_cells(tmp_path):
    config = SimConfig(n_proteins=30, cells_per_protein=40, seed=11, min_per_class=2)
    simulate_dataset(tmp_path / "s", config, workers=2, progress=False)
    seg = json.loads((tmp_path / "s" / "dataset.json").read_text())["segmentation"]
    assert seg["alive"]["n_true"] > 1000
    assert seg["recall"] == seg["alive"]["recall"] >= 0.95


def test_existing_output_is_refused_and_kept(tiny):
    out = tiny[0]
    before = _digest(out)
    with pytest.raises(FileExistsError, match="already exists"):
        simulate_dataset(out, TINY, workers=1, progress=False)
    assert _digest(out) == before


def test_killed_run_leaves_no_half_dataset(tmp_path, monkeypatch):
    import protrep.data.dataset as dataset

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dataset.pd.DataFrame, "to_csv", boom)
    with pytest.raises(KeyboardInterrupt):
        simulate_dataset(tmp_path / "half", TINY, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_config_round_trip_and_unknown_keys():
    d = TINY.to_dict()
    assert SimConfig.from_dict(json.loads(json.dumps(d))) == TINY
    with pytest.raises(ValueError, match="unknown SimConfig keys"):
        SimConfig.from_dict({**d, "n_protein": 3})
    with pytest.raises(ValueError, match="unknown imaging keys"):
        SimConfig.from_dict({**d, "imaging": {"psf": 1}})
    with pytest.raises(ValueError, match="proteome"):
        SimConfig(proteome="human")


def test_field_size_grows_with_cells_per_protein():
    sizes = [SimConfig(cells_per_protein=k).resolved_field_size() for k in (5, 30, 120)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert SimConfig(field_size=320).resolved_field_size() == 320
    assert SimConfig().field_size_for(2) == 160 and SimConfig().field_size_for(3) == 192 and SimConfig().field_size_for(10 ** 6) == 1024


def test_huh_mode_simulates_real_orfs(shared_data, tmp_path):
    table = shared_data / "standards/yeast/huh2003_yeastgfp.csv"
    config = SimConfig(n_proteins=20, cells_per_protein=3, proteome="huh2003", huh_table=str(table), seed=1)
    simulate_dataset(tmp_path / "huh", config, workers=1, progress=False)
    ds = load_dataset(tmp_path / "huh")
    orfs = pd.read_csv(table)["yORF"].str.upper()
    assert ds.meta["protein"].isin(orfs).all()
    assert ds.meta["protein"].nunique() == 20


def test_ensure_dataset_reuses_only_the_same_config(tmp_path):
    from protrep.data.simulate import ensure_dataset
    from protrep.profiles import book_profile

    config = book_profile("quick", seed=1).screen
    assert config.n_proteins == 60 and config.cells_per_protein == 6 and config.seed == 1
    first = ensure_dataset(tmp_path / "d", config, workers=1, progress=False)
    assert first["reused"] is False and first["n_cells"] > 0
    assert ensure_dataset(tmp_path / "d", config, workers=1, progress=False)["reused"] is True
    changed = dataclasses.replace(config, seed=2)
    assert ensure_dataset(tmp_path / "d", changed, workers=1, progress=False)["reused"] is False
    assert SimConfig.from_dict(json.loads((tmp_path / "d" / "dataset.json").read_text())["config"]) == changed
    with pytest.raises(ValueError, match="profile must be one of"):
        book_profile("huge")
    # a dataset made by other code is simulated again
    head = tmp_path / "d" / "dataset.json"
    head.write_text(json.dumps({**json.loads(head.read_text()), "code_version": "older"}))
    assert ensure_dataset(tmp_path / "d", changed, workers=1, progress=False)["reused"] is False


def test_proteins_table_round_trips_with_empty_text(tiny):
    from protrep.data.render import _cell_mixture

    proteins = load_proteins(tiny[0])
    assert (proteins["secondary"] == "").any() and not proteins["secondary"].isna().any()
    single = proteins[proteins["secondary"] == ""].iloc[0].to_dict()
    weights, label = _cell_mixture(np.random.default_rng(0), {**single, "mislocalizing": False}, 4)
    assert weights.sum(1).tolist() == [1.0] * 4
