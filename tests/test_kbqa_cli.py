"""`kexue kbqa` end to end on a tiny model: split names and files, the read-only KB and its
content hash, the content-keyed trie cache, question warnings, per-question predictions, several
questions per `ask`, and the training defaults equal to the committed recipe."""

from __future__ import annotations

import io
import json
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from kexue.cli import main
from kexue.data import DataNotFoundError, load_tokenizer
from kexue.models import Transformer, TransformerConfig
from kexue.data.kgclue import read_kgclue_questions
from kexue.retrieval import KBQA_RECIPE, Fact, KbqaCodec, KnowledgeBase, build_kb_trie
from kexue.retrieval.kbqa import load_or_build_trie, trie_cache_key

torch.set_num_threads(1)
PREDICATES = ["身高", "作者", "出生", "毕业"]


def _write_kgclue(root: Path) -> None:
    rng = random.Random(0)
    names, kinds = "甲乙丙丁戊己庚辛", ["教授", "歌曲", "图书"]
    (root / "kgclue").mkdir(parents=True)
    for split, offset in (("train", 0), ("dev", 1000), ("test_public", 2000)):
        lines = []
        for i in range(16):
            subject = f"{rng.choice(names)}{rng.choice(names)}（某{rng.choice(kinds)}）"
            predicate = rng.choice(PREDICATES)
            lines.append(json.dumps({"id": offset + i, "question": f"{subject[:2]}的{predicate}是什么",
                                     "answer": f"{subject} ||| {predicate} ||| 值{i}"}, ensure_ascii=False))
        (root / "kgclue" / f"{split}.json").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> dict[str, Path]:
    """A data root, a KB with distractors and a model trained for 2 steps (its final/ folder)."""
    base = tmp_path_factory.mktemp("kbqa")
    root = base / "data"
    _write_kgclue(root)
    characters = sorted({c for path in (root / "kgclue").iterdir() for c in path.read_text("utf-8") if not c.isspace()})
    vocab = base / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters]) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=len(load_tokenizer(vocab)), hidden_size=16, num_layers=2, num_heads=2,
                               intermediate_size=32, position="rope", max_positions=64)
    Transformer(config).eval().save_pretrained(base / "backbone")
    load_tokenizer(vocab).save_pretrained(str(base / "backbone"))  # a backbone with tokenizer.json only
    assert not (base / "backbone" / "vocab.txt").exists()
    kb = base / "kb.sqlite"
    assert main(["kbqa", "build-kb", "--kb", str(kb), "--kgclue", "train", "dev", "test_public", "--distractors", "2",
                 "--data", str(root)]) == 0
    assert main(["kbqa", "train", "--out", str(base / "run"), "--model", str(base / "backbone"), "--max-steps", "2",
                 "--batch-size", "8", "--data", str(root)]) == 0
    final = base / "run" / "final"
    assert all((final / name).is_file() for name in ("tokenizer.json", "vocab.txt", "kbqa.json"))
    return {"base": base, "data": root, "kb": kb, "model": final}


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.strip().split("\n")]


def _decode_args(workspace) -> list[str]:
    return ["--model", str(workspace["model"]), "--kb", str(workspace["kb"]),
            "--trie-cache", str(workspace["base"] / "tries")]


