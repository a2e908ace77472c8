"""``kexue data fetch``: the full public data sets, from their canonical sources, into the user cache.

Every file is pinned in ``sources.json``: a GitHub repository at a commit and a path in it (fetched
from ``raw.githubusercontent.com``, or from a mirror with the same ``<repository>/<commit>/<path>``
layout named by ``KEXUE_DATA_MIRROR``), its size and its sha256. A download

- resumes a partial file (``<file>.part``) with an HTTP ``Range`` request, or a seek for ``file://``;
- is verified against its sha256 before it is kept (a mismatch deletes the partial file);
- lands in ``<cache>/data/.incoming/<data set>/`` and the whole data set is moved into
  ``<cache>/data/<data set>`` in one rename once every file is verified, so a reader never sees
  half a data set.

Three small FewCLUE label files are kexue's own (``"embedded": true``): the csldcp and iflytek label
tables derived from FewCLUE's label dictionaries, and tnews' label file, whose keys are clean here
while the upstream copy we could inspect (FewCLUE at 451fe18) spells three of them ``" label_zh"``.
They are copied from the package's samples, where they ship in full. Data sets that were derived by kexue's curators
(``corpus_zh``, ``corpus_zh_modern``) have no upstream file to fetch; ``kexue data list`` says so.

Example:
    >>> sources = data_sources()
    >>> sources["kgclue"].files[0].url()
    'https://raw.githubusercontent.com/CLUEbenchmark/KgCLUE/c129972c6b5baf982d3685bfa6d1b0a36399db35/datasets/dev.json'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import IO
from urllib.error import HTTPError, URLError
from urllib.parse import urlparse
from urllib.request import Request, url2pathname, urlopen

from tqdm.auto import tqdm

from kexue.data.readers import KexueDataError
from kexue.data.root import SAMPLES_DIR, LayeredDataRoot, cache_dir, data_origin

__all__ = ["DEFAULT_BASE_URL", "MIRROR_ENV_VAR", "ChecksumError", "DataSource", "DatasetStatus", "FetchError",
           "RemoteFile", "SourceUnreachableError", "data_sources", "dataset_names", "dataset_status", "download",
           "fetch", "sha256_file"]

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
MIRROR_ENV_VAR = "KEXUE_DATA_MIRROR"
SOURCES_FILE = Path(__file__).resolve().with_name("sources.json")
_CHUNK = 1 << 20


class FetchError(KexueDataError):
    """A data set could not be fetched; the message says which file and what to do."""


class ChecksumError(FetchError):
    """A downloaded file does not have the pinned sha256."""


class SourceUnreachableError(FetchError):
    """The source (the network, a host or a mirror folder) cannot be reached."""


@dataclass(frozen=True)
class RemoteFile:
    """One pinned file: ``path`` in the data layout, its size and sha256, and where it comes from."""

    path: str
    bytes: int
    sha256: str
    repository: str | None = None
    commit: str | None = None
    source: str | None = None
    embedded: bool = False  # derived by kexue; copied from the package's samples

    def url(self, base_url: str | None = None) -> str:
        """``<base>/<repository>/<commit>/<source>``; base: ``KEXUE_DATA_MIRROR``, else raw.githubusercontent.com."""
        if self.embedded:
            return (SAMPLES_DIR / self.path).as_uri()
        base = (base_url or os.environ.get(MIRROR_ENV_VAR) or DEFAULT_BASE_URL).rstrip("/")
        return f"{base}/{self.repository}/{self.commit}/{self.source}"


@dataclass(frozen=True)
class DataSource:
    """A data set as ``kexue data fetch`` knows it: its files and the parts that cannot be fetched."""

    name: str
    description: str
    licence: str
    files: tuple[RemoteFile, ...]
    not_fetchable: tuple[tuple[str, str], ...] = ()  # (path, why)


@lru_cache(maxsize=1)
def data_sources() -> dict[str, DataSource]:
    """The pinned sources, by data set name (the top-level folder of the data layout)."""
    raw = json.loads(SOURCES_FILE.read_text(encoding="utf-8"))
    return {
        name: DataSource(name, entry["description"], entry["licence"],
                         tuple(RemoteFile(**file) for file in entry["files"]),
                         tuple((item["path"], item["why"]) for item in entry.get("not_fetchable", ())))
        for name, entry in raw.items()
    }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _unreachable(url: str, reason: object) -> SourceUnreachableError:
    where = urlparse(url).netloc or urlparse(url).path
    return SourceUnreachableError(
        f"cannot reach {where} ({reason}) to download {url}. `kexue data fetch` needs the network, or a mirror "
        f"with the same <repository>/<commit>/<path> layout named by {MIRROR_ENV_VAR}=URL. Without the full "
        "sets, kexue runs on its embedded samples; `--data DIR` points it at a copy you already have.")


def _open(url: str, offset: int) -> tuple[IO[bytes], bool]:
    """Open ``url`` from byte ``offset``; returns the stream and whether it really starts there."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(url2pathname(parsed.path))
        if not path.is_file():
            raise _unreachable(url, "no such file in the mirror")
        stream = open(path, "rb")
        stream.seek(offset)
        return stream, True
    headers = {"User-Agent": "kexue-data-fetch", **({"Range": f"bytes={offset}-"} if offset else {})}
    try:
        response = urlopen(Request(url, headers=headers), timeout=60)
    except HTTPError as error:
        raise FetchError(f"{url}: HTTP {error.code} {error.reason}") from None
    except (URLError, OSError) as error:
        raise _unreachable(url, getattr(error, "reason", error)) from None
    return response, offset > 0 and response.status == 206  # a 200 ignores the Range: start again


