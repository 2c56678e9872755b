"""Bad input and interrupted runs: one clear line naming the flag or file, and nothing half-written left.

:data:`ROWS` is the table to extend: a command line, the message it must end with, and the
paths that must not exist afterwards. Command lines and paths are templates over the
fixtures of :func:`world`:

``{ds}``      a tiny simulated dataset (15 proteins x 4 cells)
``{crops}``   a crop folder without a split column (WT2 layout, 2 proteins x 2 cells)
``{onecls}``  a copy of ``{ds}`` whose cells all show one class
``{file}``    a plain file; ``{user}`` a folder of someone's files (``thesis.tex``)
``{emb}``     an embedding table of ``{ds}``'s proteins; ``{dup}`` the same with three proteins
              twice; ``{same}`` every protein the same vector; ``{zero}`` every feature 0
``{tmp}``     a fresh empty folder for the row

Every row also checks what holds for all bad input: exit code 2, one line on stderr, no
traceback, no library keyword (``overwrite=True``, ``list_downloads()``) in place of a flag,
and the fixtures untouched. The kill cases (a subprocess and SIGKILL) follow the table.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from protrep.cli import main
from protrep.data.simulate import SimConfig, simulate_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY = SimConfig(n_proteins=15, cells_per_protein=4, min_per_class=1, seed=0)
SIM = "--n-proteins 15 --cells-per-protein 4 --min-per-class 1 --workers 1 --quiet"
TRAIN = "--model deeploc --width 0.125 --batch-size 8 --warmup-steps 1 --quiet"

ROWS = [
    # (command line, message (regex), paths that must not exist afterwards (globs))
    (f"train {TRAIN} --data {{crops}} --out {{tmp}}/run", r"crops: has no 'split' column.*protrep convert",
     ["{tmp}/run"]),
    (f"train {TRAIN} --data {{ds}} --out {{tmp}}/run --batch-size 0", r"--batch-size must be an integer >= 1, got 0",
     ["{tmp}/run"]),
    (f"train {TRAIN} --data {{ds}} --out {{tmp}}/run --lr nan", r"--lr must be a finite number >= 0.0, got nan",
     ["{tmp}/run"]),
    (f"train {TRAIN} --data {{ds}} --out {{tmp}}/run --epochs 0", r"--epochs must be an integer >= 1", ["{tmp}/run"]),
    (f"train {TRAIN} --data {{ds}} --out {{tmp}}/run --workers -2", r"--workers must be an integer >= 0",
     ["{tmp}/run"]),
    (f"train {TRAIN} --data {{onecls}} --out {{tmp}}/run",
     r"onecls: its \d+ labelled training cells all show one class \(actin\)", ["{tmp}/run"]),
    (f"train {TRAIN} --data {{ds}} --out {{file}}", r"file: is a file, not a run directory", []),
    (f"simulate --out {{file}} --overwrite {SIM}", r"file: is a file, not a folder", ["{file}.*", "{dir}/.file.*"]),
    (f"simulate --out {{file}}/sub {SIM}", r"file: is a file, so the folder .*sub cannot be made in it", []),
    (f"simulate --out {{user}} --overwrite {SIM}",
     r"user: holds 1 entry \(thesis.tex\) but no dataset.json: protrep did not write it, so --overwrite does not",
     ["{dir}/.user.*"]),
    ("simulate --out {tmp}/ds --n-proteins 15 --cells-per-protein 100000 --quiet",
     r"--cells-per-protein 100000 cannot be reached: .* raise --max-fields-per-well to \d+", ["{tmp}/ds"]),
    ("simulate --out {tmp}/ds --n-proteins 100000000 --cells-per-protein 1000 --quiet",
     r"ds: --n-proteins 100,000,000 x --cells-per-protein 1,000 = .* TB on disk.*simulate fewer", ["{tmp}/ds"]),
    ("simulate --out {tmp}/ds --n-proteins 15 --workers -2 --quiet", r"--workers must be an integer >= 1",
     ["{tmp}/ds"]),
    ("evaluate --embeddings {dup} --standards {ds}",
     r"dup.csv: 3 proteins have several rows: \['P00000', 'P00001', 'P00002'\].*--average-cells", []),
    ("evaluate --embeddings {same} --standards {ds}", r"same.csv: all 15 proteins have the same vector.*prevalence",
     []),
    ("evaluate --embeddings {zero} --standards {ds}", r"zero.csv: 15 proteins have an all-zero vector", []),
    ("evaluate --embeddings {emb} --standards {ds}/dataset.json --out {tmp}/r.json",
     r"dataset.json: is a file, not a standards folder", ["{tmp}/r.json"]),
    ("background {ds} --out {tmp}/F.json", r"give at least one --run NAME=RUN_DIR", ["{tmp}/F.json"]),
    ("download nope --dest {tmp}/dl", r"unknown download 'nope'; choose one of .*huh2003-yeastgfp", ["{tmp}/dl"]),
]


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f.relative_to(folder).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The fixtures the rows name (see the module docstring), made once."""
    import tifffile

    root = tmp_path_factory.mktemp("bad-input")
    ds = root / "ds"
    simulate_dataset(ds, TINY, workers=1, progress=False)
    onecls = root / "onecls"
    onecls.mkdir()
    for p in ds.iterdir():
        if p.is_file():
            (onecls / p.name).write_bytes(p.read_bytes())
    cells = pd.read_csv(ds / "cells.csv", keep_default_na=False)
    cells.assign(label=0, localization="actin").to_csv(onecls / "cells.csv", index=False)
    crops = root / "crops"
    for protein in ("AAC1", "AAH1"):
        (crops / protein).mkdir(parents=True)
        for cell in range(2):
            for channel in ("gfp", "rfp"):
                tifffile.imwrite(crops / protein / f"{protein}_{cell}_{channel}.tif",
                                 np.full((64, 64), 100 + cell, np.uint16))
    (root / "file").write_text("someone's notes\n")
    (root / "user").mkdir()
    (root / "user" / "thesis.tex").write_text("\\documentclass{article}\n")
    proteins = pd.read_csv(ds / "proteins.csv")["protein"]
    features = np.random.default_rng(0).normal(size=(len(proteins), 4))
    emb = pd.DataFrame(features, columns=[f"f{j:04d}" for j in range(4)]).assign(protein=proteins)
    emb.to_csv(root / "emb.csv", index=False)
    pd.concat([emb, emb.iloc[:3]]).to_csv(root / "dup.csv", index=False)
    emb.assign(f0000=1.0, f0001=2.0, f0002=3.0, f0003=4.0).to_csv(root / "same.csv", index=False)
    emb.assign(f0000=0.0, f0001=0.0, f0002=0.0, f0003=0.0).to_csv(root / "zero.csv", index=False)
    paths = {"ds": ds, "onecls": onecls, "crops": crops, "file": root / "file", "user": root / "user",
             "emb": root / "emb.csv", "dup": root / "dup.csv", "same": root / "same.csv", "zero": root / "zero.csv",
             "dir": root}
    return {k: str(v) for k, v in paths.items()}


