"""Tests of kexue.univae: masks by perturbation, the latent bottleneck, KV-cached decoding, losses, save/load."""

from __future__ import annotations

import math

import pytest
import scipy.special
import torch

from kexue.models import Transformer, TransformerConfig
from kexue.univae import (GaussianBottleneck, KLSchedule, SentenceVAE, UniVAE, UniVAEConfig, VMFBottleneck,
                          VQBottleneck, log_bessel_iv, train_univae, univae_loss_fn, vmf_kl, vmf_mean_cosine,
                          wood_sample_w)
from kexue.univae.decoding import _cached_logits, _recomputed_logits, generate

VOCAB = 40
BOS, EOS, PAD = 2, 3, 0


def make_model(latent: str = "vmf", position: str = "rope", leakage: str = "fixed", seed: int = 0,
               num_layers: int = 3, **kwargs) -> UniVAE:
    torch.manual_seed(seed)
    backbone = Transformer(TransformerConfig(vocab_size=VOCAB, hidden_size=32, num_layers=num_layers, num_heads=4,
                                             intermediate_size=64, max_positions=64, position=position,
                                             nsp_head=False, pooler=False))
    config = UniVAEConfig(num_independent_layers=1, latent=latent, latent_dims=4, max_length=8,
                          length_leakage=leakage, **kwargs)
    return UniVAE(backbone, config).eval()


