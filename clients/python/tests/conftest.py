"""A real drover node for the tests: the binary built by cargo (or DROVER_BIN), in a fresh data
dir, found by the client through that data dir as the CLI would find it."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

import drover

ROOT = Path(__file__).resolve().parents[3]


def drover_binary() -> str:
    binary = os.environ.get("DROVER_BIN") or str(ROOT / "target" / "debug" / "drover")
    if not os.access(binary, os.X_OK):
        pytest.fail(f"no drover binary at {binary}: run `cargo build` or set DROVER_BIN")
    return binary


class Node:
    def __init__(self, data_dir: Path, *serve_args: str) -> None:
        self.data_dir = data_dir
        self.serve_args = serve_args
        self.process = None
        self.start()

    def start(self) -> None:
        serve = self.data_dir / "serve.json"
        if serve.exists():
            serve.unlink()
        self.log = open(self.data_dir.parent / "node.log", "ab")
        self.process = subprocess.Popen(
            [drover_binary(), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir),
             *self.serve_args],
            stdout=self.log,
            stderr=self.log,
        )
        for _ in range(200):
            if serve.exists():
                try:
                    json.loads(serve.read_text())["url"]
                    return
                except (ValueError, KeyError):
                    pass
            time.sleep(0.05)
        raise RuntimeError("the node did not start: " + (self.data_dir.parent / "node.log").read_text())

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.log.close()


@pytest.fixture
def node(tmp_path, monkeypatch):
    for name in ("DROVER_SERVER", "DROVER_TOKEN", "DROVER_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("DROVER_DATA_DIR", str(data_dir))
    running = Node(data_dir)
    yield running
    running.stop()


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path):
    """A private CA and a node certificate it signed, for 127.0.0.1 and localhost (openssl)."""
    d = tmp_path / "pki"
    d.mkdir()
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
            "-days", "2", "-subj", "/CN=drover test CA")
    openssl("req", *ec, "-keyout", str(d / "node.key"), "-out", str(d / "node.csr"),
            "-subj", "/CN=localhost")
    (d / "ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", str(d / "node.csr"), "-CA", str(d / "ca.pem"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(d / "ext"), "-out", str(d / "node.pem"))
    return d


@pytest.fixture
def tls_node(tmp_path, monkeypatch, pki):
    for name in ("DROVER_SERVER", "DROVER_TOKEN", "DROVER_TOKEN_FILE", "DROVER_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("DROVER_DATA_DIR", str(data_dir))
    running = Node(data_dir, "--tls-cert", str(pki / "node.pem"), "--tls-key", str(pki / "node.key"))
    yield running
    running.stop()


@pytest.fixture
def client(node):
    return drover.connect()
