"""kexue.childtuning against hand computations, brute force and the wrapped optimizer run alone."""

from __future__ import annotations

import copy
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from kexue.childtuning import BernoulliMaskSampler, ChildTuning, fisher_information, fisher_mask


def _model(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 128), nn.Tanh(), nn.Linear(128, 8)).to(dtype)


def _set_grads(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    grads = {}
    for name, parameter in model.named_parameters():
        parameter.grad = torch.randn(parameter.shape, generator=generator).to(parameter.dtype)
        grads[name] = parameter.grad.clone()
    return grads


def _params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ----------------------------------------------------------------- the mask sampler
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_sampler_keep_rate_and_rescale(p):
    sampler = BernoulliMaskSampler(p, seed=1)
    assert abs(sampler.keep_probability - p) <= 2 ** -17
    values = sampler.sample(400_000).clone()
    kept = values > 0
    assert values.unique().numel() == 2 and values.min() == 0.0
    rate = kept.float().mean().item()
    assert abs(rate - p) < 4 * (p * (1 - p) / values.numel()) ** 0.5  # 4 standard errors
    assert torch.allclose(values[kept], torch.tensor(1 / sampler.keep_probability))


def test_sampler_is_seeded_and_uncorrelated():
    a, b, c = (BernoulliMaskSampler(0.5, seed=s) for s in (3, 3, 4))
    first = a.sample(50_000).clone()
    assert torch.equal(first, b.sample(50_000))
    assert not torch.equal(first, c.sample(50_000))
    second = a.sample(50_000)  # the next draw of the same sampler: independent of the first
    agreement = ((first > 0) == (second > 0)).float().mean().item()
    assert abs(agreement - 0.5) < 0.01


def test_sampler_rejects_bad_probability():
    with pytest.raises(ValueError, match="keep_probability"):
        BernoulliMaskSampler(0.0, seed=0)


# ----------------------------------------------------------------- F: gradient dropout
def test_f_mode_drops_and_rescales_the_gradient_sgd():
    model = _model()
    before = _params(model)
    optimizer = ChildTuning(torch.optim.SGD(model.parameters(), lr=1.0), "F", 0.3, seed=0)
    grads = _set_grads(model, seed=1)
    optimizer.step()
    q = optimizer.sampler.keep_probability
    moved, total = 0, 0
    for name, parameter in model.named_parameters():
        step = before[name] - parameter.detach()  # SGD, lr 1: the masked gradient itself
        kept = step != 0
        torch.testing.assert_close(step[kept], grads[name][kept] / q)
        moved, total = moved + int(kept.sum()), total + kept.numel()
    assert abs(moved / total - 0.3) < 0.02


def test_f_mode_adamw_momentum_moves_dropped_elements():
    """The post's point: under a momentum optimizer gradient dropout does not freeze the dropped elements."""
    model = _model()
    optimizer = ChildTuning(torch.optim.AdamW(model.parameters(), lr=1e-2), "F", 0.3, seed=0)
    _set_grads(model, seed=1)
    optimizer.step()
    before = _params(model)
    _set_grads(model, seed=2)
    optimizer.step()
    moved = sum(int((before[n] != p.detach()).sum()) for n, p in model.named_parameters())
    assert moved / sum(p.numel() for p in model.parameters()) > 0.45  # far more than the 30% kept


def test_exclude_by_name_keeps_the_full_gradient():
    model = _model()
    before = _params(model)
    optimizer = ChildTuning(torch.optim.SGD(model.parameters(), lr=1.0), "F", 0.3, seed=0,
                            named_parameters=model.named_parameters(), exclude=[r"^2\."])
    grads = _set_grads(model, seed=1)
    optimizer.step()
    for name, parameter in model.named_parameters():
        step = before[name] - parameter.detach()
        if name.startswith("2."):
            torch.testing.assert_close(step, grads[name])
        else:
            assert (step == 0).float().mean() > 0.5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_f_mode_low_precision(dtype):
    model = _model(dtype=dtype)
    optimizer = ChildTuning(torch.optim.SGD(model.parameters(), lr=1.0), "F", 0.3, seed=0)
    grads = _set_grads(model, seed=1)
    optimizer.step()
    q = optimizer.sampler.keep_probability
    kept_count = 0
    for name, parameter in model.named_parameters():
        assert parameter.dtype == dtype and torch.isfinite(parameter).all()
        kept = parameter.grad != 0
        expected = (grads[name].float() / q).to(dtype)  # 1/q rounded to the gradient's dtype: within 2^-8
        torch.testing.assert_close(parameter.grad[kept], expected[kept], rtol=2 ** -7, atol=0)
        kept_count += int(kept.sum())
    assert abs(kept_count / sum(p.numel() for p in model.parameters()) - 0.3) < 0.02


# ----------------------------------------------------------------- D: Fisher masks
def test_fisher_mask_keeps_exactly_the_top_k():
    generator = torch.Generator().manual_seed(0)
    fisher = {"a": torch.rand(30, 7, generator=generator), "b": torch.rand(101, generator=generator) * 2}
    masks = fisher_mask(fisher, 0.25)
    flat = torch.cat([fisher["a"].flatten(), fisher["b"]])
    k = round(0.25 * flat.numel())
    expected = torch.zeros_like(flat, dtype=torch.bool)
    expected[flat.topk(k).indices] = True
    assert torch.equal(torch.cat([masks["a"].flatten(), masks["b"]]), expected)


def test_fisher_mask_ties_go_to_the_earliest():
    fisher = {"a": torch.tensor([1.0, 2.0, 2.0]), "b": torch.tensor([2.0, 3.0, 0.0])}
    masks = fisher_mask(fisher, 0.5)  # keep 3: the 3.0, then the first two of the three 2.0s
    assert masks["a"].tolist() == [False, True, True] and masks["b"].tolist() == [False, True, False]
    assert all(m.all() for m in fisher_mask(fisher, 1.0).values())
    zeros = fisher_mask({"z": torch.zeros(10)}, 0.3)
    assert zeros["z"].tolist() == [True] * 3 + [False] * 7


def test_fisher_mask_rejects_bad_input():
    with pytest.raises(ValueError, match="reserve_p"):
        fisher_mask({"a": torch.ones(3)}, 1.5)
    with pytest.raises(ValueError, match="negative or NaN"):
        fisher_mask({"a": torch.tensor([1.0, -1.0])}, 0.5)
    with pytest.raises(ValueError, match="empty"):
        fisher_mask({}, 0.5)


def _classification_data(batches: int = 3, size: int = 5):
    generator = torch.Generator().manual_seed(0)
    return [(torch.randn(size, 64, generator=generator, dtype=torch.float64),
             torch.randint(0, 8, (size,), generator=generator)) for _ in range(batches)]


def _nll(model, batch):
    inputs, labels = batch
    return nn.functional.cross_entropy(model(inputs), labels)


def test_fisher_minibatch_and_per_example_against_brute_force():
    model = _model().double()
    data = _classification_data()
    names = [n for n, _ in model.named_parameters()]

    def squared_grads(batches):
        total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
        for batch in batches:
            grads = torch.autograd.grad(_nll(model, batch), list(model.parameters()))
            for name, grad in zip(names, grads):
                total[name] += grad ** 2
        return {n: t / len(batches) for n, t in total.items()}

    examples = [(x[i:i + 1], y[i:i + 1]) for x, y in data for i in range(len(y))]
    for per_example, reference in ((False, squared_grads(data)), (True, squared_grads(examples))):
        fisher = fisher_information(model, data, _nll, per_example=per_example, examples_per_call=2)
        for name in names:
            torch.testing.assert_close(fisher[name], reference[name].float(), rtol=1e-5, atol=1e-9)


def _d_wrapper(model, optimizer, reserve_p=0.3, **options):
    fisher = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(9)) for n, p in model.named_parameters()}
    masks = fisher_mask(fisher, reserve_p)
    wrapped = ChildTuning(optimizer, "D", reserve_p, named_parameters=model.named_parameters(),
                          gradient_mask=masks, **options)
    return wrapped, masks


