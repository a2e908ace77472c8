"""Load and save Hugging Face BERT / RoFormer checkpoints (nanoGPT-style explicit mapping).

:func:`hf_name_map` is the one table from Hugging Face parameter names to kexue
names, built per layer; loading and saving both use it. Keys a checkpoint may
hold that kexue does not need are listed in ``IGNORED_HF_KEYS`` with the reason.
Everything else must match: an unexpected key, a missing backbone key or a
wrong shape raises an error naming the key. ``strict=False`` (or ``ignore_keys``)
loads fine-tuned checkpoints whose extra weights kexue has no place for (e.g.
``BertForSequenceClassification``'s ``classifier.*``) and configs with extra keys,
and logs what it skipped; a missing backbone weight or a wrong shape still raises.

Saved folders carry ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json``
(:func:`kexue.data.tokenizer.save_tokenizer_files`), so ``AutoTokenizer`` and
``AutoModel*`` load them, and a model card (``README.md``) that says how; fp16
weights need ``dtype=torch.float32``, since transformers 5 keeps them in fp16.

Heads are optional in both directions. A checkpoint without ``cls.predictions``
(MLM), ``cls.seq_relationship`` (NSP) or ``pooler`` loads with that head
disabled, unless the caller asks for it (``mlm_head=True`` ...), in which case
it is freshly initialised with a logged warning. RoFormer in transformers has no
pooler or NSP head; kexue stores them as the extra keys ``roformer.pooler.*``
and ``cls.seq_relationship.*``, which transformers ignores and kexue reads back.

``transformers`` is never needed here; ``safetensors`` is imported inside the
functions that read or write it.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from kexue.models import config as config_module
from kexue.models.config import HF_MODEL_TYPES, TransformerConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from kexue.models.transformer import Transformer

__all__ = ["hf_name_map", "load_pretrained", "save_pretrained", "read_hf_state_dict"]

logger = logging.getLogger(__name__)

BASE_PREFIX = {"bert": "bert.", "roformer": "roformer."}

# Keys kexue reads but does not store, and why.
IGNORED_HF_KEYS = {
    "embeddings.position_ids": "buffer arange(max_positions); kexue builds positions on the fly",
    "embeddings.token_type_ids": "buffer of zeros; kexue defaults token types to zeros",
    "encoder.embed_positions.weight": "RoFormer's fixed sinusoid table; kexue computes RoPE angles",
    "cls.predictions.decoder.weight": "tied to the word embeddings (checked equal)",
    "cls.predictions.decoder.bias": "tied to cls.predictions.bias (checked equal)",
}
_TIED = {"cls.predictions.decoder.weight": "embeddings.word_embeddings.weight",
         "cls.predictions.decoder.bias": "cls.predictions.bias"}


def _layer_map(i: int) -> dict[str, str]:
    hf, ours = f"encoder.layer.{i}.", f"layers.{i}."
    pairs = {
        "attention.self.query": "attention.query", "attention.self.key": "attention.key",
        "attention.self.value": "attention.value", "attention.output.dense": "attention.output",
        "attention.output.LayerNorm": "attention_norm", "intermediate.dense": "ffn_in",
        "output.dense": "ffn_out", "output.LayerNorm": "ffn_norm",
    }
    return {f"{hf}{h}.{p}": f"{ours}{o}.{p}" for h, o in pairs.items() for p in ("weight", "bias")}


def hf_name_map(config: TransformerConfig) -> dict[str, dict[str, str]]:
    """HF name (without the ``bert.`` / ``roformer.`` prefix) -> kexue name, grouped by part.

    Args:
        config: decides the number of layers and whether absolute positions exist.

    Returns:
        ``{"backbone": {...}, "pooler": {...}, "mlm": {...}, "nsp": {...}}``. Head
        keys (``cls.*``) are full names; the others lack the base-model prefix.
    """
    backbone = {
        "embeddings.word_embeddings.weight": "embeddings.word.weight",
        "embeddings.token_type_embeddings.weight": "embeddings.token_type.weight",
        "embeddings.LayerNorm.weight": "embeddings.norm.weight",
        "embeddings.LayerNorm.bias": "embeddings.norm.bias",
    }
    if config.position == "absolute":
        backbone["embeddings.position_embeddings.weight"] = "embeddings.position.weight"
    for i in range(config.num_layers):
        backbone.update(_layer_map(i))
    return {
        "backbone": backbone,
        "pooler": {"pooler.dense.weight": "pooler.weight", "pooler.dense.bias": "pooler.bias"},
        "mlm": {"cls.predictions.transform.dense.weight": "mlm.transform.weight",
                "cls.predictions.transform.dense.bias": "mlm.transform.bias",
                "cls.predictions.transform.LayerNorm.weight": "mlm.norm.weight",
                "cls.predictions.transform.LayerNorm.bias": "mlm.norm.bias",
                "cls.predictions.bias": "mlm.bias"},
        "nsp": {"cls.seq_relationship.weight": "nsp.weight", "cls.seq_relationship.bias": "nsp.bias"},
    }


def read_hf_state_dict(path: Path) -> dict[str, Tensor]:
    """Read ``model.safetensors`` (single or sharded) or ``pytorch_model.bin`` from a folder.

    Old TF-converted names ``LayerNorm.gamma`` / ``.beta`` are renamed to ``weight`` / ``bias``.
    """
    from safetensors.torch import load_file

    if (path / "model.safetensors").exists():
        state = load_file(path / "model.safetensors")
    elif (path / "model.safetensors.index.json").exists():
        shards = set(json.loads((path / "model.safetensors.index.json").read_text())["weight_map"].values())
        state = {k: v for shard in sorted(shards) for k, v in load_file(path / shard).items()}
    elif (path / "pytorch_model.bin").exists():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{path}: no model.safetensors, model.safetensors.index.json or pytorch_model.bin")
    renames = {".gamma": ".weight", ".beta": ".bias"}
    return {next((k[: -len(o)] + n for o, n in renames.items() if k.endswith(o)), k): v
            for k, v in state.items()}


def _strip_prefix(state: dict[str, Tensor], model_type: str) -> dict[str, Tensor]:
    prefix = BASE_PREFIX[model_type]
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def _choose_heads(config: TransformerConfig, state: dict[str, Tensor], names: dict,
                  overrides: dict) -> TransformerConfig:
    """A head is on if its weights are present, unless the caller decided otherwise."""
    flags = {}
    for part, flag in (("pooler", "pooler"), ("mlm", "mlm_head"), ("nsp", "nsp_head")):
        present = all(k in state for k in names[part])
        flags[flag] = overrides.get(flag, present)
        if flags[flag] and not present:
            logger.warning("checkpoint has no %s weights %s; initialising them at random",
                           part, sorted(names[part]))
    if overrides.get("nsp_head") and "pooler" not in overrides:
        flags["pooler"] = True
    flags["nsp_head"] = flags["nsp_head"] and flags["pooler"]
    return config.replace(**flags)


def _check_tied(state: dict[str, Tensor], path: Path) -> None:
    for tied, source in _TIED.items():
        if tied in state and source in state and not torch.equal(state[tied], state[source]):
            raise ValueError(f"{path}: `{tied}` differs from `{source}`; kexue ties the MLM decoder "
                             "to the word embeddings and cannot load an untied one")


def load_pretrained(model_class: type["Transformer"], path: str | Path, strict: bool = True,
                    ignore_keys: Iterable[str] = (), **config_overrides) -> "Transformer":
    """Build ``model_class`` from a local HF BERT / RoFormer folder.

    Args:
        model_class: :class:`kexue.models.Transformer` (or a subclass).
        path: folder with ``config.json`` and the weights.
        strict: False skips checkpoint weights and ``config.json`` keys kexue has no place for
            (e.g. a fine-tuned ``classifier.*``), logging them; missing backbone weights and
            shape mismatches still raise.
        ignore_keys: checkpoint weight names to skip even when strict, as ``fnmatch`` patterns
            without the ``bert.``/``roformer.`` prefix (e.g. ``"classifier.*"``).
        **config_overrides: :class:`TransformerConfig` fields to change, e.g.
            ``dropout=0.0``, ``attention_scale="logn"``, ``nsp_head=True``.

    Returns:
        The model in eval mode, weights copied.

    Raises:
        FileNotFoundError: no config or weights.
        ValueError: unexpected (when strict) or missing keys, shape mismatches (naming the key),
            untied decoder weights, or an unsupported config.
        TypeError: an unknown override name.

    Example:
        >>> import tempfile, torch
        >>> from kexue.models import Transformer, TransformerConfig
        >>> folder = tempfile.mkdtemp()
        >>> Transformer(TransformerConfig(vocab_size=30, hidden_size=8, num_layers=1, num_heads=2,
        ...                               intermediate_size=16)).save_pretrained(folder)
        >>> from safetensors.torch import load_file, save_file
        >>> weights = load_file(f"{folder}/model.safetensors") | {"classifier.weight": torch.zeros(2, 8)}
        >>> save_file(weights, f"{folder}/model.safetensors")
        >>> Transformer.from_pretrained(folder, ignore_keys=["classifier.*"]).config.hidden_size
        8
    """
    path = Path(path)
    hf_config = json.loads((path / "config.json").read_text())
    model_type = hf_config.get("model_type")
    if not strict:
        hf_config = _drop_unknown_config_keys(hf_config, path)
    config = TransformerConfig.from_hf(hf_config)
    heads = {k: config_overrides.pop(k) for k in ("pooler", "mlm_head", "nsp_head") if k in config_overrides}
    config = config.replace(**config_overrides)
    state = _strip_prefix(read_hf_state_dict(path), model_type)
    _check_tied(state, path)
    names = hf_name_map(config)
    state = _skip_unknown_weights(state, names, strict, tuple(ignore_keys), path)
    config = _choose_heads(config, state, names, heads)
    model = model_class(config)
    _copy_weights(model, state, names, path)
    return model.eval()


def _drop_unknown_config_keys(hf_config: dict[str, Any], path: Path) -> dict[str, Any]:
    known = (set(config_module._HF_TO_KEXUE) | set(config_module._HF_REQUIRED_VALUES)
             | config_module._HF_IGNORED)
    extra = sorted(set(hf_config) - known)
    if extra:
        logger.warning("%s: config.json keys not used by kexue, skipped (strict=False): %s", path, extra)
    return {key: value for key, value in hf_config.items() if key in known}


def _skip_unknown_weights(state: dict[str, Tensor], names: dict, strict: bool, ignore_keys: tuple[str, ...],
                          path: Path) -> dict[str, Tensor]:
    """Drop the weights matched by ``ignore_keys`` and, unless strict, every unknown one (logged)."""
    known = {hf for table in names.values() for hf in table} | set(IGNORED_HF_KEYS)
    skipped = sorted(k for k in state if any(fnmatch.fnmatchcase(k, pattern) for pattern in ignore_keys)
                     or (not strict and k not in known))
    if skipped:
        logger.warning("%s: checkpoint weights skipped (%s): %s", path,
                       "ignore_keys" if strict else "strict=False", skipped)
    return {k: v for k, v in state.items() if k not in skipped}


def _copy_weights(model: "Transformer", state: dict[str, Tensor], names: dict, path: Path) -> None:
    enabled = {"backbone": True, "pooler": model.pooler is not None,
               "mlm": model.mlm is not None, "nsp": model.nsp is not None}
    mapping = {hf: ours for part, table in names.items() if enabled[part] for hf, ours in table.items()}
    known = {hf for table in names.values() for hf in table} | set(IGNORED_HF_KEYS)
    unexpected = sorted(set(state) - known)
    if unexpected:
        raise ValueError(f"{path}: unexpected checkpoint key(s) {unexpected[:10]}"
                         f"{' ...' if len(unexpected) > 10 else ''} (load with strict=False or "
                         "ignore_keys=[...] to skip them)")
    missing = sorted(hf for hf in names["backbone"] if hf not in state)
    if missing:
        raise ValueError(f"{path}: missing checkpoint key(s) {missing[:10]}")
    params = model.state_dict()
    with torch.no_grad():
        for hf, ours in mapping.items():
            if hf not in state:
                continue  # a head the caller asked for; freshly initialised
            if state[hf].shape != params[ours].shape:
                raise ValueError(f"{path}: `{hf}` has shape {tuple(state[hf].shape)}, "
                                 f"kexue `{ours}` expects {tuple(params[ours].shape)}")
            params[ours].copy_(state[hf])


def _rope_table(config: TransformerConfig) -> Tensor:
    """RoFormer's stored sinusoid table ``[max_positions, d]``: sines, then cosines."""
    from kexue.models.attention import rope_angles

    sin, cos = rope_angles(torch.arange(config.max_positions)[None], config.head_size)
    return torch.cat([sin[0, 0], cos[0, 0]], dim=-1)