def sentences(*rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([row + [PAD] * (width - len(row)) for row in rows])
    return ids, (ids != PAD).long()


# ----------------------------------------------------------------- per-layer masks in kexue.models
def test_per_layer_mask_list_equals_single_mask_and_checks_length():
    model = make_model().transformer
    ids = torch.randint(4, VOCAB, (2, 5))
    mask = torch.rand(2, 1, 5, 5) > 0.3
    single = model(ids, attention_mask=mask).hidden_states
    listed = model(ids, attention_mask=[mask] * 3).hidden_states
    torch.testing.assert_close(single, listed, rtol=0, atol=0)
    other = model(ids, attention_mask=[mask, mask, torch.ones_like(mask)]).hidden_states
    assert not torch.allclose(single, other)
    with pytest.raises(ValueError, match="3 masks"):
        model(ids, attention_mask=[mask, mask])


# ----------------------------------------------------------------- mask layout by perturbation
def _layer_outputs(model: UniVAE, layout, perturb=None) -> list[torch.Tensor]:
    """Hidden states after every layer of the raw backbone under UniVAE masks; ``perturb(index, h)`` edits them."""
    outputs = []

    def hook(index, hidden):
        hidden = perturb(index, hidden) if perturb else hidden
        outputs.append(hidden)
        return hidden

    model.transformer(layout.input_ids, layout.token_type_ids, model.layer_masks(layout.token_type_ids, layout.real),
                      layout.position_ids, layer_hook=hook)
    return outputs


def test_decoder_never_sees_encoder_in_independent_layers():
    model = make_model()
    first = model.layout(*sentences([BOS, 5, 6, 7, EOS]))
    second = model.layout(*sentences([BOS, 9, 10, 11, EOS]))
    second.input_ids[:, 5:] = first.input_ids[:, 5:]  # same decoder half, different encoder half
    a, b = _layer_outputs(model, first), _layer_outputs(model, second)
    torch.testing.assert_close(a[0][:, 5:], b[0][:, 5:], rtol=0, atol=0)  # layer 0 is independent
    assert not torch.allclose(a[0][:, :5], b[0][:, :5])


def test_decoder_sees_encoder_only_through_cls_column_in_latent_layers():
    model = make_model()
    layout = model.layout(*sentences([BOS, 5, 6, 7, EOS]))
    base = _layer_outputs(model, layout)

    def noise_on(columns):
        def perturb(index, hidden):
            if index != 0:  # before latent layer 1
                return hidden
            hidden = hidden.clone()
            hidden[:, columns] += torch.randn_like(hidden[:, columns])
            return hidden
        return perturb

    tokens = _layer_outputs(model, layout, noise_on([1, 2, 3, 4]))
    torch.testing.assert_close(tokens[1][:, 5:], base[1][:, 5:], rtol=0, atol=0)
    assert not torch.allclose(tokens[1][:, 1:5], base[1][:, 1:5])  # the encoder itself did change
    cls = _layer_outputs(model, layout, noise_on([0]))
    assert not torch.allclose(cls[1][:, 5:], base[1][:, 5:])


def test_encoder_never_sees_decoder_and_decoder_is_causal():
    model = make_model()
    layout = model.layout(*sentences([BOS, 5, 6, 7, EOS]))
    changed = model.layout(*sentences([BOS, 5, 6, 7, EOS]))
    changed.input_ids[:, 8] = 20  # a late decoder token
    a, b = _layer_outputs(model, layout), _layer_outputs(model, changed)
    torch.testing.assert_close(a[-1][:, :8], b[-1][:, :8], rtol=0, atol=0)
    assert not torch.allclose(a[-1][:, 8:], b[-1][:, 8:])


# ----------------------------------------------------------------- the bottleneck
@pytest.mark.parametrize("latent", ["vmf", "gaussian", "vq"])
def test_changing_the_encoder_changes_the_decoder_only_through_z(latent):
    model = make_model(latent)
    ids_a, mask_a = sentences([BOS, 5, 6, 7, EOS])
    ids_b, mask_b = sentences([BOS, 12, 13, 14, EOS])
    z_a, z_b = model.encode(ids_a, mask_a), model.prior(1, torch.Generator().manual_seed(7))
    assert not torch.allclose(z_a, z_b)
    layout_a, layout_b = model.layout(ids_a, mask_a), model.layout(ids_b, mask_b)
    layout_b.input_ids[:, 5:] = layout_a.input_ids[:, 5:]  # decoder half of A after the encoder of B

    def decoder_states(layout, z):
        return model.transformer(layout.input_ids, layout.token_type_ids,
                                 model.layer_masks(layout.token_type_ids, layout.real), layout.position_ids,
                                 layer_hook=model.latent_hook(lambda layer, cls: z[:, layer])).hidden_states[:, 5:]

    torch.testing.assert_close(decoder_states(layout_a, z_a), decoder_states(layout_b, z_a), rtol=0, atol=1e-6)
    assert not torch.allclose(decoder_states(layout_b, z_a), decoder_states(layout_b, z_b))
    # and forward() routes the encoder to the decoder through exactly these latents
    torch.testing.assert_close(model(ids_a, mask_a).z, z_a)


# ----------------------------------------------------------------- KV-cached decoding
@pytest.mark.parametrize("position,leakage", [("rope", "fixed"), ("absolute", "condition")])
def test_kv_cached_decoding_equals_full_recomputation(position, leakage):
    model = make_model(position=position, leakage=leakage)
    z = model.prior(3, torch.Generator().manual_seed(1))
    offsets = model.decoder_offset(torch.tensor([4, 6, 8])) if leakage == "condition" else torch.full((3,), 8)
    cached, full = _cached_logits(model, z, BOS, offsets), _recomputed_logits(model, z, BOS, PAD, offsets)
    logits_cached, logits_full = next(cached), next(full)
    for _ in range(6):
        torch.testing.assert_close(logits_cached, logits_full, rtol=1e-4, atol=1e-5)
        token = torch.randint(4, VOCAB, (3,))
        logits_cached, logits_full = cached.send(token), full.send(token)
    kwargs = dict(bos_id=BOS, eos_id=EOS, pad_id=PAD, max_new_tokens=7, temperature=1.0, top_p=0.9,
                  lengths=torch.tensor([4, 6, 8]))
    with_cache = generate(model, z, generator=torch.Generator().manual_seed(0), **kwargs)
    without = generate(model, z, generator=torch.Generator().manual_seed(0), use_cache=False, **kwargs)
    assert with_cache.tolist() == without.tolist()


def test_generate_respects_min_tokens_and_pads_after_eos():
    model = make_model()
    with torch.no_grad():  # make [SEP] the most likely token everywhere
        model.transformer.mlm.bias[EOS] = 100.0
    z = model.prior(2)
    assert generate(model, z, bos_id=BOS, eos_id=EOS, pad_id=PAD).tolist() == [[EOS], [EOS]]
    ids = generate(model, z, bos_id=BOS, eos_id=EOS, pad_id=PAD, min_new_tokens=3, max_new_tokens=5)
    assert ids.shape == (2, 4) and (ids[:, 3] == EOS).all() and (ids[:, :3] != EOS).all()


# ----------------------------------------------------------------- latent families against hand computations
def test_log_bessel_and_vmf_kl_match_scipy():
    x = torch.tensor([0.05, 1.0, 7.5, 32.0, 300.0], dtype=torch.float64)
    for order in (0.0, 1.0, 7.0, 7.5):
        expected = torch.from_numpy(scipy.special.ive(order, x.numpy())).log() + x
        torch.testing.assert_close(log_bessel_iv(order, x), expected, rtol=1e-10, atol=1e-10)
    for kappa, dims in ((32.0, 16), (5.0, 3), (100.0, 8)):
        nu = dims / 2 - 1
        log_c = nu * math.log(kappa) - dims / 2 * math.log(2 * math.pi) - (math.log(scipy.special.ive(nu, kappa)) + kappa)
        mean_cos = scipy.special.ive(dims / 2, kappa) / scipy.special.ive(nu, kappa)
        log_area = math.log(2 * math.pi ** (dims / 2) / math.gamma(dims / 2))
        assert float(vmf_kl(torch.tensor(kappa), dims)) == pytest.approx(kappa * mean_cos + log_c + log_area, rel=1e-9)


def test_wood_sampler_has_the_vmf_mean_cosine():
    torch.manual_seed(0)
    for kappa, dims in ((32.0, 16), (2.0, 5)):
        w = wood_sample_w(torch.full((20000,), kappa), dims)
        expected = float(vmf_mean_cosine(torch.tensor(kappa), dims))
        assert float(w.mean()) == pytest.approx(expected, abs=4 * float(w.std()) / math.sqrt(20000))
        assert float(w.min()) > -1 and float(w.max()) < 1


def test_vmf_bottleneck_kl_is_constant_and_learned_kappa_gets_gradients():
    fixed = VMFBottleneck(8, 4, kappa=10.0)
    out = fixed(torch.randn(5, 8), sample=True)
    assert torch.allclose(out.z.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert float(out.regulariser) == pytest.approx(float(vmf_kl(torch.tensor(10.0), 4)), rel=1e-6)
    learned = VMFBottleneck(8, 4, kappa=10.0, learn_kappa=True)
    out = learned(torch.randn(5, 8), sample=True)
    (out.z.sum() + out.regulariser).backward()
    assert learned.log_kappa.grad is not None and learned.log_kappa.grad != 0


def test_gaussian_bottleneck_kl_matches_hand_formula():
    bottleneck = GaussianBottleneck(3, 2)
    hidden = torch.randn(4, 3)
    mean, log_var = bottleneck.down(hidden).double().chunk(2, dim=-1)
    expected = sum(0.5 * (m * m + math.exp(v) - 1 - v) for row_m, row_v in zip(mean.tolist(), log_var.tolist())
                   for m, v in zip(row_m, row_v)) / 4
    out = bottleneck(hidden, sample=False)
    assert float(out.regulariser.detach()) == pytest.approx(expected, rel=1e-5)
    torch.testing.assert_close(out.z, mean.float())
    torch.manual_seed(0)
    draws = torch.stack([bottleneck(hidden, sample=True).z for _ in range(4000)])
    torch.testing.assert_close(draws.std(0), (0.5 * log_var).exp().float(), atol=0.06, rtol=0.05)


def test_vq_bottleneck_loss_codes_and_straight_through():
    bottleneck = VQBottleneck(6, 3, codebook_size=5, commitment=0.25).train()
    hidden = torch.randn(7, 6, requires_grad=True)
    out = bottleneck(hidden, sample=True)
    z_e = torch.nn.functional.normalize(bottleneck.down(hidden.detach()).detach().double(), dim=-1)
    codes = torch.nn.functional.normalize(bottleneck.codebook.detach().double(), dim=-1)
    nearest = torch.cdist(z_e, codes).argmin(-1)  # brute force: nearest unit code = largest cosine
    assert out.codes.tolist() == nearest.tolist()
    distance = ((codes[nearest] - z_e) ** 2).sum(-1).mean()
    assert float(out.regulariser.detach()) == pytest.approx(1.25 * float(distance), rel=1e-5)
    torch.testing.assert_close(out.z.double(), codes[nearest], atol=1e-6, rtol=0)
    out.z.sum().backward()  # straight-through: the gradient reaches the encoder
    assert hidden.grad is not None and hidden.grad.abs().sum() > 0
    assert float(bottleneck.usage.sum()) == 7
    assert bottleneck.usage_stats()["used_fraction"] == float((bottleneck.usage > 0).float().mean())


def test_kl_schedule_and_loss_fn_assemble_the_parts():
    schedule = KLSchedule(warmup_steps=4, start_weight=0.0, free_bits=0.5)
    assert [schedule.weight(t) for t in (0, 2, 4, 9)] == [0.0, 0.5, 1.0, 1.0]
    model = make_model("gaussian").train()
    ids, mask = sentences([BOS, 5, 6, EOS], [BOS, 7, EOS])
    model.training_step.fill_(2)
    torch.manual_seed(3)
    loss, metrics = univae_loss_fn(schedule)(model, {"input_ids": ids, "attention_mask": mask})
    torch.manual_seed(3)
    out = model(ids, mask)
    expected = out.reconstruction + 0.5 * out.regulariser.clamp_min(0.5).sum()
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert int(model.training_step) == 3 and metrics["kl_weight"] == 0.5 and "kl_1" in metrics
    with pytest.raises(ValueError, match="free_bits"):
        KLSchedule(free_bits=-1)


def test_reconstruction_loss_is_cross_entropy_of_next_decoder_token():
    model = make_model()
    ids, mask = sentences([BOS, 5, 6, EOS], [BOS, 7, EOS])
    out = model(ids, mask)
    z = model.encode(ids, mask)
    total, count = 0.0, 0
    for row in range(2):
        tokens = ids[row][mask[row].bool()].tolist()
        for t in range(1, len(tokens)):  # teacher forcing, prefix by prefix, fresh decoding
            steps = _recomputed_logits(model, z[row:row + 1], BOS, PAD, torch.tensor([8]))
            logits = next(steps)
            for token in tokens[1:t]:
                logits = steps.send(torch.tensor([token]))
            total -= float(torch.log_softmax(logits[0].detach().double(), -1)[tokens[t]])
            count += 1
    assert float(out.reconstruction.detach()) == pytest.approx(total / count, rel=1e-4)


# ----------------------------------------------------------------- dtype, validation, save / load, training
def test_bf16_autocast_forward_is_finite_and_latents_stay_float32():
    model = make_model("gaussian")
    ids, mask = sentences([BOS, 5, 6, EOS])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, mask)
    assert out.z.dtype == torch.float32 and torch.isfinite(out.reconstruction)


def test_validation_names_the_argument():
    with pytest.raises(ValueError, match="num_independent_layers"):
        UniVAE(make_model().transformer, UniVAEConfig(num_independent_layers=3))
    with pytest.raises(ValueError, match="latent"):
        UniVAEConfig(latent="beta")
    model = make_model(leakage="condition")
    with pytest.raises(ValueError, match="lengths"):
        generate(model, model.prior(1), bos_id=BOS, eos_id=EOS, pad_id=PAD)
    with pytest.raises(ValueError, match="max_length"):
        model(*sentences(list(range(4, 14))))


@pytest.mark.parametrize("latent", ["vmf", "vq"])
def test_save_load_round_trip(tmp_path, latent):
    model = make_model(latent, learn_kappa=latent == "vmf")
    model.train()(*sentences([BOS, 5, 6, EOS]))  # VQ usage counts are part of the state
    model.eval()
    model.save_pretrained(tmp_path)
    loaded = UniVAE.load(tmp_path)
    assert loaded.config == model.config
    ids, mask = sentences([BOS, 5, 6, 7, EOS], [BOS, 8, EOS])
    torch.testing.assert_close(loaded.encode(ids, mask), model.encode(ids, mask), rtol=0, atol=0)
    torch.testing.assert_close(loaded(ids, mask).reconstruction, model(ids, mask).reconstruction, rtol=0, atol=0)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)


