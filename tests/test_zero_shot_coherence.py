"""kexue.zero_shot.coherence: the AUC against scikit-learn and brute force, the pair draw, the end-to-end figures."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from kexue.zero_shot import NSPScorer, coherence_auc, split_sentences
from kexue.zero_shot.coherence import NEGATIVE_KINDS, auc, coherence_pairs

torch.set_num_threads(1)

PHRASES = ["我们手头目前都比较紧", "音质很差亏大了", "离线地图导航功能不错", "种植体周围炎的治疗", "张浃说到义军时",
           "他连声说不可挡", "提出一种点火提前角控制方法", "这个要求简直是天方夜谭"]


def _brute_force_auc(positive, negative) -> float:
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_equals_scikit_learn_and_brute_force_with_ties(seed):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    positive = rng.integers(0, 6, 40).astype(float)  # few distinct values: many ties
    negative = rng.integers(0, 5, 30).astype(float)
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[positive, negative])
    assert auc(positive, negative) == pytest.approx(expected, abs=1e-12)
    assert auc(positive, negative) == pytest.approx(_brute_force_auc(positive, negative), abs=1e-12)
    rows = auc(np.stack([positive, positive[::-1] + 1]), np.stack([negative, negative]))  # one AUC per row
    assert rows.tolist() == pytest.approx([expected, auc(positive + 1, negative)], abs=1e-12)
    with pytest.raises(ValueError, match="both sides"):
        auc(positive, [])


def test_split_sentences_keeps_punctuation_and_closing_quotes():
    assert split_sentences("他说：“走吧！”我们就走了。真的吗？是的") == ["他说：“走吧！”", "我们就走了。", "真的吗？", "是的"]
    assert split_sentences("没有句号的一句话") == ["没有句号的一句话"]
    assert split_sentences("……") == []


def _texts(source: int, count: int) -> list[str]:
    rng = random.Random(source)
    return ["。".join(rng.sample(PHRASES, 3)) + f"。第{index}句结束。" for index in range(count)]


def test_pairs_are_adjacent_and_negatives_come_from_where_they_say():
    texts = {"a": _texts(0, 6), "b": _texts(1, 5), "short": ["一句。"]}  # "short" has no pair: dropped
    pairs = coherence_pairs(texts, n=4, seed=3)
    assert set(pairs) == {"a", "b"}
    sentences = {source: [split_sentences(text) for text in items] for source, items in texts.items()}
    for source, kinds in pairs.items():
        assert len(kinds["true"]) == 4 and all(len(kinds[kind]) == 4 for kind in NEGATIVE_KINDS)
        other = "b" if source == "a" else "a"
        for (a, b), (a_same, c_same), (a_other, c_other), swapped in zip(
                kinds["true"], kinds["same_source"], kinds["other_source"], kinds["swapped"]):
            home = next(i for i, s in enumerate(sentences[source]) if any(x == a and y == b for x, y in zip(s, s[1:])))
            assert a_same == a_other == a and swapped == (b, a)
            assert c_same not in sentences[source][home] and any(c_same in s for s in sentences[source])
            assert any(c_other in s for s in sentences[other])
    assert coherence_pairs(texts, n=4, seed=3) == pairs
    assert coherence_pairs(texts, n=4, seed=4) != pairs
    more = coherence_pairs({**texts, "c": _texts(2, 4)}, n=4, seed=3)  # another source leaves "a"'s draw alone
    alone = coherence_pairs({"a": texts["a"]}, n=4, seed=3)
    for kind in ("true", "same_source", "swapped"):
        assert more["a"][kind] == alone["a"][kind] == pairs["a"][kind]
    assert alone["a"]["other_source"] == []


def _data_root(tmp_path):
    root = tmp_path / "data" / "fewclue"
    for task, build in (("eprstmt", lambda i, text: {"id": i, "sentence": text, "label": "Positive"}),
                        ("csl", lambda i, text: {"id": i, "abst": text, "keyword": ["点火"], "label": "1"})):
        (root / task).mkdir(parents=True)
        lines = [json.dumps(build(i, text), ensure_ascii=False) for i, text in enumerate(_texts(len(task), 12))]
        (root / task / "dev_few_all.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root.parent


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import transformers

    folder = tmp_path_factory.mktemp("ckpt")
    characters = sorted({c for text in _texts(3, 12) + _texts(7, 12) for c in text})
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters]) + "\n",
                                      encoding="utf-8")
    config = transformers.BertConfig(vocab_size=5 + len(characters), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64, max_position_embeddings=128,
                                     initializer_range=0.3)
    torch.manual_seed(0)
    transformers.BertForPreTraining(config).eval().save_pretrained(folder)
    return folder


def test_coherence_auc_end_to_end_matches_scores_of_the_drawn_pairs(tmp_path, checkpoint, capsys):
    from kexue.cli import main
    from kexue.zero_shot.coherence import _task_texts

    root = _data_root(tmp_path)
    result = coherence_auc(checkpoint, root, n=10, seed=0, tasks=("eprstmt", "csl"))
    assert result["anchors"] == {"eprstmt": 10, "csl": 10} and set(result["auc"]) == set(NEGATIVE_KINDS)
    scorer = NSPScorer.from_pretrained(checkpoint)
    pairs = coherence_pairs({task: _task_texts(task, "dev_few_all", root) for task in ("eprstmt", "csl")}, 10, 0)
    keys = [(task, kind) for task, kinds in pairs.items() for kind in kinds]
    flat = scorer.score([pair for task, kind in keys for pair in pairs[task][kind]]).double().numpy()
    ends = np.cumsum([len(pairs[task][kind]) for task, kind in keys])  # one call: equal pairs, equal scores
    scores = dict(zip(keys, np.split(flat, ends[:-1])))
    for task in pairs:
        for kind in NEGATIVE_KINDS:
            assert result["per_task"][task][kind] == pytest.approx(auc(scores[task, "true"], scores[task, kind]), abs=1e-6)
    for kind in NEGATIVE_KINDS:
        pooled = auc(np.r_[scores["eprstmt", "true"], scores["csl", "true"]],
                     np.r_[scores["eprstmt", kind], scores["csl", kind]])
        assert result["auc"][kind] == pytest.approx(pooled, abs=1e-6)
        low, high = result["interval"][kind]
        assert low <= result["auc"][kind] <= high
    assert len({round(v, 6) for v in result["auc"].values()}) > 1  # random weights still separate the kinds
    assert main(["zeroshot", "fewclue", "--model", str(checkpoint), "--nsp-auc", "--task", "csl", "--data", str(root),
                 "--auc-anchors", "10", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["per_task"]) == {"csl"} and "other_source" not in printed["auc"]  # one source: no other
    assert printed["per_task"]["csl"]["swapped"] == pytest.approx(result["per_task"]["csl"]["swapped"], abs=1e-9)
    (root / "fewclue" / "bustm").mkdir()
    (root / "fewclue" / "bustm" / "dev_few_all.json").write_text(json.dumps(
        {"id": 0, "sentence1": "我们手头宽裕", "sentence2": "音质很差", "label": "0"}, ensure_ascii=False) + "\n")
    with pytest.raises(ValueError, match="two adjacent sentences"):  # one-sentence texts only
        coherence_auc(checkpoint, root, tasks=("bustm",))
