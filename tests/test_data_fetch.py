"""``kexue data fetch`` against local mirrors (file:// and a Range-aware HTTP server); no network."""

import hashlib
import json
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kexue.cli import main
from kexue.data import read_kgclue
from kexue.data.catalogue import DATASETS
from kexue.data.fetch import (
    ChecksumError,
    DataSource,
    RemoteFile,
    SourceUnreachableError,
    data_sources,
    download,
    fetch,
    sha256_file,
)
from kexue.data.root import SAMPLES_DIR, resolve_data_root

FIXTURES = Path(__file__).parent / "fixtures" / "data"
REPO, COMMIT = "someone/kgclue-mirror", "0" * 40


def _pinned(path: str, content: bytes, **extra) -> RemoteFile:
    return RemoteFile(path, len(content), hashlib.sha256(content).hexdigest(), **extra)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A file:// mirror of a two-file ``kgclue`` built from the test fixtures, and an empty cache."""
    files = {name: (FIXTURES / "kgclue" / name).read_bytes() for name in ("train.json", "dev.json")}
    base = tmp_path / "mirror"
    for name, content in files.items():
        (base / REPO / COMMIT / "datasets").mkdir(parents=True, exist_ok=True)
        (base / REPO / COMMIT / "datasets" / name).write_bytes(content)
    source = DataSource("kgclue", "test", "none", tuple(
        _pinned(f"kgclue/{name}", content, repository=REPO, commit=COMMIT, source=f"datasets/{name}")
        for name, content in files.items()))
    monkeypatch.setattr("kexue.data.fetch.data_sources", lambda: {"kgclue": source})
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.delenv("KEXUE_DATA_MIRROR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("kexue.data.root._shared_candidates", lambda: [Path("../shared/data")])  # none here
    return base


def test_fetch_verifies_and_moves_the_data_set_into_the_cache(mirror, tmp_path):
    folder = fetch("kgclue", base_url=mirror.as_uri(), progress=False)
    assert folder == tmp_path / "cache" / "data" / "kgclue"
    assert sorted(p.name for p in folder.iterdir()) == ["dev.json", "train.json"]
    assert not (tmp_path / "cache" / "data" / ".incoming" / "kgclue").exists()
    root = resolve_data_root()
    assert root / "kgclue/train.json" == folder / "train.json"  # the cache now serves KgCLUE first
    assert len(list(read_kgclue("train"))) == len(list(read_kgclue("train", FIXTURES)))


def test_checksum_mismatch_keeps_nothing(mirror, tmp_path):
    (mirror / REPO / COMMIT / "datasets" / "train.json").write_bytes(b'{"tampered": true}\n')
    with pytest.raises(ChecksumError, match=r"train\.json: sha256 is [0-9a-f]{64}, expected"):
        fetch("kgclue", base_url=mirror.as_uri(), progress=False)
    assert not (tmp_path / "cache" / "data" / "kgclue").exists()
    assert not list((tmp_path / "cache").rglob("*.part"))


def test_interrupted_download_resumes_from_the_partial_file(tmp_path):
    content = (FIXTURES / "kgclue" / "train.json").read_bytes()
    source = tmp_path / "train.json"
    source.write_bytes(content)
    dest = tmp_path / "out" / "train.json"
    dest.parent.mkdir()
    half = len(content) // 2
    dest.with_name("train.json.part").write_bytes(content[:half])
    resumed_from = download(source.as_uri(), dest, hashlib.sha256(content).hexdigest(), len(content), progress=False)
    assert resumed_from == half
    assert dest.read_bytes() == content and not dest.with_name("train.json.part").exists()


def test_a_complete_partial_file_is_verified_without_a_request(tmp_path):
    content = b"all of it\n"
    dest = tmp_path / "f.txt"
    dest.with_name("f.txt.part").write_bytes(content)
    unreachable = "http://127.0.0.1:9/f.txt"
    assert download(unreachable, dest, hashlib.sha256(content).hexdigest(), len(content), progress=False) == len(content)
    assert dest.read_bytes() == content


def test_an_interrupted_fetch_keeps_the_verified_files(mirror, tmp_path):
    dev = mirror / REPO / COMMIT / "datasets" / "dev.json"
    kept = dev.read_bytes()
    dev.unlink()  # the mirror drops out after train.json
    with pytest.raises(SourceUnreachableError):
        fetch("kgclue", base_url=mirror.as_uri(), progress=False)
    incoming = tmp_path / "cache" / "data" / ".incoming" / "kgclue"
    train_written = (incoming / "train.json").stat().st_mtime_ns
    assert not (tmp_path / "cache" / "data" / "kgclue").exists()  # no half data set is visible
    dev.write_bytes(kept)
    fetch("kgclue", base_url=mirror.as_uri(), progress=False)
    assert (tmp_path / "cache" / "data" / "kgclue" / "train.json").stat().st_mtime_ns == train_written


def test_unreachable_sources_say_what_to_do(mirror, tmp_path):
    with pytest.raises(SourceUnreachableError, match=r"cannot reach .*no such file in the mirror.*KEXUE_DATA_MIRROR"):
        fetch("kgclue", base_url=(tmp_path / "no-mirror").as_uri(), progress=False)
    with pytest.raises(SourceUnreachableError, match=r"cannot reach 127\.0\.0\.1:9 .*embedded samples"):
        fetch("kgclue", base_url="http://127.0.0.1:9", progress=False)  # discard port: nothing listens


class _RangeHandler(SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support (``SimpleHTTPRequestHandler`` has none)."""

    def send_head(self):
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        path = Path(self.translate_path(self.path))
        if not match or not path.is_file():
            return super().send_head()
        content = path.read_bytes()
        start = int(match.group(1))
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
        self.send_header("Content-Length", str(len(content) - start))
        self.end_headers()
        stream = open(path, "rb")
        stream.seek(start)
        return stream

    def log_message(self, *args):
        pass


def test_http_download_resumes_with_a_range_request(mirror, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(mirror)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        content = (mirror / REPO / COMMIT / "datasets" / "train.json").read_bytes()
        dest = tmp_path / "http" / "train.json"
        dest.parent.mkdir()
        dest.with_name("train.json.part").write_bytes(content[:100])
        url = f"http://127.0.0.1:{server.server_port}/{REPO}/{COMMIT}/datasets/train.json"
        assert download(url, dest, hashlib.sha256(content).hexdigest(), len(content), progress=False) == 100
        assert dest.read_bytes() == content
    finally:
        server.shutdown()
        server.server_close()


def test_cli_fetch_and_list(mirror, capsys):
    assert main(["data", "fetch", "kgclue", "--mirror", mirror.as_uri(), "--no-progress"]) == 0
    assert "kgclue: " in capsys.readouterr().out
    assert main(["data", "list", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["kgclue"]["origin"] == "cache" and listed["kgclue"]["checksums"] == "2 verified"
    assert main(["data", "fetch", "no-such-set"]) == 2
    assert "unknown data set 'no-such-set'" in capsys.readouterr().err


def test_cli_fetch_without_network_is_one_clear_line(mirror, capsys):
    assert main(["data", "fetch", "kgclue", "--mirror", "http://127.0.0.1:9", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("kexue data: error: cannot reach 127.0.0.1:9") and "Traceback" not in err


# ----------------------------------------------------------------- the pinned sources themselves
def test_every_pinned_file_names_a_commit_and_a_checksum():
    for source in data_sources().values():
        for file in source.files:
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256) and file.bytes > 0, file.path
            assert file.path.split("/")[0] == source.name
            if not file.embedded:
                assert re.fullmatch(r"[0-9a-f]{40}", file.commit) and file.repository and file.source, file.path


def test_embedded_files_match_their_pins():
    embedded = [file for source in data_sources().values() for file in source.files if file.embedded]
    assert embedded
    for file in embedded:
        assert sha256_file(SAMPLES_DIR / file.path) == file.sha256


def test_every_catalogue_file_is_pinned_or_said_to_be_unfetchable():
    sources = data_sources()
    pinned = {file.path for source in sources.values() for file in source.files}
    unfetchable = [path for source in sources.values() for path, _ in source.not_fetchable]
    for entry in DATASETS.values():
        covered = entry.path in pinned or any(entry.path == p or entry.path.startswith(p + "/") for p in unfetchable)
        assert covered, entry.path
