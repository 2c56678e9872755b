import json

from protrep.cli import main


def test_simulate_then_inspect(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["simulate", "--out", str(out), "--proteins", "30", "--cells-per-protein", "3", "--seed", "2",
                 "--quiet", "--workers", "1", "--min-per-class", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_proteins"] == 30 and summary["n_cells"] <= 90
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    for word in ["protrep-cells", "gfp, rfp", "64, 64", "mitochondrion", "n_cells"]:
        assert word in text
    assert main(["inspect", "--json", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["n_cells"] == summary["n_cells"]


def test_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "Traceback" not in err
    (tmp_path / "taken").mkdir()
    assert main(["simulate", "--out", str(tmp_path / "taken"), "--proteins", "30", "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["simulate", "--out", str(tmp_path / "new"), "--proteins", "30", "--quiet"]) == 2
    assert "too small" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_inspect_real_formats(shared_data, capsys):
    assert main(["inspect", str(shared_data / "deeploc-hdf5/Schuldiner_test_set.hdf5")]) == 0
    assert "deeploc-hdf5" in capsys.readouterr().out
    assert main(["inspect", str(shared_data / "yeast-crops")]) == 0
    out = capsys.readouterr().out
    assert "crop-folder" in out and "877" in out
    assert main(["inspect", str(shared_data / "hpa-crops")]) == 0
    assert "62" in capsys.readouterr().out


def test_download_lists_the_registry(capsys):
    assert main(["download", "--list"]) == 0
    assert "huh2003" in capsys.readouterr().out