def save_pretrained(model: "Transformer", path: str | Path,
                    vocab_file: "str | Path | PreTrainedTokenizerBase | None" = None) -> None:
    """Write ``config.json`` + ``model.safetensors`` in HF names, the tokenizer files and a model card.

    The folder loads in transformers (``BertForPreTraining`` for absolute
    positions, ``RoFormerForMaskedLM`` for RoPE; ``AutoTokenizer``) and back in kexue.
    As transformers itself does, the tied decoder weight is not written (``tie_word_embeddings``).

    Args:
        model: the model to save.
        path: output folder, created if needed.
        vocab_file: the tokenizer: a tokenizer from :func:`kexue.data.load_tokenizer`, a
            ``vocab.txt``, or a checkpoint folder with ``vocab.txt`` or only ``tokenizer.json``;
            ``vocab.txt``, ``tokenizer.json`` and ``tokenizer_config.json`` are written from it.

    Under several processes (``torch.distributed`` initialised) only rank 0 writes, so that
    training code can export from every process without racing on the files.
    """
    from safetensors.torch import save_file

    from kexue.data.tokenizer import save_tokenizer_files

    if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
        return
    config = model.config
    model_type = HF_MODEL_TYPES[config.position]
    prefix = BASE_PREFIX[model_type]
    names = hf_name_map(config)
    params = model.state_dict()
    state = {}
    for part, table in names.items():
        for hf, ours in table.items():
            if ours in params:
                state[hf if hf.startswith("cls.") else prefix + hf] = params[ours].contiguous()
    if model_type == "roformer":
        state[prefix + "encoder.embed_positions.weight"] = _rope_table(config)
    hf_config = config.to_hf(model_type)
    hf_config["architectures"] = [_architecture(model)]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    if vocab_file is not None:
        save_tokenizer_files(vocab_file, path)
    fp16 = any(value.dtype == torch.float16 for value in state.values())
    (path / "README.md").write_text(_model_card(hf_config["architectures"][0], fp16, vocab_file is not None),
                                    encoding="utf-8")


