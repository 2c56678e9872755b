"""Chapter 7's sweep (protrep.sweep): grid, winners and verdicts, calibration, the CLI."""

import json

import numpy as np
import pandas as pd
import pytest

from protrep.sweep import (SWEEP_METHODS, _point_summary, calibrate, grid_table, knob_effects, point_label,
                           reference_ratios, sweep_grid, sweep_point, sweep_verdict)


def test_grid_is_the_phase_diagram_then_the_expression_row():
    grid = sweep_grid([0.0, 1.0], expression_levels=[0.0, 0.5])
    assert [point_label(p) for p in grid] == ["c0.00-t0.00-f0.00", "c0.00-t1.00-f0.00", "c1.00-t0.00-f0.00",
                                              "c1.00-t1.00-f0.00", "c1.00-t1.00-f0.50"]
    with pytest.raises(ValueError, match="coupling must be in"):
        sweep_grid([1.5])
    with pytest.raises(ValueError, match="unknown knob"):
        point_label({"couplin": 1})


def _fake(ap, low, high, diffs):
    """compare_seeds-shaped tables for one standard with the given APs and paired differences."""
    table = pd.DataFrame([{"method": m, "standard": "complexes", "ap": a, "ap_low": a - 0.1, "ap_high": a + 0.1,
                           "prevalence": 0.01} for m, a in {**ap, "localization_reference": 0.3}.items()])
    paired = pd.DataFrame([{"comparison": c, "standard": "complexes", "diff": d, "low": lo, "high": hi}
                           for c, (d, lo, hi) in diffs.items()])
    return table, paired


def test_winner_and_its_interval_against_the_runner_up_in_either_order():
    ap = {"deeploc": 0.20, "pifia": 0.25, "pci": 0.10, "ae": 0.05, "cellprofiler": 0.12}
    # the comparison is stored as deeploc-pifia; the winner is pifia: the interval is negated
    table, paired = _fake(ap, 0, 0, {"deeploc-pifia": (-0.05, -0.09, -0.01)})
    out = _point_summary(table, paired)
    assert out["winner"]["complexes"] == "pifia" and out["runner_up"]["complexes"] == "deeploc"
    iv = out["interval"]["complexes"]
    assert (iv["comparison"], iv["diff"], iv["low"], iv["high"]) == ("pifia-deeploc", 0.05, 0.01, 0.09)
    assert iv["verdict"] == "ahead"
    table, paired = _fake(ap, 0, 0, {"deeploc-pifia": (-0.05, -0.09, 0.02)})
    assert _point_summary(table, paired)["interval"]["complexes"]["verdict"] == "not separable"
    # no positive pairs: undefined, no winner
    table, paired = _fake({m: float("nan") for m in ap}, 0, 0, {"deeploc-pifia": (np.nan, np.nan, np.nan)})
    out = _point_summary(table, paired)
    assert out["winner"]["complexes"] is None and out["interval"]["complexes"]["verdict"] == "undefined"


def test_verdict_counts_where_the_supervised_model_wins_and_where_it_flips():
    def point(knobs, winner, verdict):
        iv = {"comparison": f"{winner}-x", "diff": 0.1, "low": 0.05 if verdict == "ahead" else -0.01, "high": 0.2,
              "verdict": verdict}
        return {"knobs": knobs, "winner": {s: winner for s in ("compartments", "processes", "pathways", "complexes")},
                "runner_up": {s: "x" for s in ("compartments", "processes", "pathways", "complexes")},
                "interval": {s: iv for s in ("compartments", "processes", "pathways", "complexes")}}

    grid = [point({"coupling": 1.0}, "deeploc", "ahead"), point({"coupling": 0.0}, "pci", "ahead"),
            point({"trait_strength": 0.0}, "deeploc", "not separable")]
    v = sweep_verdict(grid, calibrated=grid[0])["complexes"]
    assert "deeploc wins separably at 1 of 3 points (c1.00-t1.00-f0.00)" in v
    assert "another method wins separably at 1 (pci at c0.00-t1.00-f0.00)" in v
    assert "no separable winner at 1 (c1.00-t0.00-f0.00)" in v and "At the calibrated point" in v