def test_from_pretrained_hf_checkpoint_and_sentence_api(tmp_path):
    backbone = make_model().transformer
    vocab = tmp_path / "vocab.txt"
    characters = "一二三四五六七八九十你我他她它好吗很是的不了人在有这中大来上国个到说们为子和地出道"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters[:VOCAB - 5]]),
                     encoding="utf-8")
    backbone.save_pretrained(tmp_path / "hf", vocab_file=vocab)
    model = UniVAE.from_pretrained(tmp_path / "hf", UniVAEConfig(num_independent_layers=1, latent_dims=4, max_length=8))
    torch.testing.assert_close(model.transformer.embeddings.word.weight, backbone.embeddings.word.weight)
    from kexue.data import load_tokenizer

    vae = SentenceVAE(model.eval(), load_tokenizer(vocab))
    generator = torch.Generator().manual_seed(0)
    assert len(vae.sample(3, generator=generator, temperature=1.0, top_p=0.9)) == 3
    assert len(vae.reconstruct(["你好吗", "我很好"])) == 2
    assert len(vae.interpolate("你好吗", "我很好", steps=3)) == 3
    assert len(vae.edit("你好吗", layers=[-1], count=2)) == 2
    with pytest.raises(ValueError, match="layers"):
        vae.edit("你好吗", layers=[5])


def test_training_through_the_trainer_resumes_the_kl_schedule(tmp_path):
    from kexue.training import TrainingConfig

    data = [[BOS, 5 + i % 7, 6 + i % 5, EOS] for i in range(12)]
    model = make_model("gaussian")
    config = TrainingConfig(output_dir=str(tmp_path), max_steps=3, learning_rate=1e-3, save_every=3, progress=False)
    result = train_univae(model, data, config, batch_size=4, schedule=KLSchedule(warmup_steps=10))
    assert result.step == 3 and int(model.training_step) == 3
    resumed = make_model("gaussian", seed=5)
    config = TrainingConfig(output_dir=str(tmp_path), max_steps=5, learning_rate=1e-3, progress=False)
    train_univae(resumed, data, config, batch_size=4, schedule=KLSchedule(warmup_steps=10), resume=True)
    assert int(resumed.training_step) == 5
