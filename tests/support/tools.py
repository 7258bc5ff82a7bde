"""Finds — and on a fresh machine installs — the external tools the suite drives: Azurite and the az CLI.

Both go into a cache folder (CONTROL_PLANE_TEST_CACHE, default ~/.cache/control-plane-tests) so the README's one
test command works on a new machine; CI pre-installs them the same way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

AZURITE_VERSION = "3.35.0"
AZURE_CLI_VERSION = "2.91.0"


def cache_dir() -> Path:
    path = Path(os.environ.get("CONTROL_PLANE_TEST_CACHE", Path.home() / ".cache" / "control-plane-tests"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def azurite_blob() -> Path:
    configured = os.environ.get("CONTROL_PLANE_TEST_AZURITE")
    if configured:
        return Path(configured)
    folder = cache_dir() / "azurite"
    binary = folder / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        folder.mkdir(parents=True, exist_ok=True)
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install Azurite (apt-get install nodejs npm)")
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder),
                        f"azurite@{AZURITE_VERSION}"], check=True, stdout=sys.stderr)
    return binary


def az_cli() -> Path:
    """az lives in its own virtual environment: it pins SDK versions that differ from the test's own."""
    configured = os.environ.get("CONTROL_PLANE_TEST_AZ")
    if configured:
        return Path(configured)
    venv = cache_dir() / f"azure-cli-{AZURE_CLI_VERSION}"
    binary = venv / "bin" / "az"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"azure-cli=={AZURE_CLI_VERSION}"],
                       check=True, stdout=sys.stderr)
    return binary


if __name__ == "__main__":
    # `python -m tests.support.tools`: install both up front (CI does, so a slow download shows as such).
    print(f"azurite: {azurite_blob()}")
    print(f"az: {az_cli()}")
