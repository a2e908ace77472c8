"""Smoke tests of the `kexue` command line, run in-process."""

import json
from pathlib import Path

import pytest

from kexue.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("info", "reproduce", "bench", "pretrain"):
        assert command in out


def test_info_json_reports_data_and_models(capsys):
    assert main(["info", "--json", "--data", str(FIXTURES)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["data"]["found"] and "kgclue" in info["data"]["datasets"]
    assert "minilm" in info["models"] and "data-audit" in info["experiments"]
    assert info["env"]["packages"]["torch"]


def test_info_without_data_says_how_to_point_at_it(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "nowhere"))
    assert main(["info"]) == 0
    assert "KEXUE_DATA" in capsys.readouterr().out


def test_reproduce_data_audit_writes_result_json(tmp_path, capsys):
    main(["reproduce", "data-audit", "--quick", "--out", str(tmp_path), "--data", str(FIXTURES)])
    result = json.loads((tmp_path / "data-audit" / "result.json").read_text())
    assert result["experiment"] == "data-audit" and result["quick"] is True and result["status"] == "ok"
    assert {claim["id"] for claim in result["claims"]} >= {"row-counts"}
    assert str(tmp_path / "data-audit" / "report.md") in capsys.readouterr().out


def test_reproduce_without_its_data_is_a_clear_line_not_a_crash(tmp_path, capsys):
    (tmp_path / "empty").mkdir()  # an explicit root is used alone: no fallback to other data
    assert main(["reproduce", "kbqa", "--quick", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "empty")]) == 1
    assert "no-data" in capsys.readouterr().out
    assert "No data found" in (tmp_path / "out" / "kbqa" / "report.md").read_text()


def test_unknown_experiment_is_a_usage_error(capsys):
    assert main(["reproduce", "no-such-thing"]) == 2
    assert "unknown experiment 'no-such-thing'" in capsys.readouterr().err


def test_bench_data_json_has_a_ratio(capsys):
    assert main(["bench", "data", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    case = report["benchmarks"]["data"]["cases"][0]
    assert case["speedup"] > 0 and case["anchor"] == "json.loads loop"
