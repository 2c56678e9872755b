"""JupyterLab as a reader uses it: ``make lab``, a chapter opened, its parameters changed and run.

The test starts JupyterLab headless on a free local port with a token (through ``make
lab`` when this interpreter is the project's ``.venv``, else ``python -m jupyterlab`` in
``book/``), reads chapter 1 through the REST API (``/api/contents``), starts a session on
the ``python3`` kernel (``/api/sessions``), runs the chapter's parameters cell with
``profile`` changed to ``"quick"`` and one call into the package over the kernel's
websocket, and shuts the server down (``/api/shutdown``). Configuration and runtime
files go to a temporary folder, never the user's ``~/.jupyter``.
"""

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "01_data.ipynb"
START_TIMEOUT = 120  # seconds for the server to answer (its first start builds nothing, but imports a lot)

pytest.importorskip("jupyterlab")
pytest.importorskip("tornado")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(port, token):
    """``make lab`` with server options when running in the project's venv, else jupyterlab from this interpreter."""
    options = [f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
               "--ServerApp.open_browser=False", f"--IdentityProvider.token={token}",
               *(["--allow-root"] if os.geteuid() == 0 else [])]  # CI runs as root
    venv = ROOT / ".venv"
    if shutil.which("make") and Path(sys.prefix).resolve() == venv.resolve() and (venv / ".protrep-installed").exists():
        return ["make", "-s", "lab", "LAB_ARGS=" + " ".join(options)], ROOT
    return [sys.executable, "-m", "jupyterlab", "--ServerApp.root_dir=.", *options], ROOT / "book"


class Lab:
    """A running JupyterLab server: ``get``, ``post`` and ``delete`` on its REST API."""

    def __init__(self, port, token):
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
        return json.loads(text) if text else None

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None):
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path):
        return self.request("DELETE", path)


def _wait(lab, proc, log):
    start = time.monotonic()
    while time.monotonic() - start < START_TIMEOUT:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode} before answering:\n{log.read_text()[-3000:]}")
        try:
            return lab.get("/api/status")
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    home = tmp_path_factory.mktemp("jupyter")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces")}
    # the kernelspec `python3` of the project's venv lives in sys.prefix/share/jupyter, which
    # Jupyter searches whatever JUPYTER_DATA_DIR says
    command, cwd = _command(port, token)
    log = home / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Lab(port, token)
    try:
        _wait(server, proc, log)
        yield server
    finally:
        try:
            server.post("/api/shutdown")
            proc.wait(timeout=30)
        except Exception:  # noqa: BLE001 (the server may already be gone; kill whatever is left)
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _message(code, session):
    return {"header": {"msg_id": uuid.uuid4().hex, "username": "test", "session": session,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}


async def _execute(lab, kernel_id, code, timeout=120):
    """Run ``code`` on the kernel over its websocket: (status, stdout, error)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    session = uuid.uuid4().hex
    url = lab.base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels?session_id={session}"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {lab.token}"}))
    msg = _message(code, session)
    await ws.write_message(json.dumps(msg))
    stdout, status, error, idle = [], None, None, False
    deadline = time.monotonic() + timeout
    while status is None or not idle:
        raw = await asyncio.wait_for(ws.read_message(), max(deadline - time.monotonic(), 0.1))
        if raw is None:
            break
        reply = json.loads(raw)
        if reply.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
            continue
        kind, content = reply["header"]["msg_type"], reply["content"]
        if kind == "stream" and content.get("name") == "stdout":
            stdout.append(content["text"])
        elif kind == "error":
            error = f"{content['ename']}: {content['evalue']}"
        elif kind == "execute_reply":
            status = content["status"]
        elif kind == "status" and content["execution_state"] == "idle":
            idle = True
    ws.close()
    return status, "".join(stdout), error


def test_a_chapter_opens_and_its_changed_parameters_run_on_the_project_kernel(lab):
    assert "python3" in lab.get("/api/kernelspecs")["kernelspecs"]
    listing = {item["name"] for item in lab.get("/api/contents")["content"]}
    assert CHAPTER in listing, f"JupyterLab is not serving book/: it lists {sorted(listing)}"
    notebook = lab.get(f"/api/contents/{CHAPTER}?content=1")
    assert notebook["type"] == "notebook"
    cells = notebook["content"]["cells"]
    parameters = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(parameters) == 1, "a chapter has one cell tagged `parameters`"
    source = parameters[0]["source"]
    assert 'profile = "default"' in source
    source = source.replace('profile = "default"', 'profile = "quick"')  # what a reader does first

    session = lab.post("/api/sessions", {"path": CHAPTER, "type": "notebook", "name": CHAPTER,
                                         "kernel": {"name": "python3"}})
    try:
        code = (source + "\nimport sys\nfrom protrep.profiles import book_profile\n"
                "p = book_profile(profile, seed=seed)\n"
                "print(p.name, p.screen.n_proteins, sys.prefix)\n")
        status, stdout, error = asyncio.run(_execute(lab, session["kernel"]["id"], code))
        assert status == "ok", error
        name, n_proteins, prefix = stdout.split()
        from protrep.profiles import PROFILES

        assert (name, int(n_proteins)) == ("quick", PROFILES["quick"].screen.n_proteins)
        assert Path(prefix).resolve() == Path(sys.prefix).resolve(), "the kernel runs another Python than protrep's"
    finally:
        lab.delete(f"/api/sessions/{session['id']}")
    assert lab.get("/api/sessions") == []
