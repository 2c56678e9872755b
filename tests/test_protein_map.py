"""The interactive protein map: t-SNE coordinates, cosine neighbours, thumbnails, an offline bokeh page."""

import base64
import io
from html.parser import HTMLParser

import matplotlib

matplotlib.use("Agg")  # tests only; thumbnails use protrep.plotting's colours

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from protrep.data.dataset import CellDataset  # noqa: E402
from protrep.protein_map import (map_coordinates, map_html, nearest_neighbours, protein_map,  # noqa: E402
                                 show_map, thumbnails)

MODELS = ["deeploc", "pci", "cellprofiler"]


def _table(proteins, X):
    table = pd.DataFrame(np.asarray(X, np.float32), columns=[f"f{j:04d}" for j in range(np.shape(X)[1])])
    table.insert(0, "n_cells", 2)
    table.insert(0, "protein", list(proteins))
    return table


@pytest.fixture
def tables():
    """Three models of 12 proteins in two groups; the second model lists its proteins in another order."""
    rng = np.random.default_rng(0)
    proteins = [f"P{i:02d}" for i in range(12)]
    centre = np.repeat(np.eye(2, 6) * 3, 6, axis=0)  # P00-P05 near e0, P06-P11 near e1
    out = {name: _table(proteins, centre + rng.normal(scale=0.3, size=(12, 6))) for name in MODELS}
    out["pci"] = out["pci"].iloc[::-1].reset_index(drop=True)
    return out


@pytest.fixture
def labels():
    return pd.Series(["nucleus"] * 6 + ["ER"] * 6, index=[f"P{i:02d}" for i in range(12)])


def test_map_coordinates_are_deterministic_with_the_seed(tables):
    first = map_coordinates(tables["deeploc"], seed=3)
    again = map_coordinates(tables["deeploc"], seed=3)
    assert list(first.columns) == ["protein", "x", "y"] and len(first) == 12
    assert first["protein"].tolist() == tables["deeploc"]["protein"].tolist()
    pd.testing.assert_frame_equal(first, again)
    assert np.isfinite(first[["x", "y"]].to_numpy()).all()


def test_map_coordinates_follow_the_cosine_not_the_length(tables):
    """Rows are scaled to unit length first: stretching a protein's vector moves nothing."""
    table = tables["deeploc"]
    stretched = table.copy()
    features = [c for c in table.columns if c.startswith("f")]
    stretched[features] = table[features].to_numpy() * 2.0 ** np.arange(-3, 9)[:, None]  # exact in floating point
    pd.testing.assert_frame_equal(map_coordinates(table, seed=0), map_coordinates(stretched, seed=0))


def test_nearest_neighbours_match_a_ranking_worked_out_by_hand():
    # cosines: A-B 0.707, A-C 0, A-D -1, B-C 0.707, B-D -0.707, C-D 0 (A's length does not matter)
    table = _table("ABCD", [[2, 0], [1, 1], [0, 1], [-1, 0]])
    near = nearest_neighbours(table, k=2)
    assert list(near.columns) == ["protein", "rank", "neighbour", "similarity"]
    got = near.groupby("protein", sort=False)["neighbour"].agg("".join).to_dict()
    assert got == {"A": "BC", "B": "AC", "C": "BA", "D": "CB"}  # ties (B: A, C; C: A, D) keep the table's order
    np.testing.assert_allclose(near["similarity"], [0.7071, 0, 0.7071, 0.7071, 0.7071, 0, 0, -0.7071], atol=1e-4)
    assert near["rank"].tolist() == [1, 2] * 4


def test_nearest_neighbours_match_a_brute_force_cosine_ranking(tables):
    table = tables["pci"]
    X = table[[c for c in table.columns if c.startswith("f")]].to_numpy(np.float64)
    ids = table["protein"].to_numpy()
    near = nearest_neighbours(table, k=5)
    for i, protein in enumerate(ids):
        cos = [X[i] @ X[j] / np.linalg.norm(X[i]) / np.linalg.norm(X[j]) for j in range(len(X))]
        order = sorted((j for j in range(len(X)) if j != i), key=lambda j: -cos[j])[:5]
        mine = near[near["protein"] == protein]
        assert mine["neighbour"].tolist() == ids[order].tolist()
        np.testing.assert_allclose(mine["similarity"], [cos[j] for j in order], rtol=1e-6)


