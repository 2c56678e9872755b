"""Downloads: registry contents and the download logic, against a local HTTP server only (no network)."""

import functools
import hashlib
import http.server
import logging
import re
import threading
import zipfile

import pytest

from protrep.data import download as dl
from protrep.errors import DataError


def sha(data):
    return hashlib.sha256(data).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on a free local port: ``(folder, name -> url)``."""
    folder = tmp_path / "server"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, lambda name: f"http://127.0.0.1:{httpd.server_address[1]}/{name}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def source(served):
    folder, url = served
    file = folder / "original.tab"
    file.write_bytes(b"YAL001C\tTFC3\n" * 100)
    return file, url(file.name)


def register(monkeypatch, name, url, sha256, filename="local.tab"):
    registry = dict(dl.DOWNLOADS)
    registry[name] = {"url": url, "sha256": sha256, "filename": filename, "description": "test", "licence": "none"}
    monkeypatch.setattr(dl, "DOWNLOADS", registry)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_registry_entries_are_complete():
    table = dl.list_downloads()
    assert set(table.index) == set(dl.DOWNLOADS)
    assert {"filename", "description", "licence", "url", "sha256", "pinned"} <= set(table.columns)
    for name, entry in dl.DOWNLOADS.items():
        assert re.match(r"^https?://", entry["url"]), name
        assert entry["filename"] and "/" not in entry["filename"], name
        assert entry["licence"] and entry["description"], name
        assert entry["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), name
    assert {"deeploc-schuldiner-test", "sgd-go-slim", "mips-complexes", "hpa-subcellular-location",
            "pci-toy-crops"} <= set(dl.DOWNLOADS)


def test_download_verified(monkeypatch, tmp_path, source):
    source, uri = source
    register(monkeypatch, "good", uri, sha(source.read_bytes()))
    path = dl.download("good", tmp_path / "out", progress=False)
    assert path == tmp_path / "out" / "local.tab"
    assert path.read_bytes() == source.read_bytes()
    assert leftovers(path.parent) == []


def test_download_checksum_mismatch_leaves_nothing(monkeypatch, tmp_path, source):
    source, uri = source
    register(monkeypatch, "bad", uri, "0" * 64)
    with pytest.raises(DataError) as e:
        dl.download("bad", tmp_path / "out", progress=False)
    message = str(e.value)
    for part in (uri, "local.tab", "0" * 64, sha(source.read_bytes())):
        assert part in message
    assert not (tmp_path / "out" / "local.tab").exists()
    assert leftovers(tmp_path / "out") == []


def test_download_unpinned_logs_checksum(monkeypatch, tmp_path, source, caplog):
    source, uri = source
    register(monkeypatch, "free", uri, None)
    with caplog.at_level(logging.INFO, logger="protrep.data.download"):
        dl.download("free", tmp_path, progress=False)
    assert sha(source.read_bytes()) in caplog.text


def test_download_skips_present_verified_file(monkeypatch, tmp_path, source):
    source, uri = source
    register(monkeypatch, "good", uri, sha(source.read_bytes()))
    path = dl.download("good", tmp_path / "out", progress=False)
    source.unlink()  # a second download would now fail
    assert dl.download("good", tmp_path / "out", progress=False) == path


def test_download_replaces_corrupt_present_file(monkeypatch, tmp_path, source):
    source, uri = source
    register(monkeypatch, "good", uri, sha(source.read_bytes()))
    (tmp_path / "local.tab").write_bytes(b"half a fi")
    path = dl.download("good", tmp_path, progress=False)
    assert path.read_bytes() == source.read_bytes()


def test_download_force_refetches_unpinned(monkeypatch, tmp_path, source):
    source, uri = source
    register(monkeypatch, "free", uri, None)
    path = dl.download("free", tmp_path, progress=False)
    source.write_bytes(b"new release\n")
    assert dl.download("free", tmp_path, progress=False).read_bytes() != b"new release\n"
    assert dl.download("free", tmp_path, force=True, progress=False).read_bytes() == b"new release\n"
    assert path.exists()


def test_download_missing_url_and_unknown_name(monkeypatch, tmp_path, served):
    missing = served[1]("nothing_here.tab")
    register(monkeypatch, "gone", missing, None)
    with pytest.raises(DataError) as e:
        dl.download("gone", tmp_path / "out", progress=False)
    assert missing in str(e.value) and "download failed" in str(e.value)
    with pytest.raises(ValueError, match="unknown download"):
        dl.download("no-such-dataset", tmp_path)


def test_download_extracts_zip(monkeypatch, tmp_path, served):
    archive = served[0] / "src.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("repo/yeast/AAC1/cell_1_gfp.tif", b"tiff bytes")
    register(monkeypatch, "zipped", served[1]("src.zip"), sha(archive.read_bytes()), filename="repo.zip")
    folder = dl.download("zipped", tmp_path / "out", extract=True, progress=False)
    assert folder == tmp_path / "out" / "repo"
    assert (folder / "repo" / "yeast" / "AAC1" / "cell_1_gfp.tif").read_bytes() == b"tiff bytes"


def test_extract_zip_refuses_paths_outside(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../escape.txt", b"x")
    with pytest.raises(DataError) as e:
        dl.extract_zip(archive, tmp_path / "dest")
    assert "evil.zip" in str(e.value) and "outside" in str(e.value)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "dest").exists()
    (tmp_path / "broken.zip").write_bytes(b"PK not really")
    with pytest.raises(DataError) as e:
        dl.extract_zip(tmp_path / "broken.zip", tmp_path / "dest")
    assert "broken.zip" in str(e.value)


def test_pinned_checksums_match_reference_copies(shared_data):
    copies = {
        "deeploc-schuldiner-test": shared_data / "deeploc-hdf5" / "Schuldiner_test_set.hdf5",
        "huh2003-yeastgfp": shared_data / "standards" / "yeast" / "huh2003_yeastgfp.csv",
        "mips-complexes": shared_data / "standards" / "yeast" / "mips_complexes.txt",
        "bt409-complexes": shared_data / "standards" / "yeast" / "bt409_complexes.txt",
    }
    for name, copy in copies.items():
        assert dl.DOWNLOADS[name]["sha256"] == dl.sha256sum(copy), name
