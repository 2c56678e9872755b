"""Seeds, paired intervals, the paper comparison and the references of chapter 4."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protrep.data.proteome import CLASSES, huh2003_proteome, proteome_standards, synthetic_proteome
from protrep.evaluation.paired import (RAZDAIBIEDINA_AP, VERDICTS, compare_seeds, order_agreement,
                                       paired_results_dict)
from protrep.evaluation.retrieval import functional_ap, generative_reference, localization_reference


def _screen(n=90, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    proteins = [f"p{i:03d}" for i in range(n)]
    standard = pd.DataFrame({"term": [f"t{k}" for k in labels], "protein": proteins})
    return proteins, labels, standard


def _embedding(proteins, labels, noise, seed):
    rng = np.random.default_rng(seed)
    X = np.eye(labels.max() + 1)[labels] + noise * rng.standard_normal((len(labels), labels.max() + 1))
    return pd.DataFrame(X, columns=[f"f{j:04d}" for j in range(X.shape[1])]).assign(protein=proteins)


@pytest.fixture(scope="module")
def groups():
    proteins, labels, standard = _screen()
    g = {"good": [_embedding(proteins, labels, 0.3, s) for s in range(3)],
         "bad": [_embedding(proteins, labels, 3.0, 10 + s) for s in range(3)],
         "same": [_embedding(proteins, labels, 0.3, s) for s in range(3)]}
    return g, {"s": standard}


def test_point_values_are_seed_means_of_functional_ap(groups):
    g, standards = groups
    table, paired = compare_seeds(g, standards, comparisons=["good-bad", ("good", "same")], n_boot=30, progress=False)
    aps = [functional_ap(e, standards["s"])["ap"] for e in g["good"]]
    row = table.set_index("method").loc["good"]
    assert row["ap"] == pytest.approx(np.mean(aps))
    assert row["ap_seed_sd"] == pytest.approx(np.std(aps, ddof=1))
    assert row["n_seeds"] == 3 and row["ap_low"] <= row["ap"] <= row["ap_high"]
    p = paired.set_index("comparison")
    t = table.set_index("method")
    assert p.loc["good-bad", "diff"] == pytest.approx(t.loc["good", "ap"] - t.loc["bad", "ap"])
    assert p.loc["good-bad", "verdict"] == "ahead" and p.loc["good-bad", "low"] > 0
    # the same embeddings under two names: a difference of 0, and an interval (seeds resampled
    # independently for each method) that straddles it
    assert p.loc["good-same", "diff"] == pytest.approx(0, abs=1e-12)
    assert p.loc["good-same", "verdict"] == "not separable"


def test_paired_interval_is_narrower_than_marginal_intervals(groups):
    g, standards = groups
    g2 = {"a": g["good"][:1], "b": [e.assign(f0000=e["f0000"] + 0.05) for e in g["good"][:1]]}
    table, paired = compare_seeds(g2, standards, comparisons=["a-b"], n_boot=60, progress=False)
    t = table.set_index("method")
    marginal = (t.loc["a", "ap_high"] - t.loc["a", "ap_low"])
    assert paired.iloc[0]["high"] - paired.iloc[0]["low"] < marginal


def test_held_out_proteins_restrict_the_evaluation(groups):
    g, standards = groups
    keep = [f"p{i:03d}" for i in range(0, 90, 2)]
    table, _ = compare_seeds(g, standards, proteins=keep, n_boot=0, progress=False)
    expected = functional_ap(g["good"][0][g["good"][0]["protein"].isin(keep)], standards["s"])
    assert table.set_index("method").loc["good", "n_proteins"] == expected["n_proteins"] == len(keep)


def test_compare_seeds_is_seeded_and_validates(groups):
    g, standards = groups
    a = compare_seeds(g, standards, comparisons=["good-bad"], n_boot=20, seed=3, progress=False)[1]
    b = compare_seeds(g, standards, comparisons=["good-bad"], n_boot=20, seed=3, progress=False)[1]
    c = compare_seeds(g, standards, comparisons=["good-bad"], n_boot=20, seed=4, progress=False)[1]
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    with pytest.raises(ValueError, match="both methods"):
        compare_seeds(g, standards, comparisons=["good-nothing"], progress=False)
    with pytest.raises(ValueError, match="non-empty list"):
        compare_seeds({"x": []}, standards, progress=False)
    with pytest.raises(ValueError, match="share no protein"):
        compare_seeds(g, standards, proteins=["nobody"], progress=False)


@settings(max_examples=15, deadline=None)
@given(low=st.floats(-1, 1), width=st.floats(0, 1))
def test_verdict_is_read_off_the_interval(low, width):
    from protrep.evaluation.paired import _verdict

    high = low + width
    v = _verdict(low, high)
    assert v in VERDICTS
    assert (v == "ahead") == (low > 0) and (v == "behind") == (high < 0)


def test_ahead_everywhere_needs_every_verdict():
    from protrep.evaluation.paired import ahead_everywhere

    paired = {"a-b": {"x": {"verdict": "ahead"}, "y": {"verdict": "ahead"}},
              "a-c": {"x": {"verdict": "ahead"}, "y": {"verdict": "not separable"}}}
    assert ahead_everywhere(paired, comparisons=["a-b"])
    assert not ahead_everywhere(paired, comparisons=["a-b", "a-c"])
    with pytest.raises(ValueError, match="no paired result"):
        ahead_everywhere(paired, comparisons=["a-d"])


def test_results_dict_shapes(groups):
    g, standards = groups
    table, paired = compare_seeds(g, standards, comparisons=["good-bad"], n_boot=10, progress=False)
    r = paired_results_dict(table, paired)
    assert set(r) == {"ap", "ap_ci", "ap_seed_sd", "paired"}
    assert set(r["paired"]["good-bad"]["s"]) == {"diff", "low", "high", "verdict"}
    assert r["ap"]["good"]["s"] == pytest.approx(float(table.set_index("method").loc["good", "ap"]))


def test_order_agreement_reads_the_paper_correctly():
    paper = order_agreement(RAZDAIBIEDINA_AP).set_index("standard")
    # In Razdaibiedina & Brechalov's figure PCI leads on GO CC; DeepLoc on the other three.
    assert paper.loc["compartments", "paper_order"].startswith("pci")
    assert all(paper.loc[s, "paper_order"].startswith("deeploc") for s in ("processes", "pathways", "complexes"))
    assert paper["same_order"].all()
    ours = {"deeploc": {s: 0.5 for s in paper.index}, "pci": {s: 0.4 for s in paper.index},
            "cellprofiler": {s: 0.3 for s in paper.index}}
    a = order_agreement(ours).set_index("standard")
    assert not a.loc["compartments", "same_leader"] and a.loc["processes", "same_order"]
    with pytest.raises(ValueError, match="no AP"):
        order_agreement({"deeploc": ours["deeploc"]})


def test_references():
    proteins = synthetic_proteome(200, seed=2)
    standards = proteome_standards(proteins)
    loc = localization_reference(proteins)
    with_abundance = localization_reference(proteins, abundance=True)
    gen = generative_reference(proteins)
    n_loc = len(CLASSES)
    assert loc.shape[1] == 1 + n_loc and with_abundance.shape[1] == 2 + n_loc and gen.shape[1] == 1 + n_loc + 4
    block = gen[[f"f{j:04d}" for j in range(n_loc, n_loc + 4)]].to_numpy()
    loc_x = loc[[f"f{j:04d}" for j in range(n_loc)]].to_numpy()
    # equal weight: the traits' RMS row norm equals the localization vectors'
    assert np.sqrt((block ** 2).sum(1).mean()) == pytest.approx(np.sqrt((loc_x ** 2).sum(1).mean()), rel=1e-4)
    np.testing.assert_allclose(block.mean(0), 0, atol=1e-5)
    # traits carry function in the synthetic proteome: the generative reference beats localization on complexes
    assert functional_ap(gen, standards["complexes"])["ap"] > functional_ap(loc, standards["complexes"])["ap"]
    with pytest.raises(ValueError, match="trait_0"):
        generative_reference(proteins.drop(columns=[c for c in proteins.columns if c.startswith("trait_")]))


def test_huh_abundance_shuffle_changes_only_abundance(shared_data):
    path = shared_data / "standards" / "yeast" / "huh2003_yeastgfp.csv"
    if not path.is_file():
        pytest.skip("no Huh 2003 table in the reference data")
    real = huh2003_proteome(path, n_proteins=300, seed=1)
    shuffled = huh2003_proteome(path, n_proteins=300, seed=1, shuffle_abundance=True)
    assert real.drop(columns="abundance").equals(shuffled.drop(columns="abundance"))
    assert sorted(real["abundance"]) == sorted(shuffled["abundance"])
    assert (real["abundance"].to_numpy() != shuffled["abundance"].to_numpy()).mean() > 0.5


def test_profiles_train_several_seeds_and_hold_out_a_test_third():
    from protrep.profiles import PROFILES, book_profile

    default = book_profile("default")
    assert len(default.seeds) >= 3 and default.screen.split_fractions[2] >= 0.3
    assert all(len(p.seeds) >= 2 for p in PROFILES.values())
    for bad in [(), (0, 0), (-1,), (0.5,)]:
        with pytest.raises(ValueError, match="seeds"):
            default.replace(seeds=bad)