def test_thumbnails_are_png_data_uris_of_the_asked_size():
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"protein": ["b", "a", "b", "c", "a", "c"]})
    ds = CellDataset(images=rng.random((6, 2, 20, 20)).astype(np.float32), meta=meta, channels=("gfp", "rfp"),
                     classes=("x",))
    uris = thumbnails(ds, size=12, seed=1)
    assert list(uris) == ["a", "b", "c"]
    for uri in uris.values():
        assert uri.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert image.format == "PNG" and image.size == (12, 12)
    assert thumbnails(ds, size=12, seed=1) == uris  # the seed picks the cell
    assert list(thumbnails(ds, ["c", "a"], size=8, colors=None)) == ["c", "a"]
    with pytest.raises(ValueError, match="no cell"):
        thumbnails(ds, ["a", "z"])
    with pytest.raises(ValueError, match="size"):
        thumbnails(ds, size=2)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.external, self.inline_scripts = [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        url = attrs.get("src") if tag in ("script", "img", "iframe") else attrs.get("href") if tag == "link" else None
        if url and url.startswith(("http://", "https://", "//")):
            self.external.append(url)
        self.inline_scripts += tag == "script" and not attrs.get("src")


def test_the_map_is_an_offline_page_with_every_model(tables, labels):
    layout = protein_map(tables, labels, {"P00": "data:image/png;base64,AAAA"}, seed=0, k=3)
    select, plot = layout.children
    assert select.options == MODELS and select.value == "deeploc"
    source = plot.renderers[0].data_source
    for name in MODELS:
        assert {f"x:{name}", f"y:{name}", f"neighbours:{name}"} <= set(source.data)
    row = source.data["protein"].index("P00")
    assert source.data["neighbours:deeploc"][row].count("\n") == 2  # k = 3 lines
    assert max(np.abs(source.data["x:pci"]).max(), np.abs(source.data["y:pci"]).max()) == pytest.approx(1)
    page = map_html(layout)
    tags = _Tags()
    tags.feed(page)
    assert not tags.external and tags.inline_scripts >= 2  # bokeh's JavaScript is in the page
    assert "cdn.bokeh.org" not in page
    for name in MODELS:
        assert f'"{name}"' in page
    assert len(page.encode()) < 2.5e6


def test_show_map_displays_an_iframe_holding_the_page(tables, labels, monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    show_map(protein_map({"deeploc": tables["deeploc"]}, labels), height=500)
    assert len(shown) == 1
    frame = shown[0].data
    assert frame.startswith("<div><iframe srcdoc=\"&lt;!DOCTYPE html&gt;") and "height: 500px" in frame


def test_bad_input_raises_a_clear_value_error(tables, labels):
    fewer = {**tables, "pci": tables["pci"].iloc[:-1]}
    with pytest.raises(ValueError, match="different proteins"):
        protein_map(fewer, labels)
    layout = protein_map(fewer, labels, common=True)  # the 11 shared proteins
    assert len(layout.children[1].renderers[0].data_source.data["protein"]) == 11
    one = _table(["P00"], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="at least 3"):
        map_coordinates(one)
    with pytest.raises(ValueError, match="at least 3"):
        protein_map({"deeploc": one}, labels)
    with pytest.raises(ValueError, match="repeat"):
        nearest_neighbours(pd.concat([tables["deeploc"], tables["deeploc"].iloc[:1]]))
    broken = tables["deeploc"].copy()
    broken.loc[2, "f0001"] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        map_coordinates(broken)
    with pytest.raises(ValueError, match="k must"):
        nearest_neighbours(tables["deeploc"], k=12)
    with pytest.raises(ValueError, match="perplexity"):
        map_coordinates(tables["deeploc"], perplexity=12)
    with pytest.raises(ValueError, match="non-empty dict"):
        protein_map({}, labels)
    with pytest.raises(ValueError, match="'protein' column"):
        protein_map({"x": tables["deeploc"].drop(columns="protein")}, labels)


def test_the_module_imports_no_torch():
    """Only data and plotting from protrep; bokeh, sklearn and PIL on first use."""
    import ast
    from pathlib import Path

    import protrep.protein_map

    tree = ast.parse(Path(protrep.protein_map.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {("." * n.level) + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in names if m.split(".")[0] == "torch" or m.lstrip(".").split(".")[0]
                in ("models", "training", "inference")}, names
