"""Shared test set-up: every test runs with its own empty HARMONIZE_HOME and no network."""

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))


def _seed_global_generators(seed: int = 0) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.fixture(scope="module", autouse=True)
def seeded_module():
    """Module-scoped fixtures start from the same global random state whatever ran before."""
    _seed_global_generators()


@pytest.fixture(autouse=True)
def seeded(seeded_module):
    """Every test starts from the same global random state (random, numpy, torch), so no verdict
    depends on which tests ran before it (check: ``python -m pytest --random-order``). Tests
    still seed their own generators explicitly where the values matter."""
    _seed_global_generators()


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("harmonize_home")
    monkeypatch.setenv("HARMONIZE_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("xdg_config")))  # remembered settings
    monkeypatch.setenv("HARMONIZE_OFFLINE", "1")
    for variable in ("HARMONIZE_DATA", "HARMONIZE_DEVICE", "HARMONIZE_WEIGHTS_MIRROR"):
        monkeypatch.delenv(variable, raising=False)
    return home


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def idih_parity_checkpoint(tmp_path_factory):
    """(fixture, path): the parity fixture ``improved_dih256`` and its reference weights (non-trivial
    batch-norm statistics) saved as a checkpoint."""
    import torch

    from parity_utils import generate_weights, load_fixture

    fixture = load_fixture("improved_dih256")
    weights, _ = generate_weights(fixture["manifest"], fixture["seed"])
    path = tmp_path_factory.mktemp("weights") / "idih_parity.pth"
    torch.save(weights, path)
    return fixture, path


@pytest.fixture(scope="session")
def idih_checkpoint(tmp_path_factory):
    """A randomly initialised iDIH saved as a plain state dict (the reference checkpoint layout)."""
    import torch

    from harmonize_cli import zoo

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "my_idih.pth"
    torch.save(zoo.create_model("idih").state_dict(), path)
    return path


@pytest.fixture
def run_cli(capsys):
    """Run the console entry point as a user would: ``code, out, err = run_cli("apply", ...)``."""
    from clitools import run_main

    return lambda *argv: run_main(capsys, *argv)


@pytest.fixture
def http_server():
    """A file server on 127.0.0.1: ``handler.files[name] = bytes``; ``handler.hits`` lists requests."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        files: dict = {}
        truncate: set = set()
        hits: list = []

        def do_GET(self):  # noqa: N802 (http.server API)
            name = self.path.lstrip("/")
            self.hits.append(name)
            if name not in self.files:
                self.send_error(404)
                return
            body = self.files[name]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if name in self.truncate else body)

        def log_message(self, *args):
            pass

    Handler.files, Handler.truncate, Handler.hits = {}, set(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def mini_iharmony(tmp_path_factory):
    """A tiny dataset in iHarmony4 layout (4 subsets, 1 train and 3 test images each)."""
    from minidata import make_mini_iharmony

    return make_mini_iharmony(tmp_path_factory.mktemp("data") / "iHarmony4", n_train=1, n_test=3, seed=3)