@pytest.mark.parametrize("rescale", [True, False])
def test_d_mode_sgd_moves_exactly_the_masked_elements(rescale):
    model = _model()
    before = _params(model)
    optimizer, masks = _d_wrapper(model, torch.optim.SGD(model.parameters(), lr=1.0), rescale=rescale)
    grads = _set_grads(model, seed=1)
    optimizer.step()
    scale = 1 / 0.3 if rescale else 1.0
    for name, parameter in model.named_parameters():
        expected = before[name] - grads[name] * masks[name] * scale
        torch.testing.assert_close(parameter.detach(), expected)


@pytest.mark.parametrize("decay_frozen", [False, True])
def test_d_mode_weight_decay_on_frozen_elements(decay_frozen):
    model = _model()
    before = _params(model)
    optimizer, masks = _d_wrapper(model, torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.5),
                                  decay_frozen=decay_frozen)
    for seed in range(3):
        _set_grads(model, seed=seed)
        optimizer.step()
    for name, parameter in model.named_parameters():
        frozen = ~masks[name]
        if decay_frozen:  # AdamW's decoupled decay, three times: θ (1 - lr·wd)^3
            torch.testing.assert_close(parameter.detach()[frozen], before[name][frozen] * 0.95 ** 3)
        else:
            assert torch.equal(parameter.detach()[frozen], before[name][frozen])
        assert (parameter.detach()[~frozen] != before[name][~frozen]).all()


