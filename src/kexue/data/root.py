"""Where the datasets live: resolving the data root.

Order of precedence (first match wins):

1. an explicit directory (the ``--data DIR`` command-line argument);
2. the ``KEXUE_DATA`` environment variable;
3. ``../shared/data`` relative to the current working directory, if it exists;
4. ``../shared/data`` relative to each parent directory of the installed package (so a checkout
   at ``work/main`` finds ``work/shared/data`` from any working directory).

An explicit directory or ``KEXUE_DATA`` that does not exist is an error, not a reason to fall back:
silently reading other data than the user named would be worse than stopping.
"""

from __future__ import annotations

import os
from pathlib import Path

from kexue.data.readers import DataNotFoundError

__all__ = ["DATA_ENV_VAR", "DEFAULT_RELATIVE_ROOT", "DataNotFoundError", "resolve_data_root", "data_path"]

DATA_ENV_VAR = "KEXUE_DATA"
DEFAULT_RELATIVE_ROOT = Path("..") / "shared" / "data"
_HOW_TO = f"point kexue at your data with `--data DIR` or `{DATA_ENV_VAR}=DIR`"


def _default_candidates() -> list[Path]:
    candidates = [DEFAULT_RELATIVE_ROOT]
    package_dir = Path(__file__).resolve().parent
    candidates += [parent / DEFAULT_RELATIVE_ROOT for parent in package_dir.parents]
    return candidates


def resolve_data_root(explicit: str | Path | None = None) -> Path:
    """Return the data root directory.

    Args:
        explicit: a directory given by the user (``--data``); overrides everything else.

    Returns:
        The directory, as the user spelled it for an explicit or environment path; the default
        is returned relative to the working directory when found there, else absolute.

    Raises:
        DataNotFoundError: the named directory does not exist, or no default was found. The
            message says how to point kexue at the data.
    """
    for origin, value in (("--data", explicit), (DATA_ENV_VAR, os.environ.get(DATA_ENV_VAR) or None)):
        if value is not None:
            root = Path(value).expanduser()
            if not root.is_dir():
                raise DataNotFoundError(f"data directory {root} (from {origin}) does not exist; {_HOW_TO}", root)
            return root
    candidates = _default_candidates()
    for candidate in candidates:
        if candidate.is_dir():
            return candidate if not candidate.is_absolute() else candidate.resolve()
    tried = ", ".join(str(c) for c in candidates[:3])
    raise DataNotFoundError(f"no data directory found (tried {tried}, ...); {_HOW_TO}")


def data_path(relative: str | Path, root: str | Path | None = None) -> Path:
    """Return ``root / relative``, resolving the root with :func:`resolve_data_root` when None."""
    return resolve_data_root(root) / relative
