"""kexue.pretrain: reading, sentence splitting, packing, masking statistics, NSP/UniLM pairs, the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kexue.data.tokenizer import load_tokenizer
from kexue.models import Transformer, TransformerConfig
from kexue.pretrain import (IGNORE_INDEX, PretrainBatches, SpecialIds, evaluate_pretraining, mask_tokens,
                            pack_segments, read_documents, split_eval_documents, split_sentences, tokenize_corpus)
from kexue.pretrain.cli import main
from kexue.training import load_model_state
from kexue.training.checkpoint import load_trainer_state

FIXTURES = Path(__file__).parent / "fixtures" / "pretrain"
CORPUS, VOCAB = FIXTURES / "corpus.jsonl", FIXTURES / "vocab.txt"


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(VOCAB)


@pytest.fixture(scope="module")
def corpus(tokenizer):
    return tokenize_corpus(read_documents([CORPUS]), tokenizer)


def make_batches(corpus, tokenizer, **changes) -> PretrainBatches:
    fields = dict(special=SpecialIds.from_tokenizer(tokenizer), batch_size=8, seq_len=32, seed=1)
    return PretrainBatches(corpus, pack_segments(corpus, 29), **(fields | changes))


def test_read_documents_formats_and_errors(tmp_path):
    assert len(read_documents([CORPUS])) == 36
    text = tmp_path / "docs.txt"
    text.write_text("第一段。\n还是第一段。\n\n第二段。\n", encoding="utf-8")
    assert read_documents([text]) == ["第一段。\n还是第一段。", "第二段。"]
    assert read_documents([text], text_format="lines") == ["第一段。", "还是第一段。", "第二段。"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "好"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: bad JSON"):
        read_documents([bad])
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: no string field 'content'"):
        read_documents([CORPUS, bad][1:], text_field="content")


def test_split_sentences_keeps_punctuation_and_quotes():
    assert split_sentences("你好！我很好；谢谢。") == ["你好！", "我很好；", "谢谢。"]
    assert split_sentences("他说：“走吧！”于是……走了\n\n新行") == ["他说：“走吧！”", "于是……", "走了", "新行"]


def test_eval_split_is_spread_and_disjoint():
    docs = [str(i) for i in range(100)]
    train, held = split_eval_documents(docs, 5)
    assert held == ["0", "25", "50", "74", "99"] and len(train) == 95 and not set(train) & set(held)


def test_packing_respects_length_and_documents(corpus):
    segments = pack_segments(corpus, 20)
    assert ((segments[:, 1] - segments[:, 0]) <= 20).all()
    assert (segments[1:, 0] == segments[:-1, 1]).all() and segments[-1, 1] == len(corpus.tokens)  # covers all
    doc_token_end = corpus.sentence_starts[corpus.document_starts[segments[:, 2] + 1]]
    assert (segments[:, 1] <= doc_token_end).all()  # never crosses a document boundary


def test_masking_rate_and_80_10_10_split():
    rng = np.random.default_rng(0)
    ids = rng.integers(200, 1000, size=(400, 100))
    ids[:, 0], ids[:, 60], ids[:, 80:] = 101, 102, 0  # [CLS] text [SEP] text [PAD]...
    candidates = (ids != 101) & (ids != 102) & (ids != 0)
    masked, labels = mask_tokens(ids, candidates, rng, mask_id=103, random_ids=np.arange(1000, 2000))
    chosen = labels != IGNORE_INDEX
    assert not (chosen & ~candidates).any()  # never [CLS], [SEP] or [PAD]
    assert chosen.sum(1).tolist() == [round(0.15 * 78)] * 400  # exactly round(p * candidates) per row
    assert (labels[chosen] == ids[chosen]).all()
    as_mask = (masked[chosen] == 103).mean()
    as_random = ((masked[chosen] >= 1000)).mean()
    kept = (masked[chosen] == ids[chosen]).mean()
    n = chosen.sum()  # 4800 draws: 4 standard errors of a proportion 0.1 are about 0.017
    assert abs(as_mask - 0.8) < 4 * np.sqrt(0.16 / n) and abs(as_random - 0.1) < 4 * np.sqrt(0.09 / n)
    assert abs(kept - 0.1) < 4 * np.sqrt(0.09 / n)
    assert (masked[~chosen] == ids[~chosen]).all()


def test_whole_word_masking_masks_whole_words():
    rng = np.random.default_rng(0)
    word_ids = np.repeat(np.arange(30), 3)[None].repeat(200, 0)  # 30 words of 3 tokens
    ids = rng.integers(200, 1000, size=word_ids.shape)
    _, labels = mask_tokens(ids, np.ones_like(ids, bool), rng, 103, np.arange(1000, 2000), word_ids=word_ids)
    per_word = (labels != IGNORE_INDEX).reshape(200, 30, 3).sum(-1)
    assert set(np.unique(per_word)) == {0, 3}
    assert (per_word.sum(1) == 12).all()  # n = round(0.15 * 90) = 14; a 5th word would overshoot to 15


def test_jieba_word_starts(tokenizer):
    pytest.importorskip("jieba")
    corpus = tokenize_corpus(["我喜欢读书。"], tokenizer, whole_word=True)
    assert corpus.word_starts.tolist() == [True, True, False, True, False, True]  # 我 / 喜欢 / 读书 / 。


def test_whole_word_masking_without_jieba_is_refused(tokenizer, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)
    with pytest.raises(ImportError, match="pip install 'kexue\\[zh\\]'"):
        tokenize_corpus(["我喜欢读书。"], tokenizer, whole_word=True)


def _find(tokens: np.ndarray, piece: np.ndarray) -> list[int]:
    return [i for i in range(len(tokens) - len(piece) + 1) if (tokens[i:i + len(piece)] == piece).all()]


def test_nsp_pairs_are_half_random_with_right_labels(corpus, tokenizer):
    batches = make_batches(corpus, tokenizer, nsp=True)
    special = batches.special
    labels, checked = [], 0
    for epoch in range(40):
        batches.set_epoch(epoch)
        for batch in batches:
            labels += batch["nsp_labels"].tolist()
            if epoch < 3:
                original = torch.where(batch["mlm_positions"], batch["mlm_labels"], batch["input_ids"]).numpy()
                for row, label in zip(original, batch["nsp_labels"].tolist()):
                    seps = np.flatnonzero(row == special.sep)
                    a, b = row[1:seps[0]], row[seps[0] + 1:seps[1]]
                    if label == 0:  # IsNext: B continues A in the corpus (NotNext kinds: test_pretrain_nsp.py)
                        assert _find(corpus.tokens, np.concatenate([a, b]))
                        checked += 1
    assert abs(np.mean(labels) - 0.5) < 0.05 and checked > 25


def test_unilm_batch_segments_and_shifted_targets(corpus, tokenizer):
    batch = make_batches(corpus, tokenizer, unilm_fraction=1.0).make_batch(np.arange(8), np.random.default_rng(0))
    assert batch["task"] == "unilm" and "nsp_labels" not in batch
    ids, types, labels = batch["input_ids"], batch["token_type_ids"], batch["mlm_labels"]
    for row in range(8):
        seps = (ids[row] == tokenizer.sep_token_id).nonzero().flatten().tolist()
        first, last = seps
        assert types[row, :first + 1].eq(0).all() and types[row, first + 1:last + 1].eq(1).all()
        assert types[row, last + 1:].eq(0).all()
        target = (labels[row] != IGNORE_INDEX).nonzero().flatten().tolist()
        assert target == list(range(first, last))  # [SEP] of A predicts B[0] ... B[-1] predicts the final [SEP]
        assert labels[row, first:last].tolist() == ids[row, first + 1:last + 1].tolist()
    assert torch.equal(batch["mlm_positions"], labels != IGNORE_INDEX)


def test_batches_are_reproducible_resumable_and_redrawn(corpus, tokenizer):
    batches = make_batches(corpus, tokenizer, nsp=True)
    first = list(batches)
    batches.set_position(0, 2)
    resumed = list(batches)
    assert len(resumed) == len(first) - 2
    for a, b in zip(first[2:], resumed):
        assert all(torch.equal(a[k], b[k]) for k in ("input_ids", "mlm_labels", "nsp_labels"))
    batches.set_epoch(1)
    second = list(batches)
    assert not all(torch.equal(a["mlm_labels"], b["mlm_labels"]) for a, b in zip(first, second) if a["mlm_labels"].shape == b["mlm_labels"].shape)
    sizes = [int(b["attention_mask"].sum()) / b["attention_mask"].numel() for b in first]
    assert np.mean(sizes) > 0.8  # length bucketing keeps padding low


def test_eval_is_deterministic(corpus, tokenizer):
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(vocab_size=len(tokenizer), hidden_size=32, num_layers=2, num_heads=2,
                                          intermediate_size=64))
    model.train()
    batches = list(make_batches(corpus, tokenizer, nsp=True))
    first, second = evaluate_pretraining(model, batches), evaluate_pretraining(model, batches)
    assert first == second and {"mlm_accuracy", "nsp_accuracy", "mlm_loss", "nsp_loss"} <= first.keys()
    assert model.training  # restored


def cli(out: Path, *extra: str) -> list[str]:
    return ["--input", str(CORPUS), "--vocab", str(VOCAB), "--out", str(out), "--config", "tiny", "--seq-len", "32",
            "--batch-size", "8", "--eval-docs", "4", "--log-every", "5", "--no-progress", "--threads", "1", *extra]


def records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_cli_trains_and_mlm_loss_decreases(tmp_path):
    repeated = tmp_path / "repeated.jsonl"  # 3 documents seen 20 times: learnable in 40 steps
    repeated.write_text("".join(CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)[:3]) * 20, encoding="utf-8")
    out = tmp_path / "run"
    args = cli(out, "--max-steps", "40", "--lr", "1e-2", "--warmup", "4", "--eval-every", "20", "--nsp",
               "--export-fp16", "--config", '{"hidden_size": 32, "num_layers": 2, "num_heads": 2, '
               '"intermediate_size": 64, "dropout": 0.0, "attention_dropout": 0.0}')
    args[1] = str(repeated)
    assert main(args) == 0
    train = records(out, "train")
    assert train[-1]["step"] == 40 and train[-1]["mlm_loss"] < train[0]["mlm_loss"] - 0.7
    assert all(np.isfinite(r["loss"]) and 0 <= r["nsp_accuracy"] <= 1 for r in train)
    assert [r["step"] for r in records(out, "eval")] == [20, 40]
    exported = Transformer.from_pretrained(out / "final")
    assert exported.config.hidden_size == 32
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 40 and summary["tokens_per_sec"] > 0


def test_cli_resume_continues_from_the_checkpoint(tmp_path, monkeypatch, capsys):
    import kexue.pretrain.task as task

    common = ("--max-steps", "20", "--save-every", "10", "--eval-every", "10", "--nsp", "--unilm", "0.3")
    assert main(cli(tmp_path / "full", *common)) == 0
    original, calls = task.pretraining_loss, {"n": 0}

    def crash(model, batch):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt  # killed at step 15; the checkpoint of step 10 survives
        return original(model, batch)

    monkeypatch.setattr(task, "pretraining_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        main(cli(tmp_path / "cut", *common))
    monkeypatch.setattr(task, "pretraining_loss", original)
    assert main(cli(tmp_path / "cut", *common, "--resume")) == 0
    assert json.loads((tmp_path / "cut" / "summary.json").read_text())["steps_this_run"] == 10
    full, cut = (tmp_path / name / "checkpoints" / "step-00000020" for name in ("full", "cut"))
    assert load_trainer_state(full)["step"] == load_trainer_state(cut)["step"] == 20
    full_optimizer, cut_optimizer = (torch.load(path / "optimizer.bin", weights_only=False)["state"] for path in (full, cut))
    for key, state in full_optimizer.items():
        assert torch.equal(state["exp_avg"], cut_optimizer[key]["exp_avg"])
    weights = load_model_state(full)
    for name, value in load_model_state(cut).items():
        assert torch.allclose(value, weights[name], atol=1e-6), name
    # eval-only recomputes the logged eval numbers of a checkpoint exactly
    capsys.readouterr()
    assert main(cli(tmp_path / "cut", "--nsp", "--unilm", "0.3", "--eval-only", "--model",
                    str(tmp_path / "cut" / "checkpoints" / "step-00000020"))) == 0
    recomputed = json.loads(capsys.readouterr().out)["eval"]
    logged = records(tmp_path / "cut", "eval")[-1]
    assert logged["step"] == 20 and all(recomputed[k] == pytest.approx(logged[k], abs=1e-6) for k in recomputed)


@pytest.mark.parametrize("extra, message", [
    (("--config", "{oops"), "`--config`"),
    (("--mlm-prob", "1.5"), "`--mlm-prob`"),
    (("--eval-only",), "`--eval-only` needs `--model"),
])
def test_cli_errors_name_the_argument(tmp_path, capsys, extra, message):
    assert main(cli(tmp_path / "run", "--max-steps", "1", *extra)) == 2
    assert message in capsys.readouterr().err


def test_cli_bad_json_line_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "好"}\n\n{"text": 1}\n', encoding="utf-8")
    args = cli(tmp_path / "run", "--max-steps", "1")
    args[1] = str(bad)
    assert main(args) == 2
    assert f"{bad}:3: no string field 'text'" in capsys.readouterr().err


def test_cli_resume_refuses_a_changed_lr_or_model_and_records_an_override(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(cli(out, "--max-steps", "4", "--save-every", "2", "--eval-every", "4")) == 0
    capsys.readouterr()
    assert main(cli(out, "--max-steps", "4", "--eval-every", "4", "--resume", "--lr", "5")) == 2
    error = capsys.readouterr().err
    assert "`learning_rate` was 0.0005 in the checkpoint, now 5.0" in error and "--resume-override learning_rate" in error
    assert main(cli(out, "--max-steps", "4", "--eval-every", "4", "--resume", "--config", "small")) == 2
    error = capsys.readouterr().err
    assert "different model" in error and "`hidden_size` was 32" in error and "now 256" in error
    assert main(cli(out, "--max-steps", "6", "--save-every", "2", "--eval-every", "6", "--resume", "--lr", "1e-3",
                    "--resume-override", "learning_rate")) == 0
    saved = json.loads((out / "checkpoints" / "step-00000006" / "config.json").read_text())
    assert saved["learning_rate"] == 1e-3 and saved["resume_overrides"] == ["learning_rate"]
    assert {entry["field"] for entry in saved["resume_history"]} == {"learning_rate", "max_steps"}


def test_init_from_starts_at_the_given_weights_and_refuses_another_config(tmp_path, capsys):
    from safetensors.torch import load_file

    assert main(cli(tmp_path / "first", "--max-steps", "2", "--nsp")) == 0
    start = tmp_path / "first" / "final"
    # lr 1e-12: one Adam step moves each weight by about 1e-12, so the export is the starting point (a random
    # init with the same seed is not: "first" trained it 2 steps at lr 5e-4)
    assert main(cli(tmp_path / "second", "--max-steps", "1", "--nsp", "--lr", "1e-12", "--init-from", str(start))) == 0
    before, after = load_file(start / "model.safetensors"), load_file(tmp_path / "second" / "final" / "model.safetensors")
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], atol=1e-9) for k in before)
    bigger = '{"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128}'
    assert main(cli(tmp_path / "third", "--max-steps", "1", "--config", bigger, "--init-from", str(start))) == 2
    assert "`--init-from`" in capsys.readouterr().err