# ----------------------------------------------------------------------------- questions: splits and files
def test_questions_accept_split_names_and_files_alike(workspace, tmp_path):
    root = workspace["data"]
    by_name = list(read_kgclue_questions("test_public", root))
    by_path = list(read_kgclue_questions(root / "kgclue" / "test_public.json"))
    assert len(by_name) == 16 and by_name == by_path
    with pytest.raises(DataNotFoundError, match="test_public"):
        read_kgclue_questions("test_public", tmp_path)  # a split the data root lacks
    with pytest.raises(ValueError, match="neither a file nor a KgCLUE split"):
        read_kgclue_questions("tset", root)
    with pytest.raises(DataNotFoundError, match="missing.json"):
        read_kgclue_questions(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- the knowledge base
def test_ask_and_eval_leave_the_kb_untouched_and_refuse_other_files(workspace, tmp_path, capsys):
    kb = workspace["kb"]
    before = kb.read_bytes()
    assert main(["kbqa", "ask", "甲乙的身高是什么", *_decode_args(workspace)]) == 0
    assert main(["kbqa", "eval", "--questions", "dev", "--limit", "3", "--data", str(workspace["data"]),
                 *_decode_args(workspace)]) == 0
    assert kb.read_bytes() == before
    with KnowledgeBase(kb, read_only=True) as opened, pytest.raises(ValueError, match="read-only"):
        opened.add(Fact("甲", "身高", "1"))

    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    other_bytes = other.read_bytes()
    for read_only in (True, False):
        with pytest.raises(ValueError, match="not a kexue knowledge base"):
            KnowledgeBase(other, read_only=read_only)
    assert other.read_bytes() == other_bytes  # no tables added
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 10, encoding="utf-8")
    capsys.readouterr()
    for path in (other, text):
        assert main(["kbqa", "ask", "甲乙的身高是什么", "--model", str(workspace["model"]), "--kb", str(path)]) == 1
        assert "not a kexue knowledge base" in capsys.readouterr().err
    assert main(["kbqa", "ask", "x", "--model", str(workspace["model"]), "--kb", str(tmp_path / "no.sqlite")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_content_hash_is_incremental_stored_and_changes_with_the_rows(tmp_path):
    facts = [Fact(f"主体{i}", f"属性{i % 6}", f"值{i}", "某教授") for i in range(30)]
    with KnowledgeBase(tmp_path / "a.sqlite") as a, KnowledgeBase(tmp_path / "b.sqlite") as b:
        for start in range(0, 30, 7):  # the same rows in other write batches: the same hash
            a.add_many(facts[start:start + 7], "test")
        b.add_many(facts, "test")
        assert a.content_hash() == b.content_hash()
        added_before = a.content_hash()
        a.add_distractors(2, seed=0)
        b.add_distractors(2, seed=1)
        assert len(a) == len(b) and a.content_hash() != b.content_hash() != added_before
        stored = a.content_hash()
    with sqlite3.connect(tmp_path / "a.sqlite") as connection:  # a change behind the class's back...
        connection.execute("DELETE FROM facts WHERE id = (SELECT MAX(id) FROM facts)")
    with KnowledgeBase(tmp_path / "a.sqlite", read_only=True) as a:
        assert a.content_hash() != stored  # ...is seen through the row count and recomputed


def test_trie_cache_is_keyed_by_kb_content_and_tokenizer(workspace, tmp_path):
    codec = KbqaCodec.from_pretrained(workspace["model"])
    cache = tmp_path / "tries"
    for seed in (0, 1):  # the same questions, another distractor draw: same key count, other rows
        path = tmp_path / f"kb-{seed}.sqlite"
        with KnowledgeBase(path) as kb:
            kb.import_kgclue("train", workspace["data"])
            kb.add_distractors(2, seed)
    with KnowledgeBase(tmp_path / "kb-0.sqlite", read_only=True) as first, \
            KnowledgeBase(tmp_path / "kb-1.sqlite", read_only=True) as second:
        assert first.counts()["keys"] == second.counts()["keys"]
        assert trie_cache_key(first, codec) != trie_cache_key(second, codec)
        assert trie_cache_key(first, codec) != trie_cache_key(first, KbqaCodec(codec.tokenizer, "smp"))
        cached = load_or_build_trie(first, codec, cache)
        reloaded = load_or_build_trie(first, codec, cache)
        assert isinstance(reloaded.tokens.base, np.memmap)  # memory-mapped from the cache
        other = load_or_build_trie(second, codec, cache)
        fresh = build_kb_trie(second, codec)
        assert all((getattr(other, name) == getattr(fresh, name)).all()
                   for name in ("tokens", "first_child", "terminal_nodes", "terminal_payloads"))
        assert cached.info["cache_key"] != other.info["cache_key"]
    assert len(list(cache.iterdir())) == 2


def test_codec_from_tokenizer_json_gives_the_ids_of_load_tokenizer(workspace, tmp_path):
    load_tokenizer(workspace["model"]).save_pretrained(str(tmp_path))  # tokenizer.json only
    assert not (tmp_path / "vocab.txt").exists()
    fast, reference = KbqaCodec.from_pretrained(tmp_path), KbqaCodec(load_tokenizer(workspace["model"]))
    questions = [e.question for e in read_kgclue_questions("dev", workspace["data"])] + ["", "Ωψ甲"]
    assert fast.questions(questions) == reference.questions(questions)
    assert (fast.cls, fast.sep, fast.pad, fast.unk, fast.vocab_size) == \
           (reference.cls, reference.sep, reference.pad, reference.unk, reference.vocab_size)
    assert fast.fingerprint() == reference.fingerprint()


# ----------------------------------------------------------------------------- ask and eval
def test_ask_answers_several_questions_a_file_and_stdin_with_warnings(workspace, tmp_path, capsys, caplog,
                                                                     monkeypatch):
    questions = tmp_path / "questions.txt"
    questions.write_text("丙丁的作者是什么\n\n", encoding="utf-8")
    assert main(["kbqa", "ask", "甲乙的身高是什么", "ΩΨΦ的ж", "--file", str(questions), *_decode_args(workspace)]) == 0
    captured = capsys.readouterr()
    records = _lines(captured.out)
    assert [r["question"] for r in records] == ["甲乙的身高是什么", "ΩΨΦ的ж", "丙丁的作者是什么", ""]
    assert all(r["predicate"] in PREDICATES or r["warning"] for r in records)
    assert [r["warning"] is not None for r in records] == [False, True, False, True]
    assert records[1]["warning"].startswith("mostly unknown tokens") and records[3]["warning"] == "empty question"
    assert "'': empty question" in caplog.text  # logged as a warning too
    monkeypatch.setattr("sys.stdin", io.StringIO("甲乙的身高是什么\n丙丁的作者是什么\n"))
    assert main(["kbqa", "ask", "--file", "-", *_decode_args(workspace)]) == 0
    assert len(_lines(capsys.readouterr().out)) == 2
    assert main(["kbqa", "ask", *_decode_args(workspace)]) == 1
    assert "--file" in capsys.readouterr().err


def test_eval_writes_one_prediction_per_question(workspace, tmp_path, capsys):
    predictions = tmp_path / "out" / "dev.jsonl"
    assert main(["kbqa", "eval", "--questions", "test_public", "--limit", "6", "--beams", "2", "--predictions",
                 str(predictions), "--data", str(workspace["data"]), *_decode_args(workspace)]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = _lines(predictions.read_text(encoding="utf-8"))
    gold = list(read_kgclue_questions("test_public", workspace["data"]))[:6]
    assert summary["questions"] == len(records) == 6 and summary["warnings"] == 0
    assert [r["id"] for r in records] == [e.id for e in gold]
    assert all(r["gold"]["object"] == e.object and r["EM_O"] == (r["object"] == e.object) for r, e in zip(records, gold))
    assert summary["EM_O"] == pytest.approx(100 * sum(r["EM_O"] for r in records) / 6, abs=0.01)


# ----------------------------------------------------------------------------- train: the recipe's defaults
def test_train_defaults_are_the_committed_recipe(workspace):
    from kexue.cli import build_parser

    args = build_parser().parse_args(["kbqa", "train", "--out", "x"])
    assert (args.max_steps, args.max_minutes, args.batch_size, args.lr, args.order) == \
           (KBQA_RECIPE.max_steps, KBQA_RECIPE.max_minutes, KBQA_RECIPE.batch_size, KBQA_RECIPE.learning_rate,
            KBQA_RECIPE.order)
    config = KBQA_RECIPE.training_config("x", seed=3, max_steps=40)
    assert (config.max_steps, config.warmup_steps, config.learning_rate, config.seed) == (40, 2, 3e-4, 3)
    assert json.loads((workspace["model"] / "kbqa.json").read_text())["order"] == KBQA_RECIPE.order


def test_train_resumes_and_writes_the_order(workspace, capsys):
    run = workspace["base"] / "run"
    assert main(["kbqa", "train", "--out", str(run), "--model", str(workspace["base"] / "backbone"), "--max-steps",
                 "3", "--batch-size", "8", "--data", str(workspace["data"]), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out.strip().split("\n")[-1])["step"] == 3


def test_every_kbqa_option_has_help():
    from kexue.cli import build_parser

    kbqa = build_parser()._subparsers._group_actions[0].choices["kbqa"]
    for name, sub in kbqa._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            assert action.help, f"kbqa {name} {action.option_strings or action.dest} has no help"
