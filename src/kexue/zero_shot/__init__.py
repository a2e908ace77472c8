"""Zero-shot classification with BERT's next-sentence-prediction head (NSP-BERT, kexue.fm/archives/8671).

NSP-BERT (Sun et al., arXiv 2109.03564) poses a task as segment pairs and reads the NSP head::

    P(IsNext | A, B) = softmax(W_nsp tanh(W_pool h_[CLS]))[0]

- classification: ``argmax_y P(IsNext | prompt(y), x)`` over label prompts (candidates-contrast);
- sentence pairs / coreference: one ``P(IsNext | s_a, s_b)`` per sample, samples ranked and cut
  into equal groups, one per ordered label (samples-contrast, uniform prior, transductive);
- cloze (ChID): ``argmax_c P(IsNext | c, passage)`` with the candidate at the blank's positions.

Pieces: :class:`NSPScorer` (batched, length-bucketed P(IsNext) for kexue and transformers models),
:class:`NSPZeroShotClassifier` (templates, ensembling, calibration, both mappings),
:class:`MLMScorer` / :class:`PETZeroShotClassifier` (the PET-style MLM baseline),
:mod:`~kexue.zero_shot.mapping` (C-C, S-C, thresholds), :mod:`~kexue.zero_shot.fewclue` (the nine
FewCLUE tasks with the paper's templates), :mod:`~kexue.zero_shot.runner` (accuracy tables) and
:func:`coherence_auc` (does the NSP head judge coherence or only the source? AUCs on held-out texts).
The command line is ``kexue zeroshot`` (:mod:`~kexue.zero_shot.cli`).
"""

from kexue.zero_shot.classifier import CONTENT_FREE, NSPZeroShotClassifier, PETZeroShotClassifier
from kexue.zero_shot.coherence import coherence_auc, format_coherence, split_sentences
from kexue.zero_shot.encoding import EncodedPair, PairEncoder, bucket_batches
from kexue.zero_shot.fewclue import PAPER_ZERO_SHOT, TASKS, FewCLUETask
from kexue.zero_shot.mapping import SamplesContrast, candidates_contrast, uniform_prior_assignment
from kexue.zero_shot.mlm import MLMScorer
from kexue.zero_shot.runner import TaskResult, evaluate_fewclue, evaluate_task, format_results
from kexue.zero_shot.scorer import IS_NEXT, NSP_CHECKPOINTS, NoNSPHeadError, NSPScorer
from kexue.zero_shot.templates import expand_template, slot_and_words

__all__ = [
    "NSPScorer", "NoNSPHeadError", "NSP_CHECKPOINTS", "IS_NEXT",
    "NSPZeroShotClassifier", "PETZeroShotClassifier", "CONTENT_FREE", "MLMScorer",
    "SamplesContrast", "candidates_contrast", "uniform_prior_assignment",
    "EncodedPair", "PairEncoder", "bucket_batches", "expand_template", "slot_and_words",
    "coherence_auc", "format_coherence", "split_sentences",
    "FewCLUETask", "TASKS", "PAPER_ZERO_SHOT", "TaskResult", "evaluate_task", "evaluate_fewclue", "format_results",
]
