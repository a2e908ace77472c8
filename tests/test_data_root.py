"""The data root order (kexue.data.root): --data, KEXUE_DATA, the user cache, ../shared/data, the samples."""

import json
import re
from pathlib import Path

import pytest

from kexue.cli import main
from kexue.data import DataNotFoundError, iter_corpus_zh_modern, read_kgclue, resolve_data_root
from kexue.data.catalogue import DATASETS
from kexue.data.root import SAMPLES_DIR, LayeredDataRoot, data_origin

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _dataset(root: Path, name: str) -> Path:
    (root / name).mkdir(parents=True)
    return root / name


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """A cache with kgclue, a ../shared/data with kgclue and fewclue, and the working directory beside it."""
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "cache"))
    _dataset(tmp_path / "cache" / "data", "kgclue")
    shared = tmp_path / "shared" / "data"
    _dataset(shared, "kgclue")
    _dataset(shared, "fewclue")
    (tmp_path / "main").mkdir()
    monkeypatch.chdir(tmp_path / "main")
    return tmp_path


def test_explicit_beats_environment(tmp_path, monkeypatch):
    (tmp_path / "explicit").mkdir()
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_root() == tmp_path / "env"


def test_environment_beats_the_layers(layout, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(layout / "shared" / "data"))
    assert resolve_data_root() == layout / "shared" / "data"


def test_cache_then_shared_then_samples_per_data_set(layout):
    root = resolve_data_root()
    assert isinstance(root, LayeredDataRoot)
    assert [layer.origin for layer in root.layers] == ["cache", "shared", "samples"]
    assert root / "kgclue/train.json" == layout / "cache" / "data" / "kgclue" / "train.json"
    assert root / "fewclue" / "eprstmt" == Path("../shared/data/fewclue/eprstmt")
    assert root / "vocab/bert-base-chinese-vocab.txt" == SAMPLES_DIR / "vocab" / "bert-base-chinese-vocab.txt"
    assert data_origin(root, "kgclue")[0] == "cache" and data_origin(root, "fewclue")[0] == "shared"
    assert data_origin(root, "vocab")[0] == "samples" and data_origin(root, "corpus_zh_modern") is None
    # a data set found nowhere points into the cache, where `kexue data fetch` would put it
    assert root / "corpus_zh_modern/luxun.jsonl" == layout / "cache" / "data" / "corpus_zh_modern" / "luxun.jsonl"


def test_a_resolved_root_passes_through(layout):
    root = resolve_data_root()
    assert resolve_data_root(root) is root


def test_named_directory_that_does_not_exist_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("KEXUE_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataNotFoundError, match=r"gone \(from KEXUE_DATA\) does not exist.*--data DIR.*KEXUE_DATA=DIR"):
        resolve_data_root()
    with pytest.raises(DataNotFoundError, match=r"from --data"):
        resolve_data_root(tmp_path / "gone")


def test_an_explicit_root_does_not_fall_back(tmp_path):
    with pytest.raises(DataNotFoundError, match="kgclue/train.json does not exist"):
        list(read_kgclue("train", tmp_path))


def test_falls_back_to_the_repository_location(tmp_path, monkeypatch):
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "no-cache"))
    monkeypatch.chdir(tmp_path)  # no ../shared/data from here
    repo_data = tmp_path / "work" / "shared" / "data"
    _dataset(repo_data, "kgclue")
    package = tmp_path / "work" / "main" / "src" / "kexue" / "data"
    package.mkdir(parents=True)
    monkeypatch.setattr("kexue.data.root.__file__", str(package / "root.py"))
    assert data_origin(resolve_data_root(), "kgclue") == ("shared", repo_data.resolve() / "kgclue")


def test_the_samples_alone_serve_a_bare_install(tmp_path, monkeypatch):
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "no-cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("kexue.data.root._shared_candidates", lambda: [Path("../shared/data")])
    root = resolve_data_root()
    assert [layer.origin for layer in root.layers] == ["samples"]
    assert len(list(read_kgclue("train"))) == 600
    with pytest.raises(DataNotFoundError, match=re.escape(str(tmp_path / "no-cache" / "data" / "corpus_zh_modern"))):
        list(iter_corpus_zh_modern(["luxun"]))


def test_no_layer_at_all_tells_how_to_point_at_data(tmp_path, monkeypatch):
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "no-cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("kexue.data.root._shared_candidates", lambda: [Path("../shared/data")])
    monkeypatch.setattr("kexue.data.root.SAMPLES_DIR", tmp_path / "no-samples")
    with pytest.raises(DataNotFoundError, match=r"no data directory found.*`--data DIR` or `KEXUE_DATA=DIR`.*fetch"):
        resolve_data_root()


def test_every_sample_file_reads_with_its_catalogue_reader():
    present = [entry for entry in DATASETS.values() if (SAMPLES_DIR / entry.path).exists()]
    assert len(present) >= 30
    for entry in present:
        rows = sum(1 for _ in entry.read(SAMPLES_DIR))
        assert 0 < rows <= entry.rows, entry.path


def test_samples_stay_small():
    size = sum(path.stat().st_size for path in SAMPLES_DIR.rglob("*") if path.is_file())
    assert size < 8 * 2**20


def test_info_says_which_folder_serves_each_data_set(layout, capsys):
    assert main(["info", "--json"]) == 0
    datasets = json.loads(capsys.readouterr().out)["data"]["datasets"]
    assert datasets["kgclue"]["origin"] == "cache" and datasets["fewclue"]["origin"] == "shared"
    assert datasets["vocab"]["origin"] == "samples" and datasets["corpus_zh_modern"] is None
    assert main(["info"]) == 0
    assert "kgclue             cache: " in capsys.readouterr().out


def test_info_with_an_explicit_root(capsys):
    assert main(["info", "--json", "--data", str(FIXTURES)]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["datasets"]["kgclue"]["origin"] == "explicit"
