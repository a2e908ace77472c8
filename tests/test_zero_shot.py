"""kexue.zero_shot against transformers, hand-set weights, brute force and the FewCLUE fixtures."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from kexue.data import load_tokenizer, read_fewclue
from kexue.models import Transformer, TransformerConfig
from kexue.data import DataNotFoundError
from kexue.zero_shot import (MLMScorer, NoNSPHeadError, NSPScorer, NSPZeroShotClassifier, PairEncoder,
                             PETZeroShotClassifier, SamplesContrast, evaluate_task, slot_and_words,
                             uniform_prior_assignment)
from kexue.zero_shot.fewclue import TASKS, nsp_queries, pet_queries

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

FEWCLUE = Path(__file__).parent / "fixtures" / "data" / "fewclue"
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAIRS = [("这是一则体育新闻", "梅西梅开二度"), ("好评", "音质很差，亏大了。"), ("差", "离线地图导航功能不错的软件"),
         ("我们手头宽裕", "我们手头目前都比较紧"), ("东西", "好")]


# ----------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def vocab(tmp_path_factory) -> Path:
    """Specials plus every character of the FewCLUE fixtures and of the templates and patterns used here."""
    text = "".join(path.read_text(encoding="utf-8") for path in FEWCLUE.rglob("*") if path.is_file())
    text += "".join(a + b for a, b in PAIRS) + "这是一则新闻篇类论文款软件次买的东西很好差评不错上文中指民生就都关键词可能的，？"
    characters = sorted({c for c in text if "\u4e00" <= c <= "\u9fff" or c in "，？。"})
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(SPECIAL + characters) + "\n", encoding="utf-8")
    return path


def _perturbed(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():  # non-trivial biases and norms, so a mis-mapped key shows
        for name, param in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                param.add_(0.1 * torch.randn_like(param))
    return model.eval()


def _hf_model(model_class_name: str, vocab_size: int, seed: int = 0):
    import transformers

    config = transformers.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64, hidden_dropout_prob=0.0,
                                     attention_probs_dropout_prob=0.0, initializer_range=0.3)  # P(IsNext) spread out
    torch.manual_seed(seed)
    return _perturbed(getattr(transformers, model_class_name)(config))


def _checkpoint(folder: Path, model, vocab: Path) -> Path:
    model.save_pretrained(folder)
    shutil.copy(vocab, folder / "vocab.txt")
    return folder


def _vocab_size(vocab: Path) -> int:
    return len(vocab.read_text(encoding="utf-8").split())


@pytest.fixture(scope="module")
def tiny_checkpoint(vocab, tmp_path_factory) -> Path:
    """A random BertForPreTraining (MLM + NSP heads) saved with the fixture vocabulary."""
    return _checkpoint(tmp_path_factory.mktemp("tiny"), _hf_model("BertForPreTraining", _vocab_size(vocab)), vocab)


def _reference_p_is_next(model, tokenizer, pairs) -> torch.Tensor:
    """One forward per pair, as the reference implementation does, everything by keyword."""
    probabilities = []
    with torch.no_grad():
        for first, second in pairs:
            encoded = tokenizer(first, second, return_tensors="pt")
            output = model(input_ids=encoded["input_ids"], token_type_ids=encoded["token_type_ids"],
                           attention_mask=encoded["attention_mask"])
            logits = getattr(output, "seq_relationship_logits", None)
            logits = output.logits if logits is None else logits
            probabilities.append(torch.softmax(logits.double(), dim=-1)[0, 0])
    return torch.stack(probabilities)


# ----------------------------------------------------------------- scorer against transformers
@pytest.mark.parametrize("model_class_name", ["BertForNextSentencePrediction", "BertForPreTraining"])
def test_scorer_matches_transformers_through_our_model_and_theirs(tmp_path, vocab, model_class_name):
    hf_model = _hf_model(model_class_name, _vocab_size(vocab))
    tokenizer = load_tokenizer(vocab)
    expected = _reference_p_is_next(hf_model, tokenizer, PAIRS)
    ours = NSPScorer.from_pretrained(_checkpoint(tmp_path / "ckpt", hf_model, vocab), max_tokens=40)
    theirs = NSPScorer(hf_model, tokenizer, max_tokens=40)  # small batches: bucketing and padding exercised
    torch.testing.assert_close(ours.score(PAIRS).double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(theirs.score(PAIRS).double(), expected, atol=1e-5, rtol=0)
    for pair, encoded in zip(PAIRS, ours.encoder.encode_many(PAIRS)):  # same ids and types as transformers
        reference = tokenizer(*pair)
        assert list(encoded.input_ids) == reference["input_ids"]
        assert list(encoded.token_type_ids) == reference["token_type_ids"]
    assert expected.max() - expected.min() > 0.1  # the weights make the pairs differ, so the test can fail
    empty = ours.encoder.encode_many([("东西", "")])[0]  # an empty segment B keeps its [SEP] (content-free input)
    assert empty.input_ids == (tokenizer.cls_token_id, *tokenizer("东西", add_special_tokens=False)["input_ids"],
                               tokenizer.sep_token_id, tokenizer.sep_token_id)


def test_scores_do_not_depend_on_batching_and_dtypes_stay_float32(tiny_checkpoint):
    one_by_one = NSPScorer.from_pretrained(tiny_checkpoint, max_tokens=1).score(PAIRS)
    scorer = NSPScorer.from_pretrained(tiny_checkpoint)
    torch.testing.assert_close(scorer.score(PAIRS), one_by_one, atol=1e-6, rtol=0)
    scorer.model.to(torch.bfloat16)
    low = scorer.score(PAIRS)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, one_by_one, atol=0.03, rtol=0)


def _hand_set_model() -> Transformer:
    """Uniform attention, identity value/output/pooler, token type 1 = e_0, NSP logits (+x_0, -x_0).

    The pooled [CLS] is then tanh(LN(e_0)) = tanh(sqrt(3)) e_0-ish when segment B has type 1, so
    P(IsNext) = sigmoid(2 tanh(sqrt(3))) ~ 0.867; with all-zero token types it is exactly 0.5; with the
    IsNext index flipped it would be 0.133.
    """
    config = TransformerConfig(vocab_size=8, hidden_size=4, num_layers=1, num_heads=1, intermediate_size=4,
                               max_positions=16, position="absolute", dropout=0.0, attention_dropout=0.0)
    model = Transformer(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0 if "norm.weight" in name else 0.0)
        model.embeddings.token_type.weight[1, 0] = 1.0
        for layer in ("value", "output"):
            getattr(model.layers[0].attention, layer).weight.copy_(torch.eye(4))
        model.pooler.weight.copy_(torch.eye(4))
        model.nsp.weight[0, 0], model.nsp.weight[1, 0] = 1.0, -1.0
    return model


def test_token_types_and_is_next_index_pinned_with_hand_set_weights(tmp_path, vocab):
    from transformers import BertForNextSentencePrediction

    model = _hand_set_model()
    tokens = SPECIAL + ["好", "差", "评"]
    (tmp_path / "v.txt").write_text("\n".join(tokens), encoding="utf-8")
    tokenizer = load_tokenizer(tmp_path / "v.txt")
    expected = torch.sigmoid(2 * torch.tanh(torch.tensor(3.0).sqrt())).item()
    assert NSPScorer(model, tokenizer).score([("好评", "差")]).item() == pytest.approx(expected, abs=1e-5)
    batch = tokenizer("好评", "差", return_tensors="pt")  # the pitfall: no token types -> no signal at all
    assert torch.softmax(model(batch["input_ids"]).nsp_logits, -1)[0, 0].item() == pytest.approx(0.5, abs=1e-6)
    config = model.config.replace(mlm_head=False)
    hand = Transformer(config).eval()
    hand.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("mlm.")})
    hand.save_pretrained(tmp_path / "hand", vocab_file=tmp_path / "v.txt")
    hf = BertForNextSentencePrediction.from_pretrained(tmp_path / "hand").eval()
    assert NSPScorer(hf, tokenizer).score([("好评", "差")]).item() == pytest.approx(expected, abs=1e-5)


def test_models_without_nsp_head_get_a_clear_error(tmp_path, vocab):
    config = TransformerConfig(vocab_size=10, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=8,
                               nsp_head=False)
    tokenizer = load_tokenizer(vocab)
    with pytest.raises(NoNSPHeadError, match="bert-base-chinese"):
        NSPScorer(Transformer(config), tokenizer)
    with pytest.raises(NoNSPHeadError, match="BertModel, which has no NSP head"):
        NSPScorer(_hf_model("BertModel", _vocab_size(vocab)), tokenizer)
    _hf_model("BertModel", _vocab_size(vocab)).save_pretrained(tmp_path / "plain")
    with pytest.raises(NoNSPHeadError, match="no NSP head"):
        NSPScorer.from_pretrained(tmp_path / "plain")
    (tmp_path / "roberta").mkdir()
    (tmp_path / "roberta" / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(NoNSPHeadError, match="RoBERTa"):
        NSPScorer.from_pretrained(tmp_path / "roberta")


# ----------------------------------------------------------------- encoding details
def test_soft_positions_put_the_candidate_at_the_blank_and_truncation_keeps_anchors(vocab):
    encoder = PairEncoder(load_tokenizer(vocab), max_length=64)
    pair = encoder.encode_many([("天方", "这个要求#idiom#简直")], blank="#idiom#")[0]
    # [CLS] 天 方 [SEP] 这 个 要 求 简 直 [SEP] read as [CLS] [SEP] 这 个 要 求 天 方 简 直 [SEP]
    assert pair.position_ids == (0, 6, 7, 1, 2, 3, 4, 5, 8, 9, 10)
    assert pair.token_type_ids == (0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1)
    mask_id = load_tokenizer(vocab).mask_token_id
    short = PairEncoder(load_tokenizer(vocab), max_length=12, anchor_token_id=mask_id)
    long_text = "我们手头目前都比较紧" * 2 + "[MASK][MASK]" + "我们手头宽裕" * 3
    encoded = short.encode_many([("好评", long_text)])[0]
    assert len(encoded.input_ids) == 12 and encoded.input_ids.count(mask_id) == 2


# ----------------------------------------------------------------- samples-contrast against brute force
def _brute_force(scores: list[float], num_labels: int) -> list[int]:
    """The labelling with the reference's group sizes maximising sum(label * score), by enumeration."""
    size = len(scores) // num_labels
    multiset = [label for label in range(num_labels - 1) for _ in range(size)]
    multiset += [num_labels - 1] * (len(scores) - len(multiset))
    best = max(set(itertools.permutations(multiset)), key=lambda labels: sum(l * s for l, s in zip(labels, scores)))
    return list(best)


