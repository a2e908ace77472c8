"""``kexue bench nsp-zeroshot``: batched NSP zero-shot scoring against one forward per (sample, label).

The case is IFLYTEK-like: 119 label prompts ("这是一款{label}类软件", labels of 2-4 characters) per
text, a 12-layer, 768-hidden BERT with random weights (transformers' ``BertForNextSentencePrediction``
with bert-base-chinese sizes; a random vocabulary of CJK characters). One call classifies the
samples: 119 × samples pairs.

- ours: :class:`kexue.zero_shot.NSPScorer`, all pairs tokenized once per distinct string, length-
  bucketed into large padded batches, ``torch.inference_mode``;
- anchor: the loop of the reference implementation (sunyilgdx/NSP-BERT) as users port it: for each
  sample and each label, tokenize the pair and run one forward pass.

Both run the same transformers model, so the ratio measures batching alone; ours is also timed once
through kexue's Transformer loaded with the same weights (reported beside). Goal (issue 10): speedup >= 3.
The work is large on CPU (about 10 GFLOP per 60-token pair, 119 pairs per sample), so one sample is timed
once; on CPU the forward's matrix products dominate both ways, so batching gains less than on a GPU.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

import torch

from kexue.bench.harness import Comparison, compare, register_benchmark

__all__ = ["run"]

LABELS = 119
GOAL = 3.0
CJK = [chr(0x4E00 + i) for i in range(21128 - 5)]  # bert-base-chinese vocabulary size


def _tokenizer(folder: Path):
    from kexue.data import load_tokenizer

    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CJK]) + "\n", encoding="utf-8")
    return load_tokenizer(vocab)


def _model():
    from transformers import BertConfig, BertForNextSentencePrediction

    torch.manual_seed(0)
    config = BertConfig(vocab_size=21128, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512)
    return BertForNextSentencePrediction(config).eval()


def _task(samples: int, text_chars: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    pool = CJK[:3000]
    prompts = ["这是一款" + "".join(rng.choices(pool, k=rng.randint(2, 4))) + "类软件" for _ in range(LABELS)]
    texts = ["".join(rng.choices(pool, k=text_chars)) for _ in range(samples)]
    return prompts, texts


def _loop(model, tokenizer, prompts: list[str], texts: list[str]) -> torch.Tensor:
    """One forward per (sample, label), prompt as segment A (the reference's ``is_pre``)."""
    scores = torch.empty(len(texts), len(prompts))
    with torch.inference_mode():
        for i, text in enumerate(texts):
            for k, prompt in enumerate(prompts):
                encoded = tokenizer(prompt, text, truncation=True, max_length=128, return_tensors="pt")
                logits = model(input_ids=encoded["input_ids"], token_type_ids=encoded["token_type_ids"],
                               attention_mask=encoded["attention_mask"]).logits
                scores[i, k] = torch.softmax(logits, dim=-1)[0, 0]
    return scores


@register_benchmark("nsp-zeroshot", "one forward per (sample, label) (sunyilgdx/NSP-BERT loop)",
                    "batched NSP scoring of an IFLYTEK-like 119-label task, random BERT-base")
def run(quick: bool) -> list[Comparison]:
    from kexue.models import Transformer
    from kexue.zero_shot import NSPScorer

    samples, text_chars = (1, 24) if quick else (1, 48)
    prompts, texts = _task(samples, text_chars)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = _tokenizer(Path(folder))
        model = _model()
        model.save_pretrained(Path(folder) / "bert")
        kexue_model = Transformer.from_pretrained(Path(folder) / "bert")
    pairs = [(prompt, text) for text in texts for prompt in prompts]
    outputs: dict[str, torch.Tensor] = {}

    def ours(scorer_model=model, key: str = "ours") -> None:  # a fresh scorer: tokenization is timed too
        outputs[key] = NSPScorer(scorer_model, tokenizer).score(pairs).view(samples, LABELS)

    def anchor() -> None:
        outputs["anchor"] = _loop(model, tokenizer, prompts, texts)

    comparison = compare(f"{LABELS}-label IFLYTEK-like, {samples} sample(s), same transformers model both ways",
                         ours, "one forward per (sample, label)", anchor, repeats=1, warmup=0,
                         goal=f"speedup >= {GOAL:g}", goal_met=lambda c: c.speedup >= GOAL,
                         samples=samples, labels=LABELS, pairs=len(pairs), text_chars=text_chars,
                         layers=12, hidden=768, threads=torch.get_num_threads())
    started = time.perf_counter()
    ours(kexue_model, "kexue")
    kexue_seconds = time.perf_counter() - started
    extra = {"max_abs_difference_vs_anchor": float((outputs["ours"] - outputs["anchor"]).abs().max()),
             "examples_per_second_ours": samples / comparison.ours.median,
             "examples_per_second_anchor": samples / comparison.theirs.median,
             "seconds_ours_through_kexue_transformer": kexue_seconds,
             "max_abs_difference_kexue_transformer": float((outputs["kexue"] - outputs["anchor"]).abs().max())}
    return [Comparison(**{**comparison.__dict__, "extra": {**comparison.extra, **extra}})]
