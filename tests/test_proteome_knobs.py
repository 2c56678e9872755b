"""The three knobs of the synthetic proteome: coupling, trait_strength, function_expression."""

import json

import numpy as np
import pandas as pd
import pytest

from protrep.data.proteome import N_TRAITS, synthetic_proteome
from protrep.data.simulate import SimConfig, _proteome

TRAITS = [f"trait_{j}" for j in range(N_TRAITS)]

# hash_pandas_object(...).sum() of the proteome made by the code before the knobs existed
# (recorded from that code, not recomputed here): the default knobs must keep the book's
# screen to the byte.
BOOK_HASHES = {
    (600, 0, 4): 1463962330784932673,
    (600, 1, 4): 3470803324538984613,
    (600, 2, 4): 3365303271728097561,
    (45, 0, 3): 15350062786759925746,
}


def _hash(table):
    return int(pd.util.hash_pandas_object(table).sum())


@pytest.mark.parametrize("n, seed, min_per_class", sorted(BOOK_HASHES))
def test_default_knobs_give_the_book_screen_to_the_byte(n, seed, min_per_class):
    assert _hash(synthetic_proteome(n, seed=seed, min_per_class=min_per_class)) == BOOK_HASHES[n, seed, min_per_class]


@pytest.fixture(scope="module")
def proteomes():
    """n = 2000 (the book's full profile) at the default knobs and with each knob at its far end."""
    knobs = {"default": {}, "coupling=0": {"coupling": 0.0}, "trait_strength=0": {"trait_strength": 0.0},
             "function_expression=1": {"function_expression": 1.0}}
    return {name: synthetic_proteome(2000, seed=3, **kw) for name, kw in knobs.items()}


def _complex_pairs(table):
    """Row indices (i, j), i < j, of every pair of members of the same complex."""
    members = table[table["complex"] != ""]
    pairs = []
    for idx in members.groupby("complex").indices.values():
        rows = members.index.to_numpy()[idx]
        i, j = np.triu_indices(len(rows), 1)
        pairs.append(np.stack([rows[i], rows[j]], 1))
    return np.concatenate(pairs)


def _pair_correlation(values, pairs):
    """Pearson correlation over pairs, both orders (symmetric, like an intraclass correlation)."""
    a = np.concatenate([values[pairs[:, 0]], values[pairs[:, 1]]])
    b = np.concatenate([values[pairs[:, 1]], values[pairs[:, 0]]])
    return float(np.corrcoef(a, b)[0, 1])


def test_knobs_change_only_what_they_act_on(proteomes):
    # trait_strength and function_expression draw from streams of their own: all else is the book's screen
    default = proteomes["default"]
    others = [c for c in default.columns if c not in TRAITS]
    pd.testing.assert_frame_equal(proteomes["trait_strength=0"][others], default[others])
    assert not np.allclose(proteomes["trait_strength=0"][TRAITS], default[TRAITS])
    others = [c for c in default.columns if c != "abundance"]
    pd.testing.assert_frame_equal(proteomes["function_expression=1"][others], default[others])
    assert not np.allclose(proteomes["function_expression=1"]["abundance"], default["abundance"])


def test_coupling_zero_makes_complex_members_share_localization_by_chance_only(proteomes):
    for name in ("coupling=0", "default"):
        table = proteomes[name]
        pairs = _complex_pairs(table)
        primary = table["primary"].to_numpy()
        shared = float((primary[pairs[:, 0]] == primary[pairs[:, 1]]).mean())
        # chance: two proteins drawn at random share a primary class with probability sum_k f_k^2
        chance = float((table["primary"].value_counts(normalize=True) ** 2).sum())
        if name == "coupling=0":
            # ~1,300 pairs at a rate ~0.22: binomial sd ~0.012, pairs within one complex are
            # positively dependent, so allow 0.05 (about 4 sd even at twice that sd)
            assert abs(shared - chance) < 0.05, (shared, chance)
        else:
            # each member keeps its complex's class with probability 0.9, so ~0.8 of pairs share it
            assert shared > chance + 0.4, (shared, chance)


