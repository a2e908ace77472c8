"""Where the datasets live: resolving the data root.

This is the one place that decides it. Order of precedence (first match wins):

1. an explicit directory (the ``--data DIR`` command-line argument);
2. the ``KEXUE_DATA`` environment variable;
3. the user cache, ``$KEXUE_CACHE/data`` (default ``~/.cache/kexue/data``), where
   ``kexue data fetch`` puts the full data sets;
4. ``../shared/data`` relative to the working directory or to a parent of the installed package,
   when it exists (the layout of a checkout beside a shared data folder);
5. the compact samples embedded in the package (``kexue/data/samples``), enough for every
   experiment's ``--quick`` mode.

An explicit directory (1 or 2) is used alone: a data set missing there is missing, and a directory
that does not exist is an error, since silently reading other data than the user named would be
worse than stopping. Without one, 3-5 are searched *per data set* (the top-level folder: ``kgclue``,
``fewclue``, ``clue``, ...): ``kexue data fetch kgclue`` makes the cache serve KgCLUE while the other
sets still come from ``../shared/data`` or the samples. ``kexue info`` and ``kexue data list`` say
which folder serves each data set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kexue.data.readers import DataNotFoundError

__all__ = [
    "CACHE_ENV_VAR",
    "DATA_ENV_VAR",
    "DEFAULT_RELATIVE_ROOT",
    "SAMPLES_DIR",
    "DataLayer",
    "DataNotFoundError",
    "LayeredDataRoot",
    "cache_dir",
    "data_layers",
    "data_origin",
    "data_path",
    "resolve_data_root",
]

DATA_ENV_VAR = "KEXUE_DATA"
CACHE_ENV_VAR = "KEXUE_CACHE"
DEFAULT_RELATIVE_ROOT = Path("..") / "shared" / "data"
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
_HOW_TO = f"point kexue at your data with `--data DIR` or `{DATA_ENV_VAR}=DIR`"


def cache_dir() -> Path:
    """The user cache: ``$KEXUE_CACHE``, else ``~/.cache/kexue``. Fetched data sets go in its ``data/``."""
    return Path(os.environ.get(CACHE_ENV_VAR) or Path("~") / ".cache" / "kexue").expanduser()


@dataclass(frozen=True)
class DataLayer:
    """One folder searched for data sets: ``origin`` says why it is searched (``cache``, ``shared``, ...)."""

    origin: str
    path: Path

    def has(self, dataset: str) -> bool:
        return (self.path / dataset).is_dir()


class LayeredDataRoot:
    """The default data root: several folders searched in order, one data set at a time.

    ``root / "kgclue/train.json"`` is the file in the first layer that has the ``kgclue`` folder, so
    every reader that joins paths onto a root works unchanged. When no layer has the data set, the
    path points into ``missing`` (the cache's data folder, where ``kexue data fetch`` puts it), and
    the reader's "does not exist" error names that.
    """

    def __init__(self, layers: list[DataLayer], missing: Path) -> None:
        if not layers:
            raise ValueError("a layered data root needs at least one layer")
        self.layers = tuple(layers)
        self.missing = missing

    def layer_for(self, dataset: str) -> DataLayer | None:
        """The layer that serves ``dataset`` (a top-level folder such as ``fewclue``), or None."""
        return next((layer for layer in self.layers if layer.has(dataset)), None)

    def __truediv__(self, relative: str | Path) -> Path:
        parts = Path(relative).parts
        if not parts:
            raise ValueError("join a data-set path onto the data root, not an empty one")
        layer = self.layer_for(parts[0])
        return (layer.path if layer else self.missing) / relative

    def joinpath(self, *relative: str | Path) -> Path:
        return self / Path(*relative)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayeredDataRoot) and (other.layers, other.missing) == (self.layers, self.missing)

    def __hash__(self) -> int:
        return hash((self.layers, self.missing))

    def __str__(self) -> str:
        return " > ".join(f"{layer.path} ({layer.origin})" for layer in self.layers)

    def __repr__(self) -> str:
        return f"LayeredDataRoot({list(self.layers)!r})"


def _shared_candidates() -> list[Path]:
    package_dir = Path(__file__).resolve().parent
    return [DEFAULT_RELATIVE_ROOT] + [parent / DEFAULT_RELATIVE_ROOT for parent in package_dir.parents]


def data_layers() -> list[DataLayer]:
    """The default layers that exist, in order: user cache, ``../shared/data``, embedded samples."""
    layers = [DataLayer("cache", cache_dir() / "data")]
    shared = next((candidate for candidate in _shared_candidates() if candidate.is_dir()), None)
    if shared is not None:
        layers.append(DataLayer("shared", shared if not shared.is_absolute() else shared.resolve()))
    layers.append(DataLayer("samples", SAMPLES_DIR))
    return [layer for layer in layers if layer.path.is_dir()]


def resolve_data_root(explicit: str | Path | LayeredDataRoot | None = None) -> Path | LayeredDataRoot:
    """Return the data root (see the module docstring for the order).

    Args:
        explicit: a directory given by the user (``--data``); overrides everything else. A root
            resolved before is returned unchanged.

    Returns:
        The directory, as the user spelled it, for an explicit or environment path; otherwise a
        :class:`LayeredDataRoot` over the cache, ``../shared/data`` and the samples.

    Raises:
        DataNotFoundError: the named directory does not exist, or no default was found. The
            message says how to point kexue at the data.
    """
    if isinstance(explicit, LayeredDataRoot):
        return explicit
    for origin, value in (("--data", explicit), (DATA_ENV_VAR, os.environ.get(DATA_ENV_VAR) or None)):
        if value is not None:
            root = Path(value).expanduser()
            if not root.is_dir():
                raise DataNotFoundError(f"data directory {root} (from {origin}) does not exist; {_HOW_TO}", root)
            return root
    layers = data_layers()
    if not layers:
        raise DataNotFoundError(f"no data directory found (no user cache, no {DEFAULT_RELATIVE_ROOT}, no embedded "
                                f"samples in {SAMPLES_DIR}); {_HOW_TO}, or run `kexue data fetch all`")
    return LayeredDataRoot(layers, missing=cache_dir() / "data")


def data_origin(root: Path | LayeredDataRoot, dataset: str) -> tuple[str, Path] | None:
    """Which folder serves ``dataset`` under ``root``: ``(origin, folder)``, or None when it is absent.

    ``origin`` is ``cache``, ``shared`` or ``samples`` for a layered root, else ``explicit``.
    """
    if isinstance(root, LayeredDataRoot):
        layer = root.layer_for(dataset)
        return None if layer is None else (layer.origin, layer.path / dataset)
    return ("explicit", root / dataset) if (root / dataset).is_dir() else None


def data_path(relative: str | Path, root: str | Path | LayeredDataRoot | None = None) -> Path:
    """Return ``root / relative``, resolving the root with :func:`resolve_data_root` when None."""
    return resolve_data_root(root) / relative
