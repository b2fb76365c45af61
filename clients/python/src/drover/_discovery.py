"""Finding the node and its token, as the ``drover`` command line does.

The node: ``server`` (or ``DROVER_SERVER``), else the address the node serving from the data
dir recorded in ``serve.json``. The data dir: ``data_dir``, ``DROVER_DATA_DIR``, else the
platform's (``$XDG_DATA_HOME/drover``, ``~/.local/share/drover``, on macOS ``~/Library/Application
Support/drover``).

The token: ``token``, ``DROVER_TOKEN``, the file ``DROVER_TOKEN_FILE`` names, ``token_file`` or
``token`` in the data dir's ``drover.toml``, else — only when the node is the one serving from
the data dir — that node's own token in ``DATA_DIR/token``. The local token is never sent
anywhere else.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ._errors import DroverError, NodeNotFound


@dataclass(frozen=True)
class Found:
    """Where the node is and what to show it."""

    url: str
    token: Optional[str]
    ca_file: Optional[str] = None


def default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "drover"
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "drover"
    return home / ".local" / "share" / "drover"


def _settings(data_dir: Path) -> Dict[str, Any]:
    path = data_dir / "drover.toml"
    if not path.exists():
        return {}
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons read no settings file
        return {}
    with path.open("rb") as f:
        return tomllib.load(f)


def _settings_token(data_dir: Path) -> Optional[str]:
    settings = _settings(data_dir)
    if settings.get("token_file"):
        return _read_token(Path(settings["token_file"]))
    token = settings.get("token")
    return token.strip() if isinstance(token, str) and token.strip() else None


def _read_token(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except OSError as e:
        raise DroverError(f"reading the token file {path}: {e}") from e
    if not token:
        raise DroverError(f"the token file {path} is empty")
    return token


def find(
    server: Optional[str] = None,
    data_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    token: Optional[str] = None,
    ca_file: Optional[Union[str, "os.PathLike[str]"]] = None,
) -> Found:
    """The node to talk to, found as the CLI finds it. ``ca_file`` (else ``DROVER_CA_FILE``, else
    ``ca_file`` in ``drover.toml``) holds the certificates trusted for an ``https://`` node
    instead of the system's."""
    root = Path(data_dir or os.environ.get("DROVER_DATA_DIR") or default_data_dir())
    local_url = None
    try:
        local_url = json.loads((root / "serve.json").read_text())["url"].rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    url = (server or os.environ.get("DROVER_SERVER") or "").rstrip("/") or local_url
    if not url:
        raise NodeNotFound(
            f"no drover node found: nothing serves from {root} "
            "(start one with `drover serve`, or pass server=URL / set DROVER_SERVER)"
        )
    if token is None and os.environ.get("DROVER_TOKEN", "").strip():
        token = os.environ["DROVER_TOKEN"].strip()
    if token is None and os.environ.get("DROVER_TOKEN_FILE"):
        token = _read_token(Path(os.environ["DROVER_TOKEN_FILE"]))
    if token is None:
        token = _settings_token(root)
    if token is None and url == local_url:
        try:
            token = (root / "token").read_text().strip() or None
        except OSError:
            token = None
    ca = ca_file or os.environ.get("DROVER_CA_FILE") or _settings(root).get("ca_file")
    return Found(url=url, token=token, ca_file=str(ca) if ca else None)
