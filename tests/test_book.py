"""Integration test of the book: every notebook of ``_toc.yml`` runs and the HTML builds.

The notebooks run with papermill in the ``quick`` profile (kernel ``python3``, working
directory ``book/``, ``out_dir`` a temporary folder), exactly as ``make book`` runs them
in the ``default`` profile (both use scripts/run_book.py). The book is then built from
the executed copies into a temporary folder with warnings as errors, and the HTML is
checked: one page per notebook, with a figure and a table, and nothing loaded from the
network. Budget: a few minutes in all.
"""

import json
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]


import run_book  # noqa: E402  (scripts/ is put on sys.path by conftest.py)

pytestmark = pytest.mark.book


class _Tags(HTMLParser):
    """Collect ``<img src>``, ``<script src>``, ``<link href>`` and count ``<table>`` tags."""

    def __init__(self):
        super().__init__()
        self.images, self.external, self.tables = [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        elif tag == "table":
            self.tables += 1
        url = attrs.get("src") if tag in ("script", "img", "iframe") else attrs.get("href") if tag == "link" else None
        if url and (url.startswith(("http://", "https://", "//"))):
            self.external.append(f"<{tag}> {url}")


def _parse(path):
    tags = _Tags()
    tags.feed(path.read_text(encoding="utf-8"))
    return tags


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    """Execute the notebooks (profile quick) and build the HTML; return the folders."""
    notebooks = run_book.toc_notebooks(ROOT)  # fails clearly if an entry has no file
    assert notebooks, "_toc.yml lists no notebook"
    tmp = tmp_path_factory.mktemp("book")
    results = tmp / "results"
    executed = tmp / "notebooks"
    start = time.perf_counter()
    timings = run_book.run_notebooks(
        notebooks, executed, parameters={"profile": "quick", "out_dir": str(results)}, root=ROOT
    )
    staging = run_book.stage_book(executed, tmp / "src", root=ROOT)
    html = run_book.build_html(staging, tmp)
    print("book in profile quick:", ", ".join(f"{p.name} {s:.0f} s" for p, s in timings),
          f"; total with build {time.perf_counter() - start:.0f} s")
    return {"notebooks": notebooks, "results": results, "html": html}


def test_every_notebook_writes_its_results(book):
    for nb in book["notebooks"]:
        path = book["results"] / f"{nb.stem}.json"
        assert path.is_file(), f"{nb.name} did not write {path.name} into out_dir"
        assert isinstance(json.loads(path.read_text()), dict), f"{path.name} is not a JSON object"


def test_every_notebook_page_has_a_figure_and_a_table(book):
    html = book["html"]
    for nb in book["notebooks"]:
        page = html / nb.relative_to(ROOT).with_suffix(".html")
        assert page.is_file(), f"no page for {nb.name}"
        tags = _parse(page)
        figures = []
        for src in tags.images:
            if src.startswith("data:image/png"):
                figures.append(src)
                continue
            path = (page.parent / unquote(urlsplit(src).path)).resolve()
            if path.suffix == ".png" and path.is_file() and path.stat().st_size > 0:
                figures.append(src)
        assert figures, f"{page.name} shows no PNG figure (images: {tags.images})"
        assert tags.tables >= 1, f"{page.name} shows no table"


def test_html_loads_nothing_from_the_network(book):
    html = book["html"]
    pages = sorted(html.rglob("*.html"))
    assert (html / "index.html").is_file() and (html / "book" / "intro.html").is_file()
    offending = {str(p.relative_to(html)): _parse(p).external for p in pages}
    offending = {k: v for k, v in offending.items() if v}
    assert not offending, f"pages load assets from the network: {offending}"


def test_pages_work_in_a_browser(book):
    """Every page in headless Chromium: images load, no JavaScript error, no request leaves file://."""
    import check_browser  # scripts/, as run_book

    try:
        chromium = check_browser.find_chromium()
        check_browser._import_playwright()
    except check_browser.CheckError as exc:
        pytest.skip(str(exc))
    results = check_browser.check_pages(book["html"], chromium=chromium)
    assert {"book/intro.html", "book/04_evaluation.html"} <= {r.page for r in results}
    bad = {r.page: r.problems for r in results if not r.ok}
    assert not bad, f"pages with problems in the browser: {bad}"


def _results(book):
    return {nb.stem: json.loads((book["results"] / f"{nb.stem}.json").read_text()) for nb in book["notebooks"]}


def test_verdicts_follow_from_the_numbers_they_state(book):
    r = _results(book)
    probes = {m: r["03_autoencoder"][m]["probe_test_accuracy"] for m in ("pifia", "pci", "ae")}
    v = r["03_autoencoder"]["supervised_vs_probes"]
    assert v["best_probe"] == max(probes, key=probes.get) and v["best_probe_accuracy"] == probes[v["best_probe"]]
    assert v["supervised_accuracy"] == r["02_cnn"]["test_accuracy"]
    assert v["above"] == (v["supervised_accuracy"] > v["best_probe_accuracy"])

    ev = r["04_evaluation"]
    assert ev["seeds"] and set(ev["paired"]) == {"deeploc-pifia", "deeploc-pci", "deeploc-ae", "deeploc-cellprofiler",
                                                 "pifia-pci"}
    assert ev["pifia_ahead_of_deeploc"] == {s: v["verdict"] == "behind" for s, v in ev["paired"]["deeploc-pifia"].items()}
    for c, per_standard in ev["paired"].items():
        a, b = c.split("-", 1)
        for s, v in per_standard.items():
            assert v["diff"] == pytest.approx(ev["heldout"]["ap"][a][s] - ev["heldout"]["ap"][b][s], nan_ok=True)
            assert v["verdict"] == ("ahead" if v["low"] > 0 else "behind" if v["high"] < 0 else "not separable")
    assert ev["claim_holds"] == all(v["verdict"] == "ahead" for c in ("deeploc-pci", "deeploc-ae")
                                    for v in ev["paired"][c].values())
    for m, per_standard in ev["budgets"].items():
        assert per_standard["images_seen"] > 0 and per_standard["seconds"] > 0, m
    for r_ in ev["paper_agreement"].values():
        if r_["same_leader"] is not None:  # None: an AP undefined in this profile
            assert r_["same_leader"] == (r_["paper_order"].split(" > ")[0] == r_["our_order"].split(" > ")[0])

    bg = r["05_background"]
    assert set(bg["table1"]) >= {"deeploc", "pifia", "pci", "ae", "cellprofiler", "deeploc_invariant", "ae_invariant",
                                 "deeploc_masked"}
    assert set(bg["published_protocol"]["table1"]) == {"deeploc", "pifia", "pci"}
    for m, row in bg["table1"].items():
        for setting, mean in row.items():
            low, high = bg["table1_interval"][m][setting]
            assert low <= mean <= high, (m, setting)
        g = bg["same_minus_diff"][m]
        assert g["low"] <= g["mean"] <= g["high"]
    for m, v in bg["native"].items():
        assert set(v) == {"base", "same", "diff", "gap", "gap_low", "gap_high"}
        assert v["gap_low"] <= v["gap"] <= v["gap_high"]
    for inv, tests in bg["invariance"].items():
        for test, v in tests.items():
            ref = [m for m in v["base"] if m != inv][0]
            assert v["shrinks"] == (v["gap_change_high"] < 0)
            assert v["base_within_2_points"] == (v["base"][inv] >= v["base"][ref] - 0.02)
            table = bg["table1"] if test == "swap" else bg["native"]
            assert v["base"][inv] == pytest.approx(table[inv]["base"])
    assert set(bg["kl_changed_fraction"]) <= set(bg["table1"])
    assert all(0 <= f <= 1 for f in bg["kl_changed_fraction"].values())

    wd = r["07_what_decides"]
    assert wd["models"] == ["deeploc", "pifia", "pci", "ae", "cellprofiler"] and wd["grid"]
    for point in wd["grid"] + ([wd["calibrated"]["point"]] if "calibrated" in wd else []):
        for s, w in point["winner"].items():
            iv = point["interval"][s]
            if w is None:
                assert iv["verdict"] == "undefined"
                continue
            aps = {m: point["ap"][m][s] for m in wd["models"]}
            assert aps[w] == max(v for v in aps.values() if v == v) and iv["comparison"] == f"{w}-{point['runner_up'][s]}"
            assert iv["diff"] == pytest.approx(aps[w] - aps[point["runner_up"][s]])
            assert iv["verdict"] == ("ahead" if iv["low"] > 0 else "not separable")
    assert set(wd["verdict"]) == {"compartments", "processes", "pathways", "complexes"}

    hpa = r["06_hpa"]
    assert hpa["throughput_vs_chen"]["trained_here"]["images_per_min"] == hpa["images_per_min"]
    for v in hpa["throughput_vs_chen"].values():
        assert v["at_or_above"] == (v["images_per_min"] >= v["anchor"])


def test_numbers_keep_their_invariants(book):
    r = _results(book)
    ev = r["04_evaluation"]
    for s, prevalence in ev["prevalence"].items():
        if prevalence != prevalence:  # NaN: no positive pair among this profile's proteins
            continue
        low, high = ev["heldout"]["ap_ci"]["random"][s]
        assert low <= prevalence <= high, f"{s}: a random embedding's AP interval misses the pair prevalence"
        for m in ev["heldout"]["ap_ci"]:
            lo, hi = ev["heldout"]["ap_ci"][m][s]
            assert 0 <= lo <= hi <= 1, (m, s)
    assert ev["heldout"]["ap"]["localization_reference"]["compartments"] > ev["heldout"]["ap"]["random"]["compartments"]
    for key in ("map", "fraction_retrieved"):
        for m, per_standard in ev[key].items():
            assert all(v != v or 0 <= v <= 1 for v in per_standard.values()), (key, m)
    timing = r["02_cnn"]
    assert timing["train_minutes_at_reference"] == pytest.approx(
        timing["train_minutes"] * timing["matmul_gflops"] / 100.0)