def test_d_mode_validation():
    model = _model()
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    with pytest.raises(ValueError, match="gradient_mask"):
        ChildTuning(sgd, "D", 0.3, named_parameters=model.named_parameters())
    with pytest.raises(ValueError, match="named_parameters"):
        ChildTuning(sgd, "D", 0.3, gradient_mask={"0.weight": torch.ones(128, 64, dtype=torch.bool)})
    with pytest.raises(ValueError, match="shape"):
        ChildTuning(sgd, "D", 0.3, named_parameters=model.named_parameters(),
                    gradient_mask={"0.weight": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="not among"):
        ChildTuning(sgd, "D", 0.3, named_parameters=model.named_parameters(),
                    gradient_mask={"nope": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="mode"):
        ChildTuning(sgd, "E", 0.3)
    with pytest.raises(ValueError, match="reserve_p"):
        ChildTuning(sgd, "F", 0.0)
    with pytest.raises(TypeError, match="optimizer"):
        ChildTuning(model, "F", 0.3)


# ----------------------------------------------------------------- update dropout
@pytest.mark.parametrize("make_optimizer", [
    lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
], ids=["adamw", "sgd-momentum"])
def test_update_dropout_against_the_bare_optimizer(make_optimizer):
    model = _model()
    reference = copy.deepcopy(model)
    wrapped = ChildTuning(make_optimizer(model.parameters()), "update", 0.3, seed=0)
    bare = make_optimizer(reference.parameters())
    q = wrapped.sampler.keep_probability
    for seed in range(3):
        _set_grads(model, seed)
        _set_grads(reference, seed)
        before = _params(model)
        # the bare optimizer, started from the same parameters, gives the full update θ_new - θ_old
        with torch.no_grad():
            for p, r in zip(model.parameters(), reference.parameters()):
                r.copy_(p)
        wrapped.step()
        bare.step()
        dropped_count = 0
        for (name, parameter), full in zip(model.named_parameters(), reference.parameters()):
            new = parameter.detach()
            dropped = new == before[name]
            assert torch.equal(new[dropped], before[name][dropped])  # bit-identical, not just close
            expected = before[name] + (full.detach() - before[name]) / q
            torch.testing.assert_close(new[~dropped], expected[~dropped], rtol=1e-5, atol=1e-6)
            dropped_count += int(dropped.sum())
        assert abs(dropped_count / sum(p.numel() for p in model.parameters()) - 0.7) < 0.02


# ----------------------------------------------------------------- state, schedulers, training loop
@pytest.mark.parametrize("mode", ["F", "D", "update"])
def test_state_dict_round_trip_continues_identically(mode):
    def build(model):
        adamw = torch.optim.AdamW(model.parameters(), lr=1e-2)
        if mode == "D":
            return _d_wrapper(model, adamw)[0]
        return ChildTuning(adamw, mode, 0.4, seed=5)

    model = _model()
    optimizer = build(model)
    for seed in range(2):
        _set_grads(model, seed)
        optimizer.step()
    state = copy.deepcopy(optimizer.state_dict())
    twin = copy.deepcopy(model)
    twin_optimizer = build(twin)
    twin_optimizer.load_state_dict(state)
    for seed in (7, 8):
        _set_grads(model, seed)
        _set_grads(twin, seed)
        optimizer.step()
        twin_optimizer.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)


def test_load_state_dict_refuses_another_mode():
    model = _model()
    saved = ChildTuning(torch.optim.AdamW(model.parameters()), "F", 0.3, seed=0).state_dict()
    with pytest.raises(ValueError, match="mode"):
        ChildTuning(torch.optim.AdamW(model.parameters()), "update", 0.3, seed=0).load_state_dict(saved)


def test_scheduler_and_trainer_drive_the_wrapped_optimizer(tmp_path):
    from kexue.training import Trainer, TrainingConfig

    model = _model()
    optimizer = ChildTuning(torch.optim.AdamW(model.parameters(), lr=1.0), "F", 0.3, seed=0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    assert optimizer.optimizer.param_groups[0]["lr"] == 0.5  # the groups are shared, not copied
    del scheduler
    data = [(torch.randn(4, 64), torch.randint(0, 8, (4,))) for _ in range(3)]
    config = TrainingConfig(output_dir=str(tmp_path), max_steps=4, learning_rate=1e-3, progress=False)
    factory = lambda groups: ChildTuning(torch.optim.AdamW(groups, lr=1e-3), "update", 0.3, seed=0)
    result = Trainer(model, lambda m, b: (_nll(m, b), {}), data, config, optimizer=factory).fit()
    assert result.step == 4
    resumed = Trainer(model, lambda m, b: (_nll(m, b), {}), data,
                      TrainingConfig(output_dir=str(tmp_path), max_steps=6, learning_rate=1e-3, progress=False),
                      optimizer=factory).fit(resume=True)
    assert resumed.step == 6


# ----------------------------------------------------------------- replicas
def test_same_seed_same_masks_on_two_replicas():
    models = [_model(), _model()]
    wrapped = [ChildTuning(torch.optim.AdamW(m.parameters(), lr=1e-2), "update", 0.3, seed=11) for m in models]
    for seed in range(2):
        for model, optimizer in zip(models, wrapped):
            _set_grads(model, seed)
            optimizer.step()
    for a, b in zip(*(m.parameters() for m in models)):
        assert torch.equal(a, b)


def _replica(rank: int, world_size: int, port: int, queue) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    torch.manual_seed(rank)  # different global RNGs: the seed must come from rank 0
    model = _model()
    optimizer = ChildTuning(torch.optim.SGD(model.parameters(), lr=1.0), "F", 0.5)
    _set_grads(model, seed=0)
    optimizer.step()
    queue.put((rank, optimizer.sampler.seed, [(p.grad != 0).sum().item() for p in model.parameters()]))
    dist.destroy_process_group()


def test_default_seed_is_shared_under_torch_distributed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_replica, args=(rank, 2, port, queue)) for rank in range(2)]
    for process in processes:
        process.start()
    results = sorted(queue.get(timeout=120) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    assert results[0][1:] == results[1][1:]


def test_per_example_fisher_runs_through_the_kexue_transformer():
    """vmap over our backbone (RoPE, SDPA, masks): per-example Fisher equals batches of one."""
    from kexue.experiments.classification import SentenceClassifier, classification_loss
    from kexue.models import Transformer, TransformerConfig

    config = TransformerConfig(vocab_size=100, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                               position="rope")
    torch.manual_seed(0)
    model = SentenceClassifier(Transformer(config), 2).eval()
    ids = torch.randint(1, 100, (4, 7))
    ids[1, 5:] = 0
    batch = {"input_ids": ids, "token_type_ids": torch.zeros_like(ids), "attention_mask": (ids != 0).long(),
             "labels": torch.tensor([0, 1, 1, 0])}
    loss = lambda m, b: classification_loss(m, b)[0]
    per_example = fisher_information(model, [batch], loss, per_example=True)
    singles = fisher_information(model, [{k: v[i:i + 1] for k, v in batch.items()} for i in range(4)], loss)
    for name, value in singles.items():
        torch.testing.assert_close(per_example[name], value, rtol=1e-4, atol=1e-10)