def test_knobs_move_what_they_name_and_keep_the_marginals():
    e = knob_effects([0.0, 1.0], n_proteins=900).set_index(["knob", "level"])
    assert e.loc[("coupling", 0.0), "same_compartment"] < e.loc[("coupling", 1.0), "same_compartment"] - 0.3
    assert abs(e.loc[("trait_strength", 0.0), "trait_r"]) < 0.2 < e.loc[("trait_strength", 1.0), "trait_r"]
    assert e.loc[("function_expression", 1.0), "abundance_r"] > 0.5 > abs(e.loc[("function_expression", 0.0),
                                                                                "abundance_r"])
    assert np.allclose(e["log_abundance_sd"], 1.0, atol=0.1) and np.ptp(e["trait_sd"]) < 0.03


def test_reference_ratios_of_a_proteome():
    from protrep.data.proteome import proteome_standards, synthetic_proteome

    table = synthetic_proteome(300, seed=1)
    r = reference_ratios(table, proteome_standards(table))
    assert set(r.index) >= {"compartments", "complexes"}
    assert (r["ratio"] >= 1).all()  # localization retrieves function at least as well as chance here
    assert np.allclose(r["ratio"], r["localization_ap"] / r["prevalence"])


@pytest.mark.slow
def test_sweep_point_retrains_or_reuses_and_the_cli_writes_the_same(tmp_path, capsys):
    from protrep.cli import main

    knobs = {"coupling": 0.0, "trait_strength": 1.0}
    a = sweep_point(tmp_path, "quick", knobs, seeds=[0], retrain=True, n_boot=5)
    assert a["mode"] == "retrain" and a["knobs"]["coupling"] == 0.0 and a["n_proteins"] > 0
    assert set(a["ap"]) == set(SWEEP_METHODS) and (tmp_path / "sweep" / "quick" / point_label(knobs) / "runs").is_dir()
    # the retrained runs live in the point's folder: reuse mode finds none in data_dir and says what to do
    with pytest.raises(FileNotFoundError, match="run chapters 2 and 3"):
        sweep_point(tmp_path, "quick", knobs, seeds=[0], retrain=False, n_boot=5)
    out = tmp_path / "point.json"
    assert main(["sweep", "--profile", "quick", "--data-dir", str(tmp_path), "--coupling", "0", "--retrain",
                 "--seeds", "0", "--n-boot", "5", "--out", str(out), "--quiet"]) == 0
    b = json.loads(out.read_text())
    assert b["winner"] == a["winner"]  # the same point, from the cached screen and runs
    for m in SWEEP_METHODS:
        assert b["ap"][m] == pytest.approx(a["ap"][m], nan_ok=True)
    assert "winner" in capsys.readouterr().out
    assert len(grid_table([a])) == 4


def test_calibration_against_the_real_proteome(shared_data):
    from protrep.data.standards import load_yeast_standards

    folder = shared_data / "standards" / "yeast"
    if not folder.is_dir():
        pytest.skip("real yeast standards not in the reference data")
    c = calibrate(load_yeast_standards(folder), n_proteins=300, levels=[0.0, 0.5, 1.0], expression_levels=[0.0, 1.0],
                  progress=False)
    assert c["coupling"] in (0.0, 0.5, 1.0) and c["function_expression"] in (0.0, 1.0)
    assert c["trait_strength"] is None and set(c["target"]["ratio"]) == set(c["achieved"]["ratio"])
    # the chosen coupling minimises the log-ratio distance among the candidates
    curves = c["curves"][c["curves"]["knob"] == "coupling"]
    target = pd.Series(c["target"]["ratio"])
    loss = curves.groupby("level").apply(lambda g: float(((np.log(g.set_index("standard")["ratio"].loc[target.index])
                                                           - np.log(target)) ** 2).sum()), include_groups=False)
    assert loss.idxmin() == c["coupling"]
