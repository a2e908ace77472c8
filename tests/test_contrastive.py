"""kexue.contrastive against float64 hand computations and brute force."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kexue.contrastive import (FlatNCELoss, InfoNCELoss, flat_nce, flat_nce_stopgrad, gradient_errors, info_nce,
                               pair_terms, scores_with_xi, similarity_scores)
from kexue.contrastive.diagnostics import (adam_eps_damping, batch_gradient_error, info_nce_exact,
                                           update_direction_cosines)

torch.set_num_threads(1)


def _random_scores(rows: int = 5, columns: int = 7, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, columns, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def _brute_force(scores: list[list[float]], positives: list[list[bool]],
                 valid: list[list[bool]]) -> tuple[float, float]:
    """(InfoNCE, FlatNCE) by the definition, one (anchor, positive) pair at a time, in Python floats."""
    info_rows, flat_rows = [], []
    for row, is_positive, is_valid in zip(scores, positives, valid):
        negatives = [s for s, p, v in zip(row, is_positive, is_valid) if v and not p]
        pairs = [s for s, p, v in zip(row, is_positive, is_valid) if v and p]
        if not pairs:
            continue
        negative_sum = sum(math.exp(s) for s in negatives)
        info_rows.append(sum(math.log(math.exp(s) + negative_sum) - s for s in pairs) / len(pairs))
        flat_rows.append(sum(math.log(negative_sum) - s for s in pairs) / len(pairs))
    return sum(info_rows) / len(info_rows), sum(flat_rows) / len(flat_rows)


def _eye_positives(rows: int, columns: int) -> list[list[bool]]:
    return [[i == j for j in range(columns)] for i in range(rows)]


# ----------------------------------------------------------------- values against float64 by hand
def test_single_positive_matches_hand_computation_and_cross_entropy():
    scores = _random_scores()
    targets = torch.tensor([0, 1, 2, 3, 4])
    info, flat = _brute_force(scores.tolist(), _eye_positives(5, 7), [[True] * 7] * 5)
    assert info_nce(scores, targets).item() == pytest.approx(info, rel=1e-12)
    assert flat_nce(scores, targets).item() == pytest.approx(flat, rel=1e-12)
    assert info_nce(scores, targets).item() == pytest.approx(F.cross_entropy(scores, targets).item(), rel=1e-12)
    terms = pair_terms(scores, targets)  # InfoNCE = log(1 + ξ) = softplus(log ξ), pair by pair (eq. 1, 5)
    torch.testing.assert_close(terms.log_one_plus_xi, F.softplus(terms.log_xi))


def test_flat_nce_can_be_negative_and_bool_targets_equal_int_targets():
    scores = torch.tensor([[9.0, 0.0, 1.0], [0.0, 2.0, 8.0]], dtype=torch.float64)
    targets = torch.tensor([0, 2])
    assert flat_nce(scores, targets).item() < 0 < info_nce(scores, targets).item()
    as_mask = F.one_hot(targets, 3).bool()
    assert flat_nce(scores, as_mask).item() == flat_nce(scores, targets).item()
    assert info_nce(scores, as_mask).item() == info_nce(scores, targets).item()


# ----------------------------------------------------------------- gradients
def test_stopgrad_form_has_the_log_form_gradient_and_the_official_flatclr_gradient():
    scores = _random_scores().requires_grad_(True)
    targets = torch.tensor([6, 1, 2, 0, 4])
    (log_form,) = torch.autograd.grad(flat_nce(scores, targets), scores)
    value = flat_nce_stopgrad(scores, targets)
    (stopgrad_form,) = torch.autograd.grad(value, scores)
    assert value.item() == pytest.approx(1.0)
    torch.testing.assert_close(stopgrad_form, log_form, rtol=1e-12, atol=1e-14)
    # Junya-Chen/FlatCLR: v = logsumexp(neg - pos); loss = exp(v - v.detach()).mean() - 1 + CE.detach()
    positive = scores.gather(1, targets[:, None])
    others = scores.masked_fill(F.one_hot(targets, 7).bool(), float("-inf"))
    v = torch.logsumexp(others - positive, dim=1)
    official = torch.exp(v - v.detach()).mean() - 1 + F.cross_entropy(scores, targets).detach()
    (official_gradient,) = torch.autograd.grad(official, scores)
    torch.testing.assert_close(official_gradient, log_form, rtol=1e-12, atol=1e-14)
    assert official.item() == pytest.approx(info_nce(scores, targets).item())  # its value is InfoNCE's


def test_info_and_flat_gradients_are_parallel_per_anchor():
    scores = _random_scores().requires_grad_(True)
    targets = torch.tensor([0, 1, 2, 3, 4])
    (info_gradient,) = torch.autograd.grad(info_nce(scores, targets), scores)
    (flat_gradient,) = torch.autograd.grad(flat_nce(scores, targets), scores)
    xi = pair_terms(scores.detach(), targets).log_xi.exp()
    # ∇ log(1 + ξ) = ξ / (1 + ξ) · ∇ log ξ, row by row
    torch.testing.assert_close(info_gradient, flat_gradient * (xi / (1 + xi))[:, None], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------- supervised, masked, symmetric vs brute force
def _module_brute_force(anchors, positives, negatives, labels, mask, symmetric, temperature=0.1):
    batch = anchors.shape[0]
    candidates = anchors.new_zeros(0, anchors.shape[1]) if negatives is None else negatives
    candidates = torch.cat([positives, candidates])
    scores = (F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T / temperature).tolist()
    width = len(scores[0])
    same = [[(labels[i] == labels[j]) if labels is not None else i == j for j in range(batch)] for i in range(batch)]
    is_positive = [same[i] + [False] * (width - batch) for i in range(batch)]
    valid = mask.tolist() if mask is not None else [[True] * width] * batch
    directions = [_brute_force(scores, is_positive, valid)]
    if symmetric:
        backward = (F.normalize(positives, dim=-1) @ F.normalize(anchors, dim=-1).T / temperature).tolist()
        transposed = [[same[j][i] for j in range(batch)] for i in range(batch)]
        valid_transposed = [[valid[j][i] for j in range(batch)] for i in range(batch)]
        directions.append(_brute_force(backward, transposed, valid_transposed))
    return [sum(values) / len(directions) for values in zip(*directions)]


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("case", ["in-batch", "negatives", "labels", "labels+mask+negatives"])
def test_losses_match_brute_force(case, symmetric):
    generator = torch.Generator().manual_seed(1)
    anchors = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    positives = anchors + 0.5 * torch.randn(6, 4, generator=generator, dtype=torch.float64)
    negatives = torch.randn(3, 4, generator=generator, dtype=torch.float64) if "negatives" in case else None
    labels = torch.tensor([0, 1, 0, 2, 1, 0]) if "labels" in case else None
    mask = None
    if "mask" in case:
        mask = torch.rand(6, 9, generator=generator) > 0.3
        mask[:, :6] |= torch.eye(6, dtype=torch.bool)
        mask[0, 0] = False  # anchor 0 loses its own positive, keeps label-mates 2 and 5 if unmasked
    expected_info, expected_flat = _module_brute_force(anchors, positives, negatives, labels, mask, symmetric)
    for loss_class, expected in ((InfoNCELoss, expected_info), (FlatNCELoss, expected_flat)):
        out = loss_class(temperature=0.1, symmetric=symmetric)(anchors, positives, negatives, labels, mask)
        assert out.loss.item() == pytest.approx(expected, rel=1e-10)
        assert out.info_nce.item() == pytest.approx(expected_info, rel=1e-10)
        assert out.flat_nce.item() == pytest.approx(expected_flat, rel=1e-10)
        assert out.info_nce.requires_grad is False


def test_masked_pairs_are_ignored_by_the_functional_losses():
    scores = _random_scores(3, 4)
    targets = torch.tensor([0, 1, 2])
    mask = torch.tensor([[True, False, True, True], [True, True, True, False], [False, False, False, False]])
    positives = _eye_positives(3, 4)
    info, flat = _brute_force(scores.tolist(), positives, mask.tolist())  # row 2 has no valid positive
    assert info_nce(scores, targets, mask).item() == pytest.approx(info, rel=1e-12)
    assert flat_nce(scores, targets, mask).item() == pytest.approx(flat, rel=1e-12)


def test_matches_pytorch_metric_learning_ntxent_on_the_same_pairs():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    generator = torch.Generator().manual_seed(2)
    anchors, positives = torch.randn(8, 5, generator=generator), torch.randn(8, 5, generator=generator)
    ntxent = losses.NTXentLoss(temperature=0.07)
    theirs = ntxent(anchors, torch.arange(8), ref_emb=positives, ref_labels=torch.arange(8))
    ours = InfoNCELoss(temperature=0.07)(anchors, positives).loss
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------- batch sizes
def test_any_batch_size_including_a_short_last_batch():
    loss_fn = FlatNCELoss(temperature=0.05)
    generator = torch.Generator().manual_seed(3)
    for batch in (8, 3, 2):  # e.g. 19 items in batches of 8: the last batch has 3
        anchors = torch.randn(batch, 16, generator=generator, requires_grad=True)
        out = loss_fn(anchors, torch.randn(batch, 16, generator=generator))
        out.loss.backward()
        assert torch.isfinite(anchors.grad).all() and anchors.grad.shape == (batch, 16)
    single = loss_fn(torch.randn(1, 16), torch.randn(1, 16), negatives=torch.randn(2, 16))
    assert torch.isfinite(single.loss)
    with pytest.raises(ValueError, match="FlatNCELoss: anchor 0 has a positive but no negative"):
        loss_fn(torch.randn(1, 16), torch.randn(1, 16))


def test_dot_similarity_and_scores_helper():
    anchors, candidates = torch.randn(4, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(similarity_scores(anchors, candidates, "dot", 2.0), anchors @ candidates.T * 2)
    out = InfoNCELoss(temperature=0.5, similarity="dot")(anchors, candidates[:4], negatives=candidates[4:])
    expected = F.cross_entropy(anchors @ candidates.T / 0.5, torch.arange(4))
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert FlatNCELoss(temperature=0.5).get_config_dict() == {"temperature": 0.5, "scale": 2.0,
                                                             "similarity": "cosine", "symmetric": False}


# ----------------------------------------------------------------- dtypes
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_values_and_gradients(dtype):
    generator = torch.Generator().manual_seed(4)
    anchors = torch.randn(16, 32, generator=generator)
    positives = anchors + 0.3 * torch.randn(16, 32, generator=generator)
    for loss_class in (InfoNCELoss, FlatNCELoss):
        reference = loss_class(temperature=0.05)(anchors.double(), positives.double())
        low_anchors = anchors.to(dtype).requires_grad_(True)
        out = loss_class(temperature=0.05)(low_anchors, positives.to(dtype))
        assert out.loss.dtype == dtype
        # bf16 keeps 8 bits of mantissa, fp16 11: the loss is right to a few units of its precision
        tolerance = 0.05 if dtype == torch.bfloat16 else 0.01
        assert out.loss.item() == pytest.approx(reference.loss.item(), rel=tolerance, abs=tolerance)
        out.loss.backward()
        assert low_anchors.grad.dtype == dtype and torch.isfinite(low_anchors.grad).all()


def test_gradient_errors_show_infonce_rounding_and_flatnce_accuracy():
    scores, targets = scores_with_xi(1e-9, num_candidates=32, rows=4)
    float32 = gradient_errors(scores, targets, torch.float32)
    assert float32["info_nce"].relative_error > 0.5  # the positive's component 1 - p_t is rounded to 0
    assert float32["flat_nce"].relative_error < 1e-5 and float32["flat_nce"].cosine > 0.99999
    easy = gradient_errors(*scores_with_xi(1e-1, num_candidates=32, rows=4), torch.float32)
    assert easy["info_nce"].relative_error < 1e-4
    half = gradient_errors(*scores_with_xi(1e-7, num_candidates=32, rows=4), torch.float16)
    assert half["info_nce"].relative_error == 1.0 and half["info_nce"].cosine == 0.0  # underflow: no gradient
    assert half["flat_nce"].relative_error < 1e-2
    kexue_form = gradient_errors(scores, targets, torch.float32, info_nce_form="kexue")
    assert kexue_form["info_nce"].relative_error > 0.5  # our info_nce rounds the same way


def test_scores_with_xi_has_the_requested_xi():
    scores, targets = scores_with_xi(1e-6, num_candidates=8, rows=3, seed=5)
    xi = pair_terms(scores, targets).log_xi.exp()
    torch.testing.assert_close(xi, torch.full((3,), 1e-6, dtype=torch.float64), rtol=1e-12, atol=0)


# ----------------------------------------------------------------- bad input
def test_bad_input_gets_clear_errors():
    scores = _random_scores(3, 4).float()
    targets = torch.tensor([0, 1, 2])
    nan_scores = scores.clone()
    nan_scores[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"flat_nce: `scores` contains NaN .*row 1, column 2"):
        flat_nce(nan_scores, targets)
    with pytest.raises(ValueError, match="info_nce: `scores` contains NaN"):
        info_nce(nan_scores, targets)
    with pytest.raises(ValueError, match=r"FlatNCELoss: `anchors` contains NaN"):
        FlatNCELoss()(torch.full((2, 3), float("nan")), torch.randn(2, 3))
    with pytest.raises(ValueError, match=r"int `targets` must have shape \[3\]"):
        flat_nce(scores, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="must index the 4 columns"):
        flat_nce(scores, torch.tensor([0, 1, 4]))
    with pytest.raises(TypeError, match="`targets` must be int"):
        flat_nce(scores, torch.zeros(3))
    with pytest.raises(ValueError, match="`mask` must have the shape"):
        flat_nce(scores, targets, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="no negative candidate"):
        flat_nce(scores, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="the batch is empty"):
        flat_nce(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="no .anchor, positive. pair"):
        flat_nce(scores, targets, torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="InfoNCELoss: `positives` must have one row per anchor"):
        InfoNCELoss()(torch.randn(4, 3), torch.randn(3, 3))
    with pytest.raises(ValueError, match="`positives` has dimension 5, `anchors` has 3"):
        InfoNCELoss()(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match=r"`labels` must have shape \[4\]"):
        InfoNCELoss()(torch.randn(4, 3), torch.randn(4, 3), labels=torch.zeros(3))
    for temperature in (0.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="`temperature` must be a finite number > 0"):
            FlatNCELoss(temperature=temperature)
    with pytest.raises(ValueError, match="`similarity` must be one of"):
        FlatNCELoss(similarity="euclid")


def test_bench_sides_compute_the_same_loss():
    pytest.importorskip("pytorch_metric_learning")
    from kexue.bench.flatnce import _embeddings, _kexue, _ntxent, benchmark_flatnce

    anchors, positives = _embeddings(16, seed=0)
    ours = _kexue(InfoNCELoss(0.05))(anchors, positives)
    torch.testing.assert_close(_ntxent()(anchors, positives), ours, rtol=1e-5, atol=1e-5)
    comparisons = benchmark_flatnce((8,), repeats=1)
    assert [c.anchor for c in comparisons] == ["kexue InfoNCELoss", "pytorch-metric-learning NTXentLoss"]
    assert all(c.ours.median > 0 and c.theirs.median > 0 for c in comparisons)


def test_monitored_infonce_keeps_its_digits_below_machine_epsilon():
    embeddings = torch.eye(4)  # cosine 1 with the positive, 0 with the 3 negatives
    out = InfoNCELoss(temperature=0.02)(embeddings, embeddings)  # ξ = 3 e^-50 ≈ 5.8e-22
    assert out.loss.item() == 0.0  # the cross-entropy value rounds to 0 in float32
    assert out.info_nce.item() == pytest.approx(3 * math.exp(-50), rel=1e-4)
    assert out.flat_nce.item() == pytest.approx(math.log(3) - 50, rel=1e-6)


# ----------------------------------------------------------------- training diagnostics (kexue.contrastive.diagnostics)
def test_exact_infonce_equals_infonce_and_keeps_its_float32_gradient_at_tiny_xi():
    scores, targets = _random_scores().requires_grad_(True), torch.tensor([0, 1, 2, 3, 4])
    (usual,) = torch.autograd.grad(info_nce(scores, targets), scores)
    (exact,) = torch.autograd.grad(info_nce_exact(scores, targets), scores)
    assert info_nce_exact(scores, targets).item() == pytest.approx(info_nce(scores, targets).item(), rel=1e-12)
    torch.testing.assert_close(exact, usual, rtol=1e-10, atol=1e-14)
    # ξ = 1e-9 is below float32's resolution: the usual form's gradient breaks, softplus(log ξ) does not
    tiny, tiny_targets = scores_with_xi(1e-9, num_candidates=8, rows=4)
    leaf64 = tiny.float().double().requires_grad_(True)
    (reference,) = torch.autograd.grad(info_nce_exact(leaf64, tiny_targets), leaf64)
    leaf32 = tiny.float().requires_grad_(True)
    (exact32,) = torch.autograd.grad(info_nce_exact(leaf32, tiny_targets), leaf32)
    (usual32,) = torch.autograd.grad(info_nce(leaf32, tiny_targets), leaf32)
    assert torch.allclose(exact32.double(), reference, rtol=1e-5, atol=0)
    assert (usual32.double() - reference).norm() / reference.norm() > 0.1


def test_batch_gradient_error_separates_the_float_regime_and_reports_xi():
    generator = torch.Generator().manual_seed(0)
    anchors = torch.randn(8, 16, generator=generator)
    error, log10_xi = batch_gradient_error(anchors, anchors + 0.3 * torch.randn(8, 16, generator=generator), 20.0)
    assert error < 1e-3
    # orthogonal embeddings, positives identical to anchors, scale 50: every ξ = 7 e^-50 ≈ 1.4e-21
    basis = torch.eye(16)[:8]
    error, log10_xi = batch_gradient_error(basis, basis.clone(), 50.0)
    assert error > 0.1
    assert log10_xi == pytest.approx(math.log10(7) - 50 / math.log(10), abs=1e-9)


def test_update_direction_cosines_match_whole_loss_gradients():
    generator = torch.Generator().manual_seed(1)
    anchors = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    positives = anchors + 0.5 * torch.randn(6, 5, generator=generator, dtype=torch.float64)
    result = update_direction_cosines(anchors, positives, scale=5.0)
    assert min(result["per_anchor"]) > 1 - 1e-12  # eq. (4): each anchor keeps its direction

    def batch_gradient(loss_fn):
        leaves = anchors.clone().requires_grad_(True), positives.clone().requires_grad_(True)
        scores = similarity_scores(*leaves, "cosine", 5.0)
        return torch.cat(torch.autograd.grad(loss_fn(scores, torch.arange(6)), leaves)).flatten()

    info, flat = batch_gradient(info_nce), batch_gradient(flat_nce)
    assert result["batch"] == pytest.approx(float(info @ flat / (info.norm() * flat.norm())), abs=1e-12)
    assert result["batch_exact"] == pytest.approx(result["batch"], abs=1e-12)
    assert result["batch"] < 0.999  # anchors with different ξ: the batch direction is reweighted
    xi = pair_terms(similarity_scores(anchors, positives, "cosine", 5.0), torch.arange(6)).log_xi
    assert result["log10_xi"] == pytest.approx((xi / math.log(10)).tolist())


def test_adam_eps_damping_matches_torch_adamw_steps():
    gradient = torch.tensor([1e-9, -3e-8, 2e-7, 5e-10])
    parameter = torch.nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.AdamW([parameter], lr=1.0, eps=1e-8, weight_decay=0.0)
    for step in range(3):
        parameter.grad = gradient * (step + 1)
        if step == 2:
            saved, before = copy.deepcopy(optimizer.state_dict()), parameter.detach().clone()
        optimizer.step()
    with_eps, damping = parameter.detach() - before, adam_eps_damping(optimizer)
    # replay the last step through torch's AdamW with eps = 0 (eps does not change m or v)
    parameter.data.copy_(before)
    optimizer.load_state_dict(saved)
    optimizer.param_groups[0]["eps"] = 0.0
    parameter.grad = gradient * 3
    optimizer.step()
    without_eps = parameter.detach() - before
    assert damping == pytest.approx(float(with_eps.norm() / without_eps.norm()), rel=1e-5)
    assert 0.05 < damping < 0.95  # gradients near eps: partly damped
    with pytest.raises(ValueError, match="no Adam state"):
        adam_eps_damping(torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))]))
