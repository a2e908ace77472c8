"""``kexue pretrain``: data pipeline (:mod:`.data`, :mod:`.masking`), objectives (:mod:`.task`), CLI (:mod:`.cli`)."""

from .data import (PretrainBatches, SpecialIds, TokenizedCorpus, pack_segments, read_documents, split_eval_documents,
                   split_sentences, tokenize_corpus)
from .masking import IGNORE_INDEX, mask_tokens
from .task import evaluate_pretraining, pretraining_loss

__all__ = ["PretrainBatches", "SpecialIds", "TokenizedCorpus", "pack_segments", "read_documents",
           "split_eval_documents", "split_sentences", "tokenize_corpus", "IGNORE_INDEX", "mask_tokens",
           "evaluate_pretraining", "pretraining_loss"]