@pytest.mark.parametrize(("command", "message", "absent"), ROWS,
                         ids=[f"{r[0].split()[0]}-{re.sub(r'[^a-z0-9]+', '-', r[1][:32].lower()).strip('-')}"
                              for r in ROWS])
def test_bad_input_gets_one_line_naming_the_flag_or_file(world, tmp_path, capsys, command, message, absent):
    names = {**world, "tmp": str(tmp_path)}
    before = {k: _digest(world[k]) if Path(world[k]).is_dir() else Path(world[k]).read_bytes() for k in world
              if k != "dir"}
    code = main(command.format(**names).split())
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert re.search(message, err), err
    assert "=True" not in err and "()" not in err and "max_workers" not in err, err
    for pattern in absent:
        pattern = pattern.format(**names)
        assert not list(Path(pattern).parent.glob(Path(pattern).name)), f"{pattern} left behind"
    after = {k: _digest(world[k]) if Path(world[k]).is_dir() else Path(world[k]).read_bytes() for k in before}
    assert after == before, "a fixture was changed"


# --------------------------------------------------------------------------- runs: stale, extended, refused

@pytest.mark.slow
def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_the_next(world, tmp_path):
    from protrep.data.dataset import load_dataset
    from protrep.models import ModelConfig
    from protrep.training.loop import TrainConfig, train

    data = load_dataset(world["ds"])
    model = ModelConfig(name="ae", width=0.125, latent_dim=8)

    def fail(state):
        raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError):
        train(model, TrainConfig(epochs=1, batch_size=8, lr=0.5, warmup_steps=1), data, tmp_path, progress=False,
              callback=fail)
    assert (tmp_path / "run.json").is_file() and not (tmp_path / "checkpoint.pt").exists()
    train(model, TrainConfig(epochs=1, batch_size=8, max_steps=1, warmup_steps=1), data, tmp_path, progress=False)
    assert json.loads((tmp_path / "run.json").read_text())["train"]["lr"] == 0.001


