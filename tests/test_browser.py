"""The book in a real browser (scripts/check_browser.py, headless Chromium through playwright).

Tiny synthetic books written into ``tmp_path`` prove the check passes a good page and fails
each kind of problem it looks for (a broken image, a JavaScript error, a request leaving
``file://``). The real book is checked where it is built: ``make book`` ends with this
check (screenshots in ``_build/screenshots/``) and ``tests/test_book.py`` checks the quick
book it builds. Every test skips when Chromium (``apt-get install chromium``) or playwright
is missing. A few seconds in all.
"""

import base64
import os
import shutil
from pathlib import Path

import pytest

import check_browser  # noqa: E402  (scripts/ is put on sys.path by conftest.py)

ROOT = Path(__file__).resolve().parents[1]

# A 2 x 2 red PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAEElEQVR4nGP4z8AARAwQCgAf7gP9i18U1AAAAABJRU5ErkJggg=="
)


def _chromium():
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium():
    """Path of Chromium; skips the test when Chromium or playwright is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"playwright is not importable ({exc}): pip install playwright")
    path = _chromium()
    if path is None:
        pytest.skip("Chromium not installed (no /usr/bin/chromium, none on PATH): apt-get install chromium")
    return path


def _page(body):
    return f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title></head><body>{body}</body></html>"


@pytest.fixture
def synthetic(tmp_path):
    """A tiny book: a good page with a PNG file, and one page per kind of problem."""
    html = tmp_path / "html"
    (html / "sub").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "fig.png").write_bytes(PNG)
    (html / "good.html").write_text(_page("<p>fine</p><img src='fig.png' alt='fig'>"
                                          "<img src='data:image/png;base64,"
                                          + base64.b64encode(PNG).decode() + "'><script>let x = 1;</script>"))
    (html / "sub" / "broken_image.html").write_text(_page("<img src='missing.png' alt='gone'>"))
    (html / "js_error.html").write_text(_page('<script>throw new Error("boom")</script>'))
    (html / "network.html").write_text(_page('<script src="http://example.com/x.js"></script>'))
    # not a page: a theme fragment under _static would fail if it were opened
    (html / "_static" / "fragment.html").write_text(_page("<img src='nowhere.png'>"))
    return html


def test_synthetic_pages_pass_and_fail_for_the_right_reason(chromium, synthetic, tmp_path):
    shots = tmp_path / "shots"
    results = {r.page: r for r in check_browser.check_pages(synthetic, screenshots=shots, chromium=chromium)}
    assert set(results) == {"good.html", "sub/broken_image.html", "js_error.html", "network.html"}

    good = results["good.html"]
    assert good.ok, good.problems
    assert (good.images_ok, good.images_total) == (2, 2)

    broken = results["sub/broken_image.html"]
    assert not broken.ok and (broken.images_ok, broken.images_total) == (0, 1)
    assert broken.broken_images == ["missing.png"]
    assert any("image did not load: missing.png" in p for p in broken.problems), broken.problems

    js = results["js_error.html"]
    assert not js.ok and any("JavaScript error" in p and "boom" in p for p in js.problems), js.problems

    net = results["network.html"]
    assert not net.ok
    assert "request left file://: http://example.com/x.js" in net.problems, net.problems

    for name in ("good.html.png", "sub__broken_image.html.png", "js_error.html.png", "network.html.png"):
        path = shots / name
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_cli_exits_1_naming_the_page_and_the_problem(chromium, synthetic, tmp_path, capsys):
    (synthetic / "good.html").unlink()
    status = check_browser.main([str(synthetic), "--screenshots", str(tmp_path / "s"), "--chromium", chromium])
    out = capsys.readouterr().out
    assert status == 1
    assert "sub/broken_image.html: images 0/1" in out and "image did not load: missing.png" in out
    assert "js_error.html" in out and "boom" in out


def test_cli_exits_0_on_a_good_book(chromium, synthetic, capsys):
    for name in ("sub/broken_image.html", "js_error.html", "network.html"):
        (synthetic / name).unlink()
    assert check_browser.main([str(synthetic), "--chromium", chromium]) == 0
    assert "good.html: images 2/2" in capsys.readouterr().out


def test_clear_errors_without_pages_or_chromium(tmp_path, capsys):
    with pytest.raises(check_browser.CheckError, match="does not exist"):
        check_browser.check_pages(tmp_path / "nothing")
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "x.html").write_text(_page(""))
    with pytest.raises(check_browser.CheckError, match="no \\*.html page"):
        check_browser.check_pages(tmp_path)
    (tmp_path / "index.html").write_text(_page(""))
    with pytest.raises(check_browser.CheckError, match="apt-get install chromium"):
        check_browser.check_pages(tmp_path, chromium=tmp_path / "no-such-chromium")
    assert check_browser.main([str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- what the check found on the real book: Sphinx 7.4 wrote sphinx-thebe's inline script twice --


def test_book_extension_drops_duplicate_inline_scripts():
    from sphinx.builders.html._assets import _JavaScript

    import protrep_sphinx_fixes

    body = 'const THEBE_JS_URL = "x"'
    files = [_JavaScript("doctools.js"), _JavaScript("", body=body), _JavaScript("a.js", **{"async": "async"}),
             _JavaScript(None, body=body), _JavaScript("doctools.js", priority=200)]
    context = {"script_files": files}
    protrep_sphinx_fixes.dedupe_scripts(None, "p", "page.html", context, None)
    assert context["script_files"] is files  # edited in place: the builder's own list
    assert [(js.filename, js.priority) for js in files] == [("doctools.js", 500), ("", 500), ("a.js", 500),
                                                           ("doctools.js", 200)]


def test_staged_book_holds_its_sphinx_extension(tmp_path):
    import yaml

    import run_book

    executed = tmp_path / "executed"
    for nb in run_book.toc_notebooks(ROOT):
        path = run_book.executed_path(nb, executed, ROOT)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    staging = run_book.stage_book(executed, tmp_path / "src", root=ROOT)
    extensions = yaml.safe_load((staging / "_config.yml").read_text())["sphinx"]["local_extensions"]
    assert "protrep_sphinx_fixes" in extensions
    for name, folder in extensions.items():
        assert (staging / folder / f"{name}.py").is_file(), f"{name} not staged in {folder}/"
