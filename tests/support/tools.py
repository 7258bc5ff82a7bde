"""Finds — and on a fresh machine installs — the external tools the suite drives: Azurite, the az CLI and Ansible.

They go into a cache folder (CONTROL_PLANE_TEST_CACHE, default ~/.cache/control-plane-tests) so the README's one
test command works on a new machine; CI pre-installs them the same way.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

AZURITE_VERSION = "3.35.0"
AZURE_CLI_VERSION = "2.91.0"
# ansible 14.5.0 ships azure.azcollection 3.21.0 and needs Python >= 3.12. The newest for Python 3.11, 12.3.0, ships
# 3.12.0, which cannot reach a custom cloud at all: it calls azure.cli.core.cloud.get_cloud_from_metadata_endpoint,
# which azure-cli-core no longer has. So Ansible gets a Python of its own (see ansible_python).
ANSIBLE_VERSION = "14.5.0"


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


def ansible_python() -> str:
    """A Python >= 3.12 for Ansible's virtual environment: CONTROL_PLANE_TEST_ANSIBLE_PYTHON, python3.12 or python3.13
    on PATH, or one of pyenv's."""
    configured = os.environ.get("CONTROL_PLANE_TEST_ANSIBLE_PYTHON")
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [configured] if configured else [
        *(shutil.which(name) for name in ("python3.12", "python3.13")),
        *(str(p) for p in sorted(pyenv.glob("3.1[2-3].*/bin/python"))),
    ]
    for candidate in filter(None, candidates):
        check = subprocess.run([candidate, "-c", "import sys; assert sys.version_info >= (3, 12)"],
                               capture_output=True, check=False)
        if check.returncode == 0:  # a pyenv shim for a version that is not selected exits non-zero
            return candidate
    raise RuntimeError(f"ansible {ANSIBLE_VERSION} needs Python >= 3.12: install one or set "
                       "CONTROL_PLANE_TEST_ANSIBLE_PYTHON")


def ansible_playbook() -> Path:
    """ansible-playbook in its own virtual environment, with the Python SDKs azure.azcollection's modules import
    (the collection's own requirements file: every module imports all of them)."""
    configured = os.environ.get("CONTROL_PLANE_TEST_ANSIBLE")
    if configured:
        return Path(configured)
    venv = cache_dir() / f"ansible-{ANSIBLE_VERSION}"
    binary = venv / "bin" / "ansible-playbook"
    done = venv / ".requirements-installed"  # a half-finished install is redone, not used
    # Test processes (xdist workers, CI's pre-install) may ask at once: one installs, the others wait for it.
    with open(cache_dir() / f"ansible-{ANSIBLE_VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            pip = str(venv / "bin" / "pip")
            subprocess.run([ansible_python(), "-m", "venv", "--clear", str(venv)], check=True)
            subprocess.run([pip, "install", "-q", f"ansible=={ANSIBLE_VERSION}"], check=True, stdout=sys.stderr)
            requirements = next(venv.glob("lib/python*/site-packages/ansible_collections/azure/azcollection/"
                                          "requirements.txt"))
            subprocess.run([pip, "install", "-q", "-r", str(requirements)], check=True, stdout=sys.stderr)
            done.touch()
    return binary


def require_tools(*tools: str) -> None:
    """Skip the calling test when a Debian tool it drives is missing; in CI (which installs them) fail instead."""
    import pytest

    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        message = f"missing {', '.join(missing)}: apt-get install -y --no-install-recommends {' '.join(missing)}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


if __name__ == "__main__":
    # `python -m tests.support.tools`: install them all up front (CI does, so a slow download shows as such).
    print(f"azurite: {azurite_blob()}")
    print(f"az: {az_cli()}")
    print(f"ansible-playbook: {ansible_playbook()}")