@pytest.mark.parametrize("seed,size,num_labels", [(0, 7, 3), (1, 6, 2), (2, 8, 3), (3, 5, 2)])
def test_uniform_prior_assignment_equals_brute_force_and_thresholds_reproduce_it(seed, size, num_labels):
    scores = torch.rand(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assignment = uniform_prior_assignment(scores, num_labels)
    assert assignment.tolist() == _brute_force(scores.tolist(), num_labels)
    mapping = SamplesContrast(num_labels)
    assert mapping.fit_predict(scores).tolist() == assignment.tolist()
    assert mapping.predict(scores).tolist() == assignment.tolist()  # midpoints: dev relabels to itself
    fresh = torch.rand(20, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
    by_hand = [sum(float(value) >= float(t) for t in mapping.thresholds_) for value in fresh]
    assert mapping.predict(fresh).tolist() == by_hand


def test_samples_contrast_validation():
    with pytest.raises(ValueError, match="`num_labels` must be at least 2"):
        uniform_prior_assignment(torch.rand(4), 1)
    with pytest.raises(RuntimeError, match="not fitted"):
        SamplesContrast(2).predict(torch.rand(3))
    assert uniform_prior_assignment(torch.tensor([0.3, 0.1]), 3).tolist() == [2, 2]  # fewer samples than labels


# ----------------------------------------------------------------- classifiers
def test_classifier_ensembles_calibrates_and_maps_both_ways(tiny_checkpoint):
    scorer = NSPScorer.from_pretrained(tiny_checkpoint)
    texts = ["音质很差，亏大了。", "离线地图导航", "我们手头宽裕", "种植体周围炎的治疗"]
    templates = ["这是一则{label}新闻", ["好评", "差评"]]
    plain = NSPZeroShotClassifier(scorer, ["体育", "财经"], templates)
    expected = torch.stack([scorer.log_prob([("这是一则体育新闻", t), ("这是一则财经新闻", t)]) +
                            scorer.log_prob([("好评", t), ("差评", t)]) for t in texts]) / 2
    torch.testing.assert_close(plain.scores(texts), expected)
    calibrated = NSPZeroShotClassifier(scorer, ["体育", "财经"], templates, calibrate=True, content_free=("",))
    offset = (scorer.log_prob([("这是一则体育新闻", ""), ("这是一则财经新闻", "")]) +
              scorer.log_prob([("好评", ""), ("差评", "")])) / 2
    torch.testing.assert_close(calibrated.scores(texts), expected - offset)
    samples = NSPZeroShotClassifier(scorer, ["false", "true"], "上文中", prompt_position="suffix", mapping="samples")
    scores = scorer.log_prob([(t, "上文中") for t in texts])
    assert samples.fit_predict(texts).tolist() == uniform_prior_assignment(scores, 2).tolist()
    assert samples.fit(texts).predict(texts).tolist() == uniform_prior_assignment(scores, 2).tolist()
    with pytest.raises(ValueError, match="`calibrate=True` has no effect"):
        NSPZeroShotClassifier(scorer, ["a", "b"], "x", calibrate=True, mapping="samples")
    with pytest.raises(ValueError, match="has no \\{label\\} slot"):
        NSPZeroShotClassifier(scorer, ["a", "b"], "这是新闻")


def test_pet_scores_equal_a_manual_masked_forward(tiny_checkpoint):
    mlm = MLMScorer.from_pretrained(tiny_checkpoint)
    assert slot_and_words(["这次买的东西很好", "这次买的东西很差"], ["P", "N"]) == ("这次买的东西很{label}", ["好", "差"])
    pet = PETZeroShotClassifier(mlm, ["Positive", "Negative"], [["这次买的东西很好", "这次买的东西很差"]])
    tokenizer = mlm.tokenizer
    batch = tokenizer("这次买的东西很[MASK]", "音质很差", return_tensors="pt")
    with torch.no_grad():
        out = mlm.model(batch["input_ids"], token_type_ids=batch["token_type_ids"],
                        mlm_positions=batch["input_ids"] == tokenizer.mask_token_id)
    log_probs = torch.log_softmax(out.mlm_logits[0], -1)
    expected = log_probs[tokenizer.convert_tokens_to_ids(["好", "差"])]
    torch.testing.assert_close(pet.scores(["音质很差"])[0], expected)
    two = mlm.word_log_probs([("{label}", "音质很差")], [["好", "好评"]])  # words of different lengths
    assert two.shape == (1, 2) and torch.isfinite(two).all()


# ----------------------------------------------------------------- the nine FewCLUE tasks on fixtures
def _data_root(tmp_path: Path) -> Path:
    """The fixture FewCLUE tree, with train_0 of the samples-contrast tasks given enough texts to fit thresholds."""
    root = tmp_path / "data"
    shutil.copytree(FEWCLUE, root / "fewclue")
    for task in ("ocnli", "bustm", "csl", "cluewsc"):
        source = (FEWCLUE / task / "train_0.json").read_text(encoding="utf-8").strip().splitlines()
        dev = (FEWCLUE / task / "dev_0.json").read_text(encoding="utf-8").strip().splitlines()
        (root / "fewclue" / task / "train_0.json").write_text("\n".join((source + dev) * 2) + "\n", encoding="utf-8")
    return root


def test_every_fewclue_task_builds_the_papers_inputs(tmp_path, tiny_checkpoint):
    root = _data_root(tmp_path)
    scorer = NSPScorer.from_pretrained(tiny_checkpoint)
    seen: list = []
    original = scorer.log_prob
    scorer.log_prob = lambda pairs, blank=None: seen.extend(pairs) or original(pairs, blank)
    expected = {
        "eprstmt": ("这次买的东西很差", "音质很差，亏大了。"),
        "tnews": ("这是一则民生新闻", "老公病重，娘家只借给我2千"),
        "csldcp": ("这是一篇口腔医学类论文", "种植体周围炎的治疗"),
        "iflytek": ("这是一款地图导航类软件", "离线地图导航"),
        "ocnli": ("我们手头宽裕", "我们手头目前都比较紧"),
        "bustm": ("你晚上吃啥了", "你晚上吃了什么"),
        "csl": ("提出一种点火提前角控制方法。", "点火,深度学习"),
        "cluewsc": ("张浃", "张浃说到义军时，他连声说不可挡。上文中他是指"),
        "chid": ("天方夜谭", "这个要求简直是#idiom#。"),
    }
    mlm = MLMScorer.from_pretrained(tiny_checkpoint)
    for task, pair in expected.items():
        seen.clear()
        result = evaluate_task(task, scorer, mlm, split="dev_0", root=root)
        assert pair in seen, (task, seen[:5])
        for value in (result.nsp, result.pet, result.majority):
            assert 0.0 <= value <= 1.0, (task, result)
        assert (result.nsp_transductive is not None) == (TASKS[task].mapping == "samples")
    wsc = list(read_fewclue("cluewsc", "dev_0", root))
    assert pet_queries(TASKS["cluewsc"], wsc)[0].pairs[0] == (wsc[0].text, "上文中他{label}是指张浃")
    assert nsp_queries(TASKS["ocnli"], list(read_fewclue("ocnli", "dev_0", root)))[0].label == 0  # contradiction


def test_cli_and_quick_experiment_on_fixtures(tmp_path, tiny_checkpoint, capsys, monkeypatch):
    from kexue.cli import main
    from kexue.experiments import run_experiment

    root = _data_root(tmp_path)
    assert main(["zeroshot", "fewclue", "--model", str(tiny_checkpoint), "--task", "bustm", "--split", "dev_0",
                 "--data", str(root)]) == 0
    assert "| bustm | pairs | samples | 1 |" in capsys.readouterr().out
    assert main(["zeroshot", "fewclue", "--model", str(tiny_checkpoint), "--task", "nope"]) == 1
    monkeypatch.setenv("KEXUE_SMALL_ZH", str(tiny_checkpoint))
    result = run_experiment("nsp-zeroshot", tmp_path / "out", quick=True, data_dir=root)
    assert result.status == "ok", result.error
    claims = {claim["id"]: claim for claim in result.claims}
    assert list(claims) == ["nsp-beats-pet-zero-shot", "nsp-beats-majority", "nsp-head-judges-coherence"]
    assert claims["nsp-beats-pet-zero-shot"]["source"] == "post" and claims["nsp-beats-pet-zero-shot"]["quote"]
    for name in ("nsp-beats-pet-zero-shot", "nsp-beats-majority"):  # fixture texts are one sentence: AUC unmeasured
        assert claims[name]["verdict"] == "inconclusive" and "precondition not met" in claims[name]["reason"]
        assert claims[name]["interval"]["method"] == "paired bootstrap BCa"
    assert claims["nsp-head-judges-coherence"]["verdict"] == "inconclusive"
    assert set(result.metrics["weights_sha256"]) == {"model.safetensors"}
    assert (tmp_path / "out" / "nsp-zeroshot" / "fewclue_zero_shot.png").stat().st_size > 0


# ----------------------------------------------------------------- any split: a name in the folder, or a file
def test_runner_takes_test_public_and_file_paths_for_every_task_mode(tmp_path, tiny_checkpoint):
    root = _data_root(tmp_path)
    for task in TASKS:  # test_public = dev_0's lines; dev_few_all = train_0's (thresholds of test_public)
        folder = root / "fewclue" / task
        shutil.copy(folder / "dev_0.json", folder / "test_public.json")
        shutil.copy(folder / "train_0.json", folder / "dev_few_all.json")
    nsp, mlm = NSPScorer.from_pretrained(tiny_checkpoint), MLMScorer.from_pretrained(tiny_checkpoint)
    for task in TASKS:
        by_name = evaluate_task(task, nsp, mlm, split="test_public", root=root)
        by_file = evaluate_task(task, nsp, mlm, split=str(root / "fewclue" / task / "test_public.json"), root=root)
        same_lines = evaluate_task(task, nsp, mlm, split="dev_0", root=root, thresholds_from="dev_few_all")
        assert by_name.split == "test_public" and by_name.examples == 1
        for result in (by_file, same_lines):
            assert result.correct == by_name.correct, task
        samples = TASKS[task].mapping == "samples"
        assert by_name.threshold_split == ("dev_few_all" if samples else None)
        assert set(by_name.correct) == {"majority", "nsp", "pet"} | ({"nsp_transductive"} if samples else set())
        assert 0.0 <= by_name.nsp <= 1.0, (task, by_name)  # samples-contrast thresholds were fitted
    with pytest.raises(DataNotFoundError, match=r"no split 'test'.*splits present: \['dev_0', 'dev_few_all', "
                                                r"'test_public', 'train_0', 'unlabeled'\]"):
        evaluate_task("bustm", nsp, split="test", root=root)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        evaluate_task("bustm", nsp, split=str(tmp_path / "missing.json"), root=root)
    with pytest.raises(ValueError, match="no labels"):
        evaluate_task("bustm", nsp, split="unlabeled", root=root)


# ----------------------------------------------------------------- the command line
def test_classify_repeats_template_and_needs_two_labels(tiny_checkpoint, capsys):
    from kexue.cli import main

    model = ["--model", str(tiny_checkpoint)]
    # the README's form: comma-separated labels, then the texts right after (tests/test_readme.py runs it as written)
    assert main(["zeroshot", "classify", *model, "--template", "这是一则{label}新闻", "--template", "{label}",
                 "--labels", "体育,财经", "梅西梅开二度"]) == 0
    scorer = NSPScorer.from_pretrained(tiny_checkpoint)
    expected = NSPZeroShotClassifier(scorer, ["体育", "财经"], ["这是一则{label}新闻", "{label}"]).scores(["梅西梅开二度"])
    detail = capsys.readouterr().out.strip().split("\t")[2]
    assert detail == "  ".join(f"{label}={value:.4f}" for label, value in zip(["体育", "财经"], expected[0].exp().tolist()))
    assert main(["zeroshot", "classify", *model, "--labels", "体育", "梅西梅开二度"]) == 1  # one label is no choice
    assert "two or more" in capsys.readouterr().err


def _all_actions(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from ((f"{name} {where}", found) for where, found in _all_actions(child))
        yield "", action


def test_every_zeroshot_option_has_help():
    import argparse

    from kexue.zero_shot.cli import add_parser

    root = argparse.ArgumentParser()
    add_parser(root.add_subparsers())
    missing = [(where, action.dest) for where, action in _all_actions(root)
               if not isinstance(action, argparse._HelpAction) and action.dest != "help" and not action.help
               and where]
    assert not missing, missing


def test_nine_task_average_difference_weighs_tasks_equally():
    from kexue.experiments.nsp_zeroshot import _macro
    from kexue.zero_shot.runner import TaskResult

    rng = torch.Generator().manual_seed(0)
    results = []
    for task, size in (("eprstmt", 10), ("tnews", 200), ("csl", 40)):
        nsp, pet = (torch.rand(size, generator=rng) < 0.6).tolist(), (torch.rand(size, generator=rng) < 0.4).tolist()
        results.append(TaskResult(task, "single", "candidates", "dev", size, 0.5, correct={"nsp": nsp, "pet": pet}))
    by_task = [sum(r.correct["nsp"]) / r.examples - sum(r.correct["pet"]) / r.examples for r in results]
    difference, interval = _macro(results, "nsp", "pet")
    assert difference == pytest.approx(sum(by_task) / 3, abs=1e-12)
    assert interval.low < difference < interval.high and interval.n == 250
    accuracy, _ = _macro(results, "nsp")
    assert accuracy == pytest.approx(sum(sum(r.correct["nsp"]) / r.examples for r in results) / 3, abs=1e-12)
