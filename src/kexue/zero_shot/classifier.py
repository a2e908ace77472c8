"""Zero-shot text classifiers over the NSP head (NSP-BERT) and over the MLM head (PET baseline).

NSP-BERT (kexue.fm/archives/8671; arXiv 2109.03564 §3): the text is one segment, a prompt built
from each label the other (prefix: ``[CLS] prompt [SEP] text [SEP]``; suffix: the reverse), and::

    s(x, y) = (1/T) Σ_t [ log P(IsNext | x, prompt_t(y)) − c · log P_cf,t(y) ]

with T templates (ensembling: the geometric mean of P(IsNext)), and optional calibration
(c = 1, after Zhao et al. 2021 "Calibrate before use"): ``P_cf,t(y)`` is P(IsNext) of the same
prompt paired with content-free texts (``""``, ``"[MASK]"``), which removes each label prompt's
own bias towards IsNext. Candidates-contrast predicts ``argmax_y s(x, y)``.

Samples-contrast (``mapping="samples"``): the templates are prompts without a label slot, each text
gets one score ``s(x)``, and the ordered labels are assigned by rank with a uniform prior
(transductive, :func:`~kexue.zero_shot.uniform_prior_assignment`) or by thresholds fitted on
another split (:class:`~kexue.zero_shot.SamplesContrast`).

The PET classifier uses the same templates, the label word in ``[MASK]`` tokens (see :mod:`mlm`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kexue.zero_shot.mapping import SamplesContrast, candidates_contrast, uniform_prior_assignment
from kexue.zero_shot.mlm import MLMScorer
from kexue.zero_shot.scorer import NSPScorer
from kexue.zero_shot.templates import LABEL_SLOT, expand_template, pair_with_prompt, slot_and_words

__all__ = ["NSPZeroShotClassifier", "PETZeroShotClassifier", "CONTENT_FREE"]

CONTENT_FREE = ("", "[MASK]")
_MAPPINGS = ("candidates", "samples")


def _as_templates(templates: str | Sequence[str | Sequence[str]]) -> list[str | Sequence[str]]:
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates:
        raise ValueError("`templates` must hold at least one template")
    return templates


class NSPZeroShotClassifier:
    """Zero-shot classification by P(IsNext) of (text, label prompt) pairs.

    Args:
        scorer: an :class:`~kexue.zero_shot.NSPScorer`.
        labels: label names, in the order of the returned indices. With ``mapping="samples"`` they
            are ordered from the least to the most IsNext-like.
        templates: one template or several (ensembled): a string with ``{label}``, or a list of one
            prompt per label; with ``mapping="samples"``, plain prompts without a slot.
        prompt_position: "prefix" (prompt is segment A, the paper's default for classification) or "suffix".
        calibrate: divide out each prompt's content-free P(IsNext) (candidates-contrast only).
        content_free: the content-free texts averaged for calibration.
        mapping: "candidates" (argmax over labels) or "samples" (rank samples; see module docstring).

    Raises:
        ValueError: an unknown mapping or position, a bad template, or ``calibrate`` with "samples".

    Example:
        >>> import torch, tempfile, pathlib
        >>> from kexue.data import load_tokenizer
        >>> from kexue.models import Transformer, TransformerConfig
        >>> vocab = pathlib.Path(tempfile.mkdtemp()) / "vocab.txt"
        >>> _ = vocab.write_text("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"好差评这是新闻体育财经"]))
        >>> torch.manual_seed(0) and None
        >>> model = Transformer(TransformerConfig(vocab_size=16, hidden_size=16, num_layers=1, num_heads=2,
        ...                                       intermediate_size=32, max_positions=32)).eval()
        >>> classifier = NSPZeroShotClassifier(NSPScorer(model, load_tokenizer(vocab)), ["体育", "财经"],
        ...                                    templates=["这是{label}新闻", "{label}"], calibrate=True)
        >>> classifier.scores(["好新闻", "差评"]).shape
        torch.Size([2, 2])
        >>> classifier.predict(["好新闻"]).shape
        torch.Size([1])
    """

    def __init__(self, scorer: NSPScorer, labels: Sequence[str], templates: str | Sequence[str | Sequence[str]] = LABEL_SLOT,
                 prompt_position: str = "prefix", calibrate: bool = False,
                 content_free: Sequence[str] = CONTENT_FREE, mapping: str = "candidates") -> None:
        if mapping not in _MAPPINGS:
            raise ValueError(f"`mapping` must be one of {_MAPPINGS}, got {mapping!r}")
        if len(labels) < 2:
            raise ValueError(f"`labels` must name at least 2 labels, got {list(labels)!r}")
        if calibrate and mapping == "samples":
            raise ValueError("`calibrate=True` has no effect with mapping='samples': a per-prompt constant "
                             "does not change the ranking of samples")
        pair_with_prompt("", "", prompt_position)  # validates the position
        self.scorer = scorer
        self.labels = list(labels)
        self.templates = _as_templates(templates)
        self.prompt_position = prompt_position
        self.calibrate = calibrate
        self.content_free = tuple(content_free)
        self.mapping = mapping
        self.prompts = [self._prompts(template) for template in self.templates]  # [T][K] or [T][1]
        self._content_free_log_prob: Tensor | None = None

    def _prompts(self, template: str | Sequence[str]) -> list[str]:
        if self.mapping == "candidates":
            return expand_template(template, self.labels)
        if not isinstance(template, str) or LABEL_SLOT in template:
            raise ValueError(f"with mapping='samples' a template is one prompt without {LABEL_SLOT}, got {template!r}")
        return [template]

    def _log_probs(self, texts: Sequence[str]) -> Tensor:
        """log P(IsNext) ``[N, T, K]`` of every (text, prompt) pair, in one batched scorer call."""
        pairs = [pair_with_prompt(text, prompt, self.prompt_position)
                 for text in texts for prompts in self.prompts for prompt in prompts]
        return self.scorer.log_prob(pairs).view(len(texts), len(self.prompts), len(self.prompts[0]))

    def content_free_log_prob(self) -> Tensor:
        """``[T, K]`` mean log P(IsNext) of each prompt with the content-free texts (cached)."""
        if self._content_free_log_prob is None:
            self._content_free_log_prob = self._log_probs(self.content_free).mean(dim=0)
        return self._content_free_log_prob

    def scores(self, texts: Sequence[str]) -> Tensor:
        """``s(x, y)`` ``[N, K]`` (candidates) or ``s(x)`` ``[N]`` (samples), float32; see module docstring."""
        log_probs = self._log_probs(list(texts))
        if self.calibrate:
            log_probs = log_probs - self.content_free_log_prob()
        scores = log_probs.mean(dim=1)
        return scores if self.mapping == "candidates" else scores[:, 0]

    def fit(self, texts: Sequence[str]) -> "NSPZeroShotClassifier":
        """Samples-contrast: fit the thresholds on these texts' scores (no labels). Candidates: no-op."""
        if self.mapping == "samples":
            self.samples_contrast_ = SamplesContrast(len(self.labels)).fit(self.scores(texts))
        return self

    def predict(self, texts: Sequence[str]) -> Tensor:
        """``[N]`` label indices: argmax (candidates) or the fitted thresholds (samples)."""
        if self.mapping == "candidates":
            return candidates_contrast(self.scores(texts))
        if not hasattr(self, "samples_contrast_"):
            raise RuntimeError("mapping='samples' needs fit(dev_texts) before predict, or use fit_predict")
        return self.samples_contrast_.predict(self.scores(texts))

    def fit_predict(self, texts: Sequence[str]) -> Tensor:
        """Samples: the transductive uniform-prior assignment of ``texts``. Candidates: :meth:`predict`."""
        if self.mapping == "candidates":
            return self.predict(texts)
        return uniform_prior_assignment(self.scores(texts), len(self.labels))


class PETZeroShotClassifier:
    """PET-style zero-shot baseline: the label word in the template's slot, scored by the MLM head.

    Args:
        scorer: an :class:`~kexue.zero_shot.MLMScorer`.
        labels: label names, in the order of the returned indices.
        templates: as for :class:`NSPZeroShotClassifier`; a prompt list is split into a slot and one
            word per label (:func:`~kexue.zero_shot.templates.slot_and_words`). Several are averaged.
        prompt_position: "prefix" or "suffix", as for NSP.

    Example:
        >>> import torch, tempfile, pathlib
        >>> from kexue.data import load_tokenizer
        >>> from kexue.models import Transformer, TransformerConfig
        >>> vocab = pathlib.Path(tempfile.mkdtemp()) / "vocab.txt"
        >>> _ = vocab.write_text("\\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"好差评很东西"]))
        >>> torch.manual_seed(0) and None
        >>> model = Transformer(TransformerConfig(vocab_size=11, hidden_size=16, num_layers=1, num_heads=2,
        ...                                       intermediate_size=32, max_positions=32)).eval()
        >>> pet = PETZeroShotClassifier(MLMScorer(model, load_tokenizer(vocab)), ["Positive", "Negative"],
        ...                             templates=[["东西很好", "东西很差"]])
        >>> pet.scores(["好评", "差评"]).shape
        torch.Size([2, 2])
    """

    def __init__(self, scorer: MLMScorer, labels: Sequence[str], templates: str | Sequence[str | Sequence[str]] = LABEL_SLOT,
                 prompt_position: str = "prefix") -> None:
        pair_with_prompt("", "", prompt_position)
        self.scorer = scorer
        self.labels = list(labels)
        self.prompt_position = prompt_position
        self.patterns = [slot_and_words(template, self.labels) for template in _as_templates(templates)]

    def scores(self, texts: Sequence[str]) -> Tensor:
        """``[N, K]`` mean (over templates) of the label words' mean log-probabilities."""
        per_template = []
        for slot_template, words in self.patterns:
            pairs = [pair_with_prompt(text, slot_template, self.prompt_position) for text in texts]
            per_template.append(self.scorer.word_log_probs(pairs, [words] * len(pairs)))
        return torch.stack(per_template).mean(dim=0)

    def predict(self, texts: Sequence[str]) -> Tensor:
        """``[N]`` argmax label indices."""
        return candidates_contrast(self.scores(texts))
