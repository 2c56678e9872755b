"""The package's structure: layers in the order data flows, no torch in evaluation, run identity."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["data", "models", "training", "inference", "evaluation"]


def _imports(path, module):
    """protrep modules imported by a file (inside functions too), resolved to dotted names."""
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found |= {f"{target}.{a.name}" if not node.module else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.startswith("protrep.")}


def test_imports_run_only_down_the_flow():
    offences = []
    for path in sorted((ROOT / "protrep").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(p for p in parts if p != "__init__")
        if len(parts) < 3 or parts[1] not in LAYERS:
            continue  # top-level modules (cli, profiles, config, ...) sit above or beside the layers
        layer = LAYERS.index(parts[1])
        for target in _imports(path, module):
            sub = target.split(".")[1]
            if sub in LAYERS and LAYERS.index(sub) > layer:
                offences.append(f"{module} imports {target}")
            if sub in ("cli", "profiles", "plotting"):
                offences.append(f"{module} imports the application module {target}")
    assert not offences, "imports running back up the flow: " + "; ".join(offences)


def test_evaluation_and_data_import_without_torch():
    code = ("import sys, protrep, protrep.evaluation, protrep.data.readers, protrep.data.tables, "
            "protrep.evaluation.retrieval, protrep.evaluation.confounding, protrep.evaluation.metrics, "
            "protrep.evaluation.handcrafted, protrep.evaluation.quality, protrep.evaluation.paired, "
            "protrep.evaluation.mean_ap, protrep.evaluation.cellprofiler; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:5]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _code_version(tree):
    out = subprocess.run([sys.executable, "-c", "from protrep.training.loop import training_code_version; print(training_code_version())"],
                         check=True, capture_output=True, text=True, cwd=tree, env={"PYTHONPATH": str(tree)})
    return out.stdout.strip()


@pytest.mark.slow
def test_run_identity_covers_the_models_and_training_code_only(tmp_path):
    copy = tmp_path / "tree"
    shutil.copytree(ROOT / "protrep", copy / "protrep", ignore=shutil.ignore_patterns("__pycache__"))
    before = _code_version(copy)
    for untouched in ("evaluation/metrics.py", "evaluation/confounding.py", "inference/embed.py", "plotting.py",
                      "training/runs.py"):
        with open(copy / "protrep" / untouched, "a") as f:
            f.write("\n# an edit that cannot change a trained model\n")
    assert _code_version(copy) == before
    for touched in ("models/deeploc.py", "training/batches.py"):
        path = copy / "protrep" / touched
        original = path.read_text()
        path.write_text(original + "\n# an edit to what the weights depend on\n")
        assert _code_version(copy) != before, touched
        path.write_text(original)
    assert _code_version(copy) == before