def download(url: str, dest: Path, sha256: str, size: int | None = None, progress: bool = True) -> int:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming it, and verify its sha256.

    Args:
        url: ``https://``, ``http://`` or ``file://``.
        dest: the final file; it appears (by rename) only when the checksum matches.
        sha256: the expected hex digest.
        size: the expected size in bytes, for the progress bar and to drop an over-long partial file.
        progress: show a tqdm progress bar (on a terminal).

    Returns:
        The byte offset the download resumed from (0 for a fresh download).

    Raises:
        ChecksumError: the file's sha256 differs (the partial file is deleted, so a rerun starts afresh).
        SourceUnreachableError: no network, an unknown host, or a mirror folder without the file.
        FetchError: any other HTTP error.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is None or offset < size:  # a complete partial file needs no request (a server would answer 416)
        stream, resumed = _open(url, offset)
        if not resumed:
            offset = 0
        with stream, open(part, "ab" if resumed else "wb") as out, tqdm(
            total=size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
            disable=not progress, leave=False,
        ) as bar:
            for chunk in iter(lambda: stream.read(_CHUNK), b""):
                out.write(chunk)
                bar.update(len(chunk))
    got = sha256_file(part)
    if got != sha256:
        part.unlink()
        raise ChecksumError(f"{url}: sha256 is {got}, expected {sha256}; the download was deleted, "
                            "run `kexue data fetch` again (a mirror serving other bytes will fail again)")
    os.replace(part, dest)
    return offset


def _verified(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_file(path) == sha256


def fetch(name: str, cache: Path | None = None, base_url: str | None = None, progress: bool = True) -> Path:
    """Fetch one data set into ``<cache>/data/<name>`` and return that folder.

    Files already downloaded and verified in an interrupted earlier run are kept; partial files
    resume. The data set replaces an older copy in one rename once all its files are verified.

    Args:
        name: a data set (``kexue data list`` shows them).
        cache: the user cache (default: :func:`kexue.data.root.cache_dir`).
        base_url: a mirror (default: ``KEXUE_DATA_MIRROR``, else raw.githubusercontent.com).
        progress: show progress bars.

    Raises:
        ValueError: an unknown name. FetchError: a data set with nothing to fetch, or a failed download.
    """
    sources = data_sources()
    if name not in sources:
        raise ValueError(f"unknown data set {name!r}; choose from: all, {', '.join(sources)}")
    source = sources[name]
    if not source.files:
        why = "; ".join(why for _, why in source.not_fetchable)
        raise FetchError(f"{name} cannot be fetched: {why}. Point `--data DIR` at a copy of it")
    data_dir = (cache or cache_dir()) / "data"
    incoming = data_dir / ".incoming"
    for file in _progress(source.files, name, progress):
        dest = incoming / file.path
        if _verified(dest, file.sha256):
            continue
        if file.embedded:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(SAMPLES_DIR / file.path, dest)
            if not _verified(dest, file.sha256):
                raise ChecksumError(f"the embedded {file.path} does not have its pinned sha256; reinstall kexue")
        else:
            download(file.url(base_url), dest, file.sha256, file.bytes, progress)
    final, retired = data_dir / name, data_dir / ".old" / name
    if retired.exists():
        shutil.rmtree(retired)
    if final.exists():
        retired.parent.mkdir(parents=True, exist_ok=True)
        os.replace(final, retired)
    os.replace(incoming / name, final)
    shutil.rmtree(retired, ignore_errors=True)
    return final


def _progress(files: tuple[RemoteFile, ...], name: str, progress: bool) -> Iterator[RemoteFile]:
    yield from tqdm(files, desc=f"{name} ({len(files)} files)", unit="file", disable=not progress or len(files) < 2)


@dataclass(frozen=True)
class DatasetStatus:
    """One line of ``kexue data list``: where a data set was found, its rows and its checksums."""

    name: str
    origin: str | None  # explicit, cache, shared, samples; None = not found
    path: Path | None
    files: int  # catalogue files present
    catalogue_files: int
    rows: int  # rows of the catalogue files present, counted as the catalogue counts them
    checksums: str  # "verified", "N of M differ", "sample (not checked)", "none pinned"


def dataset_status(root: Path | LayeredDataRoot, name: str) -> DatasetStatus:
    """Find data set ``name`` under ``root``, count its rows and check its files' pinned sha256s."""
    from kexue.data.catalogue import DATASETS

    found = data_origin(root, name)
    entries = [entry for entry in DATASETS.values() if entry.path.split("/")[0] == name]
    if found is None:
        return DatasetStatus(name, None, None, 0, len(entries), 0, "-")
    origin, folder = found
    data_root = folder.parent
    present = [entry for entry in entries if (data_root / entry.path).exists()]
    rows = sum(sum(1 for _ in entry.read(data_root)) for entry in present)
    pinned = data_sources()[name].files if name in data_sources() else ()
    if origin == "samples":
        checksums = "sample (not checked)"
    elif not pinned:
        checksums = "none pinned"
    else:
        checked = [file for file in pinned if (data_root / file.path).is_file()]
        differ = sum(1 for file in checked if sha256_file(data_root / file.path) != file.sha256)
        checksums = f"{differ} of {len(checked)} differ" if differ else f"{len(checked)} verified"
    return DatasetStatus(name, origin, folder, len(present), len(entries), rows, checksums)


def dataset_names() -> list[str]:
    """Every data set kexue knows: those with pinned sources and those in the catalogue."""
    from kexue.data.catalogue import DATASETS

    return list(dict.fromkeys([*data_sources(), *(entry.path.split("/")[0] for entry in DATASETS.values())]))
