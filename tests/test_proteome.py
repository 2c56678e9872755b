import numpy as np
import pandas as pd
import pytest

from protrep.data.proteome import (
    CLASSES,
    HUH_CENSUS,
    HUH_TO_CLASS,
    huh2003_proteome,
    proteome_standards,
    synthetic_proteome,
)


@pytest.fixture(scope="module")
def big():
    return synthetic_proteome(3000, seed=1)


def test_same_seed_same_proteome():
    a, b = synthetic_proteome(200, seed=4), synthetic_proteome(200, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not synthetic_proteome(200, seed=5).equals(a)


def test_every_class_has_its_minimum():
    p = synthetic_proteome(90, seed=0, min_per_class=6)
    counts = p["primary"].value_counts()
    assert set(counts.index) == set(CLASSES)
    assert counts.min() >= 6
    with pytest.raises(ValueError, match="too small"):
        synthetic_proteome(20, seed=0, min_per_class=4)


def test_class_frequencies_follow_the_census(big):
    census = pd.Series(HUH_CENSUS, dtype=float)
    census /= census.sum()
    seen = big["localization"].str.split(";").explode().value_counts(normalize=True)
    # the functional hierarchy makes draws correlated, so compare the common classes loosely
    for cls in ["cytoplasm", "nucleus", "mitochondrion", "ER"]:
        assert 0.5 < seen[cls] / census[cls] < 2.0, cls
    assert seen["cytoplasm"] > seen["actin"] * 5


def test_multilocalization_fraction_is_huh_like(big):
    multi = (big["secondary"] != "").mean()
    assert 0.2 < multi < 0.4
    assert big.loc[big["heterogeneous"], "secondary"].ne("").all()
    assert not (big["primary"] == big["secondary"]).any()


def test_hierarchy_is_nested(big):
    # every complex lies inside one pathway, every pathway inside one process
    cplx = big[big["complex"] != ""]
    assert cplx.groupby("complex")["pathway"].nunique().max() == 1
    assert big.groupby("pathway")["process"].nunique().max() == 1
    assert cplx.groupby("complex").size().between(2, 12).all()


def _mean_pair_distance(table, unit):
    traits = table[[f"trait_{j}" for j in range(4)]].to_numpy()
    d = []
    for _, idx in table.groupby(unit).indices.items():
        if len(idx) > 1:
            x = traits[idx]
            diff = np.abs(x[:, None] - x[None]).sum(-1)
            d.append(diff[np.triu_indices(len(idx), 1)].mean())
    return float(np.mean(d))


def test_traits_are_shared_more_within_smaller_units(big):
    cplx = big[big["complex"] != ""]
    d_complex = _mean_pair_distance(cplx, "complex")
    d_pathway = _mean_pair_distance(big, "pathway")
    d_process = _mean_pair_distance(big, "process")
    traits = big[[f"trait_{j}" for j in range(4)]].to_numpy()
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(big), (2, 5000))
    d_random = np.abs(traits[i] - traits[j]).sum(-1).mean()
    assert d_complex < d_pathway < d_process < d_random


def test_complex_members_share_localization(big):
    cplx = big[big["complex"] != ""]
    agree = cplx.groupby("complex")["primary"].agg(lambda s: s.value_counts(normalize=True).iloc[0]).mean()
    assert agree > 0.85


def test_expression_is_independent_of_function(big):
    # nuisance: abundance does not differ between compartments beyond chance
    logs = np.log(big["abundance"])
    by_class = logs.groupby(big["primary"]).mean()
    counts = big["primary"].value_counts()
    z = (by_class - logs.mean()) / (logs.std() / np.sqrt(counts[by_class.index]))
    assert np.abs(z).max() < 4


def test_standards_cover_four_scales(big):
    s = proteome_standards(big)
    assert set(s) == {"compartments", "processes", "pathways", "complexes"}
    for name, table in s.items():
        assert list(table.columns) == ["term", "protein"]
        assert not table.duplicated().any()
        assert table["protein"].isin(big["protein"]).all()
    sizes = {k: v.groupby("term").size().median() for k, v in s.items()}
    assert sizes["complexes"] < sizes["pathways"] < sizes["processes"]
    assert set(s["compartments"]["term"]) == set(CLASSES)


def test_huh_mapping_covers_every_class():
    assert {v for v in HUH_TO_CLASS.values() if v} == set(CLASSES)


def test_huh2003_proteome_uses_the_real_table(shared_data):
    table = shared_data / "standards/yeast/huh2003_yeastgfp.csv"
    p = huh2003_proteome(table)
    assert 3800 < len(p) < 4155  # ORFs with at least one simulated compartment
    assert p["protein"].str.match(r"^Y[A-P][LR]\d{3}[WC]").mean() > 0.95
    row = p.set_index("protein").loc["YAL002W"]  # VPS8, endosome in Huh 2003
    assert row["primary"] == "endosome"
    sub = huh2003_proteome(table, n_proteins=100, seed=3)
    assert len(sub) == 100 and sub.equals(huh2003_proteome(table, n_proteins=100, seed=3))


def test_huh2003_bad_table_is_named(tmp_path):
    from protrep.errors import DataError

    bad = tmp_path / "huh.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="huh.csv.*missing columns"):
        huh2003_proteome(bad)