@pytest.mark.slow
def test_a_finished_run_is_extended_with_more_epochs(world, tmp_path, capsys):
    from protrep.training.loop import TrainConfig, _lr_at

    run = tmp_path / "run"
    args = f"train {TRAIN} --data {world['ds']} --out {run} --patience 0".split()
    assert main(args + ["--epochs", "1"]) == 0
    first = pd.read_csv(run / "history.csv")
    steps = int(first["global_step"].iloc[-1])
    assert main(args + ["--epochs", "2"]) == 2  # without --resume: refused, with the way out
    assert "train.epochs differ: train.epochs 1 -> 2" in capsys.readouterr().err
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    history = pd.read_csv(run / "history.csv")
    assert list(history["epoch"]) == [1, 2] and int(history["global_step"].iloc[-1]) == 2 * steps
    pd.testing.assert_frame_equal(history.iloc[:1], first)  # the first epoch is kept as it was
    info = json.loads((run / "run.json").read_text())
    (extension,) = info["extensions"]
    assert extension["step"] == steps and extension["changed"] == {"epochs": [1, 2]}
    assert extension["total_steps"] == [steps, 2 * steps]
    cfg = TrainConfig.from_dict(info["train"])
    assert extension["lr"] == [pytest.approx(_lr_at(steps, steps, cfg)), pytest.approx(_lr_at(steps, 2 * steps, cfg))]
    assert history["lr"].iloc[-1] == pytest.approx(_lr_at(2 * steps - 1, 2 * steps, cfg, info["extensions"]))
    assert _lr_at(steps - 1, 2 * steps, cfg, info["extensions"]) == _lr_at(steps - 1, steps, cfg)  # the past stays
    # resumed again as extended: finished, nothing changes
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    assert json.loads((run / "run.json").read_text())["extensions"] == info["extensions"]
    capsys.readouterr()
    assert main(args + ["--epochs", "1", "--resume"]) == 2
    assert "does not lengthen the run" in capsys.readouterr().err
    assert main(args + ["--epochs", "3", "--lr", "0.01", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "train.epochs, train.lr differ" in err and "extends a run only in epochs, --max-steps" in err
    assert pd.read_csv(run / "history.csv").equals(history)


# --------------------------------------------------------------------------- leftovers of killed writers

def _dead_pid():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    from protrep.atomic import atomic_dir, host_name, write_json

    dead, host = _dead_pid(), host_name()
    stale_file = tmp_path / f".r.json.{host}.{dead}.abcd1234.tmp"
    stale_dir = tmp_path / f".d.{host}.{dead}.abcd1234.tmp"
    old_dir = tmp_path / f".d.{host}.{dead}.old.tmp"
    alive = tmp_path / f".r.json.{host}.{os.getpid()}.abcd1234.tmp"
    elsewhere = tmp_path / f".r.json.elsewhere.{dead}.abcd1234.tmp"
    for p in (stale_file, alive, elsewhere):
        p.write_text("half")
    for p in (stale_dir, old_dir):
        p.mkdir()
        (p / "images.npy").write_bytes(b"half")
    write_json(tmp_path / "r.json", {})
    with atomic_dir(tmp_path / "d") as d:
        (d / "x").write_text("whole")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["d", "r.json", alive.name, elsewhere.name])  # a live writer's and another host's stay


def _children(pid):
    """Pids of the live (not zombie) children of ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _start(code, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_simulate_workers_end_when_the_main_process_is_killed(tmp_path):
    code = ("import time, protrep.data.simulate as s\n"
            "def stuck(args):\n    time.sleep(120)\n"
            "s._job = stuck\n"
            "s.simulate_dataset('ds', s.SimConfig(n_proteins=15, cells_per_protein=4, min_per_class=1), workers=2, "
            "progress=False)\n")
    proc = _start(code, tmp_path)
    try:
        deadline = time.monotonic() + 60
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        workers = _children(proc.pid)
        assert len(workers) >= 2, proc.stderr.read() if proc.poll() is not None else "no workers started"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    orphans = [w for w in workers if _alive(w)]
    for w in orphans:  # so that a failure leaves no process behind
        os.kill(w, signal.SIGKILL)
    assert not orphans, "pool workers outlived their killed parent"


def test_a_simulation_killed_while_writing_is_cleaned_up_and_redone_the_same(world, tmp_path):
    code = ("import sys, time, numpy as np, protrep.data.simulate as s\n"
            "save = np.save\n"
            "def slow(path, *a, **k):\n    save(path, *a, **k)\n"
            "    if str(path).endswith('images.npy'):\n        print('written', flush=True); time.sleep(120)\n"
            "np.save = slow\n"
            f"s.simulate_dataset('ds', s.SimConfig.from_dict({TINY.to_dict()!r}), workers=1, progress=False)\n")
    proc = _start(code, tmp_path)
    try:
        assert proc.stdout.readline().strip() == "written", proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (partial,) = tmp_path.glob(".ds.*.tmp")
    assert (partial / "images.npy").is_file() and not (tmp_path / "ds").exists()
    simulate_dataset(tmp_path / "ds", TINY, workers=1, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert _digest(tmp_path / "ds") == _digest(world["ds"])  # as if never interrupted


# --------------------------------------------------------------------------- library checks behind the rows

def test_wells_that_fall_short_are_counted_and_warned_about(tmp_path, caplog):
    config = SimConfig(n_proteins=15, cells_per_protein=4, min_per_class=1, field_size=192, max_fields_per_well=1)
    assert config.cells_per_protein < config.expected_crops(192)  # reachable on average, short in some wells
    simulate_dataset(tmp_path / "ds", config, workers=1, progress=False)
    header = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    counts = pd.read_csv(tmp_path / "ds" / "cells.csv").groupby("protein").size()
    assert header["short_wells"] == int((counts < 4).sum() + 15 - len(counts)) > 0
    assert "fewer than cells_per_protein=4 crops" in caplog.text


def test_checks_that_name_the_keyword():
    from protrep.workers import check_workers

    with pytest.raises(ValueError, match="cells_per_protein=100000 cannot be reached"):
        SimConfig(cells_per_protein=100_000)
    assert SimConfig(cells_per_protein=100_000, max_fields_per_well=400).max_fields_per_well == 400
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        check_workers(-2)
    assert check_workers(None) is None and check_workers(0, zero=True) == 0


def test_overwrite_replaces_only_what_protrep_wrote(world, tmp_path):
    from protrep.atomic import check_destination
    from protrep.errors import DataError

    check_destination(world["ds"], overwrite=True, marker="dataset.json")  # a dataset: replaced
    (tmp_path / "empty").mkdir()
    check_destination(tmp_path / "empty", overwrite=True, marker="dataset.json")  # nothing to lose
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        check_destination(world["ds"], marker="dataset.json")
    with pytest.raises(DataError, match="no dataset.json: protrep did not write it"):
        check_destination(world["user"], overwrite=True, marker="dataset.json")
    with pytest.raises(DataError, match="user: holds 1 entry"):
        simulate_dataset(world["user"], TINY, workers=1, overwrite=True, progress=False)
    assert (Path(world["user"]) / "thesis.tex").is_file()


def test_the_cli_names_flags_not_keywords():
    from protrep.cli import _in_flags

    flags = {"overwrite": "--overwrite", "batch_size": "--batch-size", "lr": "--lr", "max_steps": "--max-steps",
             "average_cells": "--average-cells", "features": "--features"}
    assert _in_flags("x: already exists; pass overwrite=True (--overwrite) to replace it", flags) == \
        "x: already exists; pass --overwrite to replace it"
    assert _in_flags("batch_size must be an integer", flags) == "--batch-size must be an integer"
    assert _in_flags("lr must be finite; lr is", flags) == "--lr must be finite; lr is"
    assert _in_flags("data/max_steps/x: train.max_steps 2 -> 4; max_steps=4", flags) == \
        "data/max_steps/x: train.max_steps 2 -> 4; --max-steps 4"
    assert _in_flags("with average_cells / --average-cells (features=)", flags) == \
        "with --average-cells (--features)"