def test_trait_strength_zero_makes_traits_carry_no_function(proteomes):
    r0 = _pair_correlation(proteomes["trait_strength=0"]["trait_0"].to_numpy(), _complex_pairs(proteomes["default"]))
    r1 = _pair_correlation(proteomes["default"]["trait_0"].to_numpy(), _complex_pairs(proteomes["default"]))
    assert abs(r0) < 0.15, r0
    assert r1 > 0.4, r1  # expected 2.33 / 2.69 = 0.87 before the logistic


def test_trait_spread_does_not_depend_on_trait_strength(proteomes):
    # the pre-logistic score zt = 1.6 logit(trait) has variance 2.69 for every trait_strength
    def zt_sd(table):
        t = table[TRAITS].to_numpy()
        return float((1.6 * np.log(t / (1 - t))).std())

    sd0, sd1 = zt_sd(proteomes["trait_strength=0"]), zt_sd(proteomes["default"])
    assert abs(sd0 / np.sqrt(2.69) - 1) < 0.1, sd0
    assert abs(sd1 / np.sqrt(2.69) - 1) < 0.1, sd1
    s0, s1 = proteomes["trait_strength=0"][TRAITS].std().mean(), proteomes["default"][TRAITS].std().mean()
    assert abs(s0 / s1 - 1) < 0.1, (s0, s1)


def test_function_expression_makes_complex_members_equally_bright(proteomes):
    pairs = _complex_pairs(proteomes["default"])
    r1 = _pair_correlation(np.log(proteomes["function_expression=1"]["abundance"].to_numpy()), pairs)
    r0 = _pair_correlation(np.log(proteomes["default"]["abundance"].to_numpy()), pairs)
    assert r1 > 0.4, r1  # expected 2.33 / 2.69 = 0.87
    assert abs(r0) < 0.15, r0
    # the spread of log-abundance stays that of the book's screen (sd 1)
    assert abs(np.log(proteomes["function_expression=1"]["abundance"]).std() - 1) < 0.15


@pytest.mark.parametrize("knob", ["coupling", "trait_strength", "function_expression"])
@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_invalid_knobs_raise_naming_the_knob(knob, value):
    with pytest.raises(ValueError, match=knob):
        synthetic_proteome(100, seed=0, **{knob: value})
    with pytest.raises(ValueError, match=knob):
        SimConfig(**{knob: value})


@pytest.mark.parametrize("knob, value", [("coupling", 0.5), ("trait_strength", 0.0), ("function_expression", 0.3)])
def test_knobs_are_refused_in_huh2003_mode(knob, value):
    with pytest.raises(ValueError, match=f"{knob}.*synthetic"):
        SimConfig(proteome="huh2003", n_proteins=None, **{knob: value})
    SimConfig(proteome="huh2003", n_proteins=None)  # the defaults are fine


def test_sim_config_round_trips_with_and_without_the_knobs():
    config = SimConfig(n_proteins=120, coupling=0.25, trait_strength=0.5, function_expression=0.75)
    assert SimConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # a dataset.json written before the knobs existed has none of their keys: defaults, the book's screen
    old = {k: v for k, v in SimConfig().to_dict().items()
           if k not in ("coupling", "trait_strength", "function_expression")}
    assert SimConfig.from_dict(old) == SimConfig()
    assert SimConfig.from_dict(old).coupling == 1.0 and SimConfig.from_dict(old).function_expression == 0.0


def test_sim_config_passes_the_knobs_to_the_proteome():
    knobs = {"coupling": 0.0, "trait_strength": 0.3, "function_expression": 0.6}
    config = SimConfig(n_proteins=90, seed=2, min_per_class=3, **knobs)
    pd.testing.assert_frame_equal(_proteome(config), synthetic_proteome(90, seed=2, min_per_class=3, **knobs))
