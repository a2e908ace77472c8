"""KgCLUE knowledge-base QA as Seq2Seq + prefix tree (post 8802, kexue.fm/archives/8802).

A UniLM model reads the question and writes the key of the answer fact::

    [CLS] Q [SEP]  ->  S [SEP] P [SEP] M [SEP]        (order configurable: "spm" or "smp")

trained with cross-entropy on the target tokens only (``padding & unilm_mask``; the MLM head
doubles as the LM head). Decoding follows the trie of every (S, P, M) key of the knowledge base,
optionally with the lookahead of eq. (3), and the object is read from the base:
``O = objects(S, P, M)[0]``. The post found "spm" 8-10 points better than "smp" (predict the
easy parts first) and lookahead worth about 4 points.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kexue.data.records import KgclueExample
from kexue.models import Transformer
from kexue.retrieval.decoding import trie_beam_search
from kexue.retrieval.kb import Fact, KnowledgeBase
from kexue.retrieval.lookahead import Lookahead
from kexue.retrieval.metrics import kgclue_metrics
from kexue.retrieval.builder import TrieBuilder
from kexue.retrieval.trie import TokenTrie
from kexue.training import Trainer, TrainingConfig, TrainResult

__all__ = ["TARGET_ORDERS", "KBQA_RECIPE", "KbqaRecipe", "KbqaCodec", "KbqaBatches", "build_kb_trie", "Answer",
           "KbqaPredictor", "evaluate_kbqa", "default_trie_cache", "trie_cache_key", "load_or_build_trie", "train_kbqa"]

logger = logging.getLogger(__name__)

TARGET_ORDERS = {"spm": ("subject", "predicate", "meaning"), "smp": ("subject", "meaning", "predicate")}
IGNORE_INDEX = -100


class KbqaCodec:
    """Token ids of questions (sources) and of (S, P, M) keys (targets) for one tokenizer.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` or a transformers fast tokenizer (its backend is
            used) with ``[CLS]``, ``[SEP]``, ``[PAD]`` and ``[UNK]`` tokens.
        order: ``"spm"`` or ``"smp"``: the order of the fields in the target.
        max_question_tokens: longer questions are truncated (and reported as truncated).
    """

    def __init__(self, tokenizer, order: str = "spm", max_question_tokens: int = 64) -> None:
        if order not in TARGET_ORDERS:
            raise ValueError(f"`order` must be one of {sorted(TARGET_ORDERS)}, got {order!r}")
        if max_question_tokens < 1:
            raise ValueError(f"`max_question_tokens` must be >= 1, got {max_question_tokens}")
        self.tokenizer = tokenizer
        self.backend = getattr(tokenizer, "backend_tokenizer", tokenizer)  # skips transformers' slow wrapper
        if not hasattr(self.backend, "encode_batch"):
            raise TypeError(f"`tokenizer` must be a tokenizers.Tokenizer or a fast transformers tokenizer, "
                            f"got {type(tokenizer).__name__}")
        self.order, self.max_question_tokens = order, max_question_tokens
        self.cls, self.sep, self.pad, self.unk = (self._special_id(tokenizer, name) for name in ("cls", "sep", "pad", "unk"))
        self.vocab_size = self.backend.get_vocab_size(with_added_tokens=True)

    def _special_id(self, tokenizer, name: str) -> int:
        found = getattr(tokenizer, f"{name}_token_id", None)
        found = self.backend.token_to_id(f"[{name.upper()}]") if found is None else found
        if found is None:
            raise ValueError(f"the tokenizer has no [{name.upper()}] token")
        return found

    @classmethod
    def from_pretrained(cls, folder: str | Path, order: str = "spm", max_question_tokens: int = 64) -> "KbqaCodec":
        """The codec of a model folder: its ``tokenizer.json`` read with ``tokenizers`` alone (no
        transformers import, a second saved at every cold start), else :func:`kexue.data.load_tokenizer`."""
        path = Path(folder) / "tokenizer.json"
        if path.is_file():
            from tokenizers import Tokenizer

            return cls(Tokenizer.from_file(str(path)), order, max_question_tokens)
        from kexue.data import load_tokenizer

        return cls(load_tokenizer(folder), order, max_question_tokens)

    def fingerprint(self) -> str:
        """sha256 of what decides the target ids: the tokenizer (vocabulary, normaliser, splitting) and the order."""
        config = json.loads(self.backend.to_str())
        for runtime_only in ("truncation", "padding"):
            config.pop(runtime_only, None)
        return hashlib.sha256(json.dumps([config, self.order], sort_keys=True).encode("utf-8")).hexdigest()

    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids without special tokens; each distinct text is tokenised once (KB fields repeat)."""
        unique = list(dict.fromkeys(texts))
        encoded = [e.ids for e in self.backend.encode_batch(unique, add_special_tokens=False)] if unique else []
        table = dict(zip(unique, encoded))
        return [table[text] for text in texts]

    def questions(self, questions: Sequence[str]) -> list[tuple[list[int], bool]]:
        """``([CLS] Q [SEP]`` ids, truncated?) per question."""
        result = []
        for ids in self._ids(questions):
            truncated = len(ids) > self.max_question_tokens
            result.append(([self.cls, *ids[:self.max_question_tokens], self.sep], truncated))
        return result

    def question_warning(self, ids: Sequence[int]) -> str | None:
        """Why an encoded question (``[CLS] Q [SEP]``) is unlikely to be answered well, or None.

        Empty questions and questions of which more than half the tokens are [UNK] (another
        script or language than the vocabulary's) still get an answer: the closest path in the
        trie, which is then close to arbitrary.
        """
        content = list(ids[1:-1])
        if not content:
            return "empty question"
        unknown = content.count(self.unk)
        if 2 * unknown > len(content):
            return f"mostly unknown tokens ({unknown} of {len(content)} are [UNK])"
        return None

    def targets(self, keys: Sequence[tuple[str, str, str]]) -> list[list[int]]:
        """``S [SEP] P [SEP] M`` ids (in :attr:`order`, without the closing [SEP]) per (S, P, M)."""
        fields = {name: index for index, name in enumerate(TARGET_ORDERS["spm"])}
        columns = [self._ids([key[fields[name]] for key in keys]) for name in TARGET_ORDERS[self.order]]
        return [[*first, self.sep, *second, self.sep, *third] for first, second, third in zip(*columns)]


def build_kb_trie(kb: KnowledgeBase, codec: KbqaCodec, chunk: int = 8192) -> TokenTrie:
    """Trie of every (S, P, M) key of ``kb``, payload = the key's smallest row id.

    Keys that tokenise identically (differing only in characters the vocabulary maps to [UNK],
    or in case) keep the first; the count is ``stats()["duplicates_dropped"]``.
    """
    builder = TrieBuilder(vocab_size=codec.vocab_size, pad_token_id=codec.pad, duplicates="first")
    batch: list[tuple[int, str, str, str]] = []

    def flush() -> None:
        targets = codec.targets([(s, p, m) for _, s, p, m in batch])
        builder.extend(targets, [row for row, *_ in batch])
        batch.clear()

    for key in kb.keys():
        batch.append(key)
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return builder.build()


class KbqaBatches:
    """UniLM training batches ``[CLS] Q [SEP] target [SEP]`` in :mod:`kexue.pretrain.task`'s format.

    Shuffled per epoch from ``(seed, epoch)`` (exact resume via ``set_epoch``). Each batch holds
    ``input_ids``, ``token_type_ids``, ``attention_mask``, ``mlm_positions`` (the positions before
    each target token), ``mlm_labels`` and ``task="unilm"``, ready for
    :func:`kexue.pretrain.task.pretraining_loss`.
    """

    def __init__(self, examples: Sequence[KgclueExample], codec: KbqaCodec, batch_size: int, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        if not examples:
            raise ValueError("no training examples")
        sources = [ids for ids, _ in codec.questions([e.question for e in examples])]
        targets = codec.targets([(e.subject_name, e.predicate, e.meaning or "") for e in examples])
        self.rows = [(source, [*target, codec.sep]) for source, target in zip(sources, targets)]
        self.pad, self.batch_size, self.seed, self.epoch = codec.pad, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return (len(self.rows) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.rows))
        for start in range(0, len(order), self.batch_size):
            yield self.collate([self.rows[i] for i in order[start:start + self.batch_size]])

    def collate(self, rows: Sequence[tuple[list[int], list[int]]]) -> dict:
        width = max(len(s) + len(t) for s, t in rows)
        ids = torch.full((len(rows), width), self.pad, dtype=torch.long)
        types = torch.zeros_like(ids)
        labels = torch.full_like(ids, IGNORE_INDEX)
        for row, (source, target) in enumerate(rows):
            full = source + target
            ids[row, :len(full)] = torch.tensor(full)
            types[row, len(source):len(full)] = 1
            labels[row, len(source) - 1:len(full) - 1] = torch.tensor(target)  # position p predicts p + 1
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": ids != self.pad,
                "mlm_positions": labels != IGNORE_INDEX, "mlm_labels": labels, "task": "unilm"}


@dataclass(frozen=True)
class Answer:
    """A predicted fact, its decoding score, whether the question was truncated and why the
    answer may be meaningless (:meth:`KbqaCodec.question_warning`; None when nothing is wrong)."""

    fact: Fact
    score: float
    truncated: bool
    warning: str | None = None

    @property
    def triple(self) -> tuple[str, str, str]:
        return self.fact.full_subject, self.fact.predicate, self.fact.object


class KbqaPredictor:
    """Answers questions: trie-constrained decoding, then the object from the knowledge base.

    Args:
        model: a fine-tuned UniLM :class:`Transformer` (MLM head as LM head).
        codec: the tokenizer and target order the model was trained with.
        kb: the knowledge base; ``trie`` its :func:`build_kb_trie` for ``codec``.
    """

    def __init__(self, model: Transformer, codec: KbqaCodec, kb: KnowledgeBase, trie: TokenTrie) -> None:
        self.model, self.codec, self.kb, self.trie = model.eval(), codec, kb, trie

    def answer(self, questions: Sequence[str], num_beams: int = 1, lookahead: bool = True,
               batch_size: int = 32) -> list[Answer]:
        """One :class:`Answer` per question (the best complete path)."""
        step = Lookahead(boundary_token_id=self.codec.sep) if lookahead else None
        encoded = self.codec.questions(questions)
        answers = []
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start:start + batch_size]
            sources = [ids for ids, _ in chunk]
            found = trie_beam_search(self.model, sources, self.trie, self.codec.sep, num_beams, step,
                                     questions=[ids[1:-1] for ids in sources])
            for (ids, truncated), hypotheses in zip(chunk, found):
                key = self.kb.fact(hypotheses[0].payload)
                objects = self.kb.objects(key.subject, key.predicate, key.meaning)
                warning = self.codec.question_warning(ids)
                answers.append(Answer(Fact(key.subject, key.predicate, objects[0], key.meaning),
                                      hypotheses[0].score, truncated, warning))
                question = questions[len(answers) - 1][:40]
                if truncated:
                    logger.warning("question %r truncated to %d tokens", question, self.codec.max_question_tokens)
                if warning:
                    logger.warning("question %r: %s; its answer is close to arbitrary", question, warning)
        return answers


def evaluate_kbqa(predictor: KbqaPredictor, examples: Iterable[KgclueExample], num_beams: int = 1,
                  lookahead: bool = True, batch_size: int = 32,
                  answers: list[Answer] | None = None) -> dict[str, float]:
    """Official KgCLUE metrics (:func:`kgclue_metrics`) of the predictor's answers, in [0, 1].

    Pass a list as ``answers`` to receive the :class:`Answer` of every example, in order.
    """
    examples = list(examples)
    found = predictor.answer([e.question for e in examples], num_beams, lookahead, batch_size)
    if answers is not None:
        answers.extend(found)
    return kgclue_metrics([a.triple for a in found], [(e.subject, e.predicate, e.object) for e in examples])


TRIE_CACHE_VERSION = "kbqa-trie/1"  # bump when build_kb_trie's output changes for the same KB and tokenizer


def default_trie_cache() -> Path:
    """``$KEXUE_CACHE/kbqa-tries`` (default ``~/.cache/kexue/kbqa-tries``): tries keyed by content, safe to share."""
    from kexue.data.root import cache_dir

    return cache_dir() / "kbqa-tries"


def trie_cache_key(kb: KnowledgeBase, codec: KbqaCodec) -> str:
    """sha256 of everything the trie depends on: the KB's rows, the tokenizer, the order, the builder."""
    parts = (TRIE_CACHE_VERSION, kb.content_hash(), codec.fingerprint())
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


def load_or_build_trie(kb: KnowledgeBase, codec: KbqaCodec, cache: str | Path | None) -> TokenTrie:
    """The trie of ``kb`` for ``codec``: memory-mapped from the cache folder, or built (and cached).

    ``cache`` holds one sub-folder per :func:`trie_cache_key`, so a KB rebuilt with other rows
    (another ``--seed``), another tokenizer or another order never reuses a stale trie, and
    several KBs can share one cache. None builds without caching.
    """
    if cache is None:
        return build_kb_trie(kb, codec)
    key = trie_cache_key(kb, codec)
    folder = Path(cache) / key[:32]
    if (folder / "trie.json").is_file():
        trie = TokenTrie.load(folder)
        if trie.info.get("cache_key") == key:
            return trie
    trie = build_kb_trie(kb, codec)
    trie.info["cache_key"] = key
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=folder.parent))  # readers never see half a trie
    trie.save(staging)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        staging.rename(folder)
    except OSError:  # another process cached the same key first
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("trie of %d keys cached in %s", len(trie), folder)
    return trie


def train_kbqa(model_path: str | Path, examples: Sequence[KgclueExample], codec: KbqaCodec,
               config: TrainingConfig, batch_size: int = 32, resume: bool = False) -> tuple[Transformer, TrainResult]:
    """Fine-tune a BERT / RoFormer checkpoint as a UniLM KBQA model with :class:`kexue.training.Trainer`.

    Writes resumable checkpoints under ``config.output_dir`` and the final model to
    ``<output_dir>/final`` for :meth:`Transformer.from_pretrained`, with the files of the codec's
    tokenizer (``vocab.txt``, ``tokenizer.json``, ``tokenizer_config.json``; the backbone may have
    only ``tokenizer.json``), so :meth:`KbqaCodec.from_pretrained` reads it without transformers.

    Returns:
        The trained model (eval mode) and the :class:`~kexue.training.TrainResult`.
    """
    from kexue.pretrain.task import pretraining_loss

    if not hasattr(codec.tokenizer, "save_pretrained"):
        raise TypeError("train_kbqa needs a codec built from a transformers tokenizer (kexue.data.load_tokenizer), "
                        f"whose files are saved with the model; got {type(codec.tokenizer).__name__}")
    model = Transformer.from_pretrained(model_path, mlm_head=True, nsp_head=False, pooler=False)
    batches = KbqaBatches(examples, codec, batch_size, seed=config.seed)
    result = Trainer(model, pretraining_loss, batches, config).fit(resume=resume)
    model.eval().save_pretrained(Path(config.output_dir) / "final", vocab_file=codec.tokenizer)
    return model, result