def _model_card(architecture: str, fp16: bool, has_tokenizer: bool) -> str:
    dtype = ", dtype=torch.float32" if fp16 else ""
    lines = ["# kexue model", "", f"A `{architecture}` written by kexue (`Transformer.save_pretrained`).", ""]
    if fp16:
        lines += ["The weights are stored in **fp16**. transformers 5 loads fp16 weights as fp16 unless told",
                  "otherwise: pass `dtype=torch.float32` (kexue's `Transformer.from_pretrained` always loads",
                  "float32).", ""]
    lines += ["```python", "import torch", "from transformers import AutoModel" + (", AutoTokenizer" if has_tokenizer else ""), ""]
    if has_tokenizer:
        lines.append('tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")')
    lines += [f'model = AutoModel.from_pretrained("path/to/this/folder"{dtype})', "", "from kexue.models import Transformer",
              'model = Transformer.from_pretrained("path/to/this/folder")', "```", ""]
    return "\n".join(lines)


def _architecture(model: "Transformer") -> str:
    if model.config.position == "rope":
        return "RoFormerForMaskedLM" if model.mlm is not None else "RoFormerModel"
    if model.mlm is not None:
        return "BertForPreTraining" if model.nsp is not None else "BertForMaskedLM"
    return "BertForNextSentencePrediction" if model.nsp is not None else "BertModel"
