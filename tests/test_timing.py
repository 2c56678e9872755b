import json

import nbformat
import pytest
import run_book  # noqa: E402  (scripts/ is on sys.path through conftest.py)

from protrep.timing import (
    BOOK_BUDGET_S,
    CHAPTER_BUDGETS,
    REFERENCE_GFLOPS,
    chapter_timing,
    format_timing,
    matmul_gflops,
    notebook_cells,
    scaled_budget,
)


def test_chapter_shares_fill_the_book_budget_and_cover_every_chapter():
    assert sum(CHAPTER_BUDGETS.values()) == BOOK_BUDGET_S == 30 * 60
    assert {nb.stem for nb in run_book.toc_notebooks()} <= set(CHAPTER_BUDGETS)


def test_matmul_rate_is_positive_and_budgets_scale_inversely():
    rate = matmul_gflops(n=256, repeats=2)
    assert 0.1 < rate < 1e6
    assert scaled_budget(300, REFERENCE_GFLOPS) == 300
    assert scaled_budget(300, 2 * REFERENCE_GFLOPS) == 150
    with pytest.raises(ValueError, match="positive"):
        scaled_budget(300, 0)
    with pytest.raises(ValueError, match="positive"):
        matmul_gflops(n=0)


def _executed(tmp_path, durations):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# title")]
    for i, d in enumerate(durations):
        cell = nbformat.v4.new_code_cell(f"\n# cell {i}\nx = {i}")
        if d is not None:
            cell.metadata["papermill"] = {"duration": d}
        nb.cells.append(cell)
    path = tmp_path / "02_cnn.ipynb"
    nbformat.write(nb, path)
    return path


def test_longest_cells_come_from_papermill_durations(tmp_path):
    path = _executed(tmp_path, [1.0, 30.0, None, 5.0, 2.0])
    cells = notebook_cells(path)
    assert [c["seconds"] for c in cells] == [30.0, 5.0, 2.0]
    assert cells[0] == {"cell": 2, "seconds": 30.0, "source": "# cell 1"}


def test_chapter_row_converts_to_the_reference_rate_and_flags_overruns(tmp_path):
    path = _executed(tmp_path, [100.0])
    share = CHAPTER_BUDGETS["02_cnn"]
    fast = chapter_timing("02_cnn", share / 2, 2 * REFERENCE_GFLOPS, executed=path)  # exactly the share at 100
    assert fast["reference_seconds"] == pytest.approx(share) and not fast["over"]
    slow = chapter_timing("02_cnn", share * 1.2, REFERENCE_GFLOPS, executed=path)
    assert slow["over"] and slow["longest_cells"][0]["seconds"] == 100.0
    assert chapter_timing("99_new", 5, 100)["budget_seconds"] is None
    text = format_timing([fast, slow], 2 * REFERENCE_GFLOPS)
    assert "200 GFLOP/s" in text and "OVER" in text and "cell   1" in text


def test_run_book_writes_the_timing_table(tmp_path):
    path = _executed(tmp_path, [12.0, 3.0])
    lines = []
    report = run_book.report_timing([(path, 1000.0)], 50.0, tmp_path / "results" / "timing.json", profile="default",
                                    echo=lambda *a, **k: lines.append(a[0]))
    written = json.loads((tmp_path / "results" / "timing.json").read_text())
    assert written == report and written["matmul_gflops"] == 50.0
    assert written["chapters"][0]["reference_seconds"] == 500.0
    assert written["total_reference_seconds"] == 500.0
    over = 500.0 > CHAPTER_BUDGETS["02_cnn"]
    assert any("WARNING: 02_cnn" in line for line in lines) == over
    quick = run_book.report_timing([(path, 1000.0)], 50.0, tmp_path / "q.json", profile="quick", echo=lambda *a, **k: None)
    assert quick["chapters"][0]["budget_seconds"] is None and not quick["chapters"][0]["over"]
