"""The committed kexue-small-zh checkpoint loads with our loader and with transformers, identically."""

import pytest
import torch

from kexue.checkpoints import small_zh_path
from kexue.data import load_tokenizer
from kexue.models import Transformer

SMALL_ZH = small_zh_path()
pytestmark = pytest.mark.skipif(SMALL_ZH is None, reason="checkpoints/kexue-small-zh has not been made yet")


def test_small_zh_loads_in_kexue_and_transformers_with_the_same_mlm_logits():
    from transformers import RoFormerForMaskedLM

    tokenizer = load_tokenizer(SMALL_ZH)
    batch = tokenizer(["北京是中国的首都。", "今天天气很好，我们去公园散步吧。"], padding=True, return_tensors="pt")
    ours = Transformer.from_pretrained(SMALL_ZH).eval()
    theirs = RoFormerForMaskedLM.from_pretrained(SMALL_ZH, attn_implementation="eager", dtype=torch.float32).eval()
    real = batch["attention_mask"].bool()
    with torch.inference_mode():
        out = ours(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"], mlm_positions=real)
        reference = theirs(**batch).logits[real]
    assert ours.config.position == "rope" and ours.nsp is not None and ours.config.num_layers == 4
    assert torch.allclose(out.mlm_logits, reference, atol=1e-3)


def test_small_zh_fills_an_easy_blank():
    """A pretrained model must beat chance by far on a frequent character in a common phrase."""
    tokenizer = load_tokenizer(SMALL_ZH)
    model = Transformer.from_pretrained(SMALL_ZH).eval()
    batch = tokenizer(["我们都是中国人，我爱我的祖国。"], return_tensors="pt")
    position = 5  # [CLS] 我 们 都 是 中 -> the "中" of 中国
    target = batch["input_ids"][0, position].item()
    batch["input_ids"][0, position] = tokenizer.mask_token_id
    with torch.inference_mode():
        logits = model(batch["input_ids"], batch["token_type_ids"], mlm_positions="all").mlm_logits
    rank = (logits[position] > logits[position, target]).sum().item()
    assert rank < 50, f"the right character ranks {rank} of {logits.shape[-1]}"
