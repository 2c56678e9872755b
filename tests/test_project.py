"""Checks on the project's own files: pins, notebooks, table of contents, CI script, config.

These read files only (no notebook is executed here; tests/test_book.py does that).
"""

import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = sorted(BOOK.glob("*.ipynb"))


import run_book  # noqa: E402  (scripts/ is put on sys.path by conftest.py)


def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines):
    """``{normalized name: version}`` of the ``name==version`` lines; other lines must be comments."""
    pins = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert match, f"not an exact pin: {raw!r}"
        name = _normalize(match.group(1))
        assert name not in pins, f"{name} pinned twice"
        pins[name] = match.group(2)
    return pins


def _requirements():
    return _pins((ROOT / "requirements.txt").read_text().splitlines())


def _constraints():
    return _pins((ROOT / "constraints.txt").read_text().splitlines())


# -- pins --------------------------------------------------------------------------------


def test_environment_yml_pins_match_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    assert "pip" in deps
    pip_sections = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one `pip:` section"
    assert _pins(pip_sections[0]) == _requirements()


def test_torch_pinned_to_the_cpu_wheel_version():
    # An unpinned torch pulls the newest CUDA build (several GB); 2.13.0 is the CPU wheel.
    assert _requirements().get("torch") == "2.13.0"
    assert _constraints().get("torch") == "2.13.0"


def test_constraints_cover_requirements():
    requirements, constraints = _requirements(), _constraints()
    assert "protrep" not in constraints
    for name, version in requirements.items():
        assert constraints.get(name) == version, f"{name}: requirements {version}, constraints {constraints.get(name)}"


def test_pyproject_dependencies_are_the_pinned_ones():
    # pyproject.toml lists the dependencies unpinned, requirements.txt pins the same set.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        names += extra
    names = {_normalize(re.split(r"[<>=!~\[; ]", n, maxsplit=1)[0]) for n in names}
    assert names == set(_requirements())
    assert project["scripts"]["protrep"] == "protrep.cli:main"
    assert project["requires-python"] == ">=3.11"


def test_kernel_python3_is_this_interpreter():
    # papermill runs notebooks with -k python3: that kernel must start the interpreter
    # the tests (and the notebooks' protrep) run in, not some other Python on the machine.
    from jupyter_client.kernelspec import KernelSpecManager

    argv = KernelSpecManager().get_kernel_spec("python3").argv
    # jupyter_client replaces a bare "python" with the launching interpreter
    if argv[0] not in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        assert Path(argv[0]).resolve() == Path(sys.executable).resolve(), argv


# -- notebooks and table of contents ----------------------------------------------------


def test_toc_and_book_notebooks_agree():
    # Every entry of _toc.yml exists (toc_files raises otherwise) and every notebook of
    # book/ is in the table of contents.
    listed = run_book.toc_files(ROOT)
    assert listed[0] == BOOK / "intro.md"
    listed_notebooks = {p.name for p in listed if p.suffix == ".ipynb"}
    assert listed_notebooks == {p.name for p in NOTEBOOKS}
    assert listed_notebooks, "_toc.yml lists no notebook"


def test_notebook_names_follow_nn_topic():
    for nb in NOTEBOOKS:
        assert re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", nb.name), nb.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} of {path.name} has outputs (clear them before committing)"
            assert cell.execution_count is None, f"cell {i} of {path.name} has an execution count"
    assert "papermill" not in nb.metadata, f"{path.name} is an executed copy (papermill metadata)"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged `parameters`, want 1"
    cell = tagged[0]
    assert cell.cell_type == "code"
    assigned = set(re.findall(r"^([A-Za-z_]\w*)\s*(?::[^=]+)?=", cell.source, flags=re.M))
    for name in ("profile", "seed", "out_dir"):
        assert name in assigned, f"{path.name}: parameters cell does not set `{name}`"


SKELETON = ["## Overview", "## Prerequisites", "## Imports", "## Parameters", "## Summary", "## What's next"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_follows_the_house_skeleton(path):
    """Title; Overview, Prerequisites (with the runtime), Imports, Parameters, ..., Summary; What's next last."""
    nb = nbformat.read(path, as_version=4)
    headings = [line for c in nb.cells if c.cell_type == "markdown" for line in c.source.splitlines()
                if re.match(r"^#{1,2} ", line)]
    assert headings and headings[0].startswith("# "), f"{path.name} does not open with a title"
    found = [h for h in headings if h in SKELETON]
    assert found == SKELETON, f"{path.name}: skeleton headings {found}, want {SKELETON} in this order"
    assert headings[-1] == "## What's next", f"{path.name} does not end with What's next"
    prerequisites = next(c.source for c in nb.cells if "## Prerequisites" in c.source)
    assert "Runtime" in prerequisites and "100 GFLOP/s" in prerequisites, (
        f"{path.name}: the Prerequisites do not give the runtime at the reference matmul rate")


def test_notebooks_compute_through_the_package():
    """No profile tables, environment lookups or local function definitions in the notebooks."""
    for path in NOTEBOOKS:
        code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        for pattern in (r"^PROFILES\s*=", r"os\.environ", r"^def \w+\("):
            assert not re.search(pattern, code, flags=re.M), f"{path.name} has {pattern!r}: move it into protrep"


# -- CI, Makefile and book config -------------------------------------------------------


def test_ci_runs_the_readme_commands():
    ci = ROOT / ".ci" / "run"
    text = ci.read_text()
    assert text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    assert re.search(r"\bmake book\b", text) and re.search(r"\bmake test\b", text)
    assert text.index("make book") < text.index("make test")
    assert ci.stat().st_mode & 0o111, ".ci/run is not executable"
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme


def test_makefile_does_not_hide_figures():
    # MPLBACKEND=Agg in the notebooks' environment would make every figure vanish.
    assert "MPLBACKEND" not in (ROOT / "Makefile").read_text()


def test_book_config():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["only_build_toc_files"] is True
    assert config["title"] == "protrep"
    for bib in config["bibtex_bibfiles"]:
        assert (ROOT / bib).is_file(), bib
    assert config["launch_buttons"]["thebe"] is False
    for key in ("binderhub_url", "jupyterhub_url", "colab_url", "deepnote_url"):
        assert not config["launch_buttons"].get(key)
    # no math syntax: a page with math would load MathJax from a CDN
    extensions = config["parse"]["myst_enable_extensions"]
    assert "dollarmath" not in extensions and "amsmath" not in extensions


def test_bibliography_keys_unique():
    keys = re.findall(r"^@\w+\{([^,]+),", (BOOK / "references.bib").read_text(), flags=re.M)
    assert keys and len(keys) == len(set(keys))


def test_run_book_parses_parameters_like_papermill():
    assert run_book.parse_value("3") == 3
    assert run_book.parse_value("0.5") == 0.5
    assert run_book.parse_value("True") is True
    assert run_book.parse_value("none") is None
    assert run_book.parse_value("quick") == "quick"
