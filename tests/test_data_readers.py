"""Generic line readers and their errors (kexue.data.readers); the data root is in test_data_root.py."""

from pathlib import Path

import pytest

from kexue.data import DataFormatError, DataNotFoundError, KexueDataError, read_jsonl, read_tsv
from kexue.data.readers import RecordError, iter_lines, require

FIXTURES = Path(__file__).parent / "fixtures"


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_lines_skip_blanks_strip_crlf_and_bom_and_keep_numbers(tmp_path):
    path = _write(tmp_path, "a.txt", b"\xef\xbb\xbffirst\r\n\r\n  \nsecond\u2028half\n".replace(b"\\u2028", "\u2028".encode()))
    assert list(iter_lines(path)) == [(1, "first"), (4, "second\u2028half")]


def test_u2028_inside_json_string_does_not_split_the_line(tmp_path):
    path = _write(tmp_path, "a.json", '{"text": "a\u2028b"}\n{"text": "c"}\n'.encode())
    assert [obj["text"] for obj in read_jsonl(path, dict)] == ["a\u2028b", "c"]


def test_empty_file_yields_nothing(tmp_path):
    assert list(read_jsonl(_write(tmp_path, "e.json", b""), dict)) == []
    assert list(read_tsv(_write(tmp_path, "e.tsv", b"\n\n"), tuple, fields=3)) == []


def test_missing_file_fails_at_call_time_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.json does not exist") as info:
        read_jsonl(tmp_path / "nothing.json", dict)
    assert isinstance(info.value, DataNotFoundError) and isinstance(info.value, KexueDataError)
    assert info.value.filename == str(tmp_path / "nothing.json")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a": 1}\n\n{"a": \n', r"b\.json:3: bad JSON: Expecting value at column 7"),
        (b'{"a": 1}\n[1, 2]\n', r"b\.json:2: expected a JSON object, got list"),
        (b'{"a": 1}\n{"b": 2}\n', r"b\.json:2: missing key 'a'"),
        (b'{"a": "1"}\n', r"b\.json:1: key 'a' must be int, got str '1'"),
        (b'{"a": true}\n', r"b\.json:1: key 'a' must be int, got bool True"),
        (b'{"a": 1}\n{"a": "\xe5\xa5"}\n', r"b\.json:2: not valid UTF-8: bytes b'\\xe5\\xa5'"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path, data, message):
    path = _write(tmp_path, "b.json", data)
    with pytest.raises(DataFormatError, match=message) as info:
        list(read_jsonl(path, lambda obj: require(obj, "a", int)))
    assert info.value.path == path and str(info.value).startswith(str(path))


def test_tsv_field_counts_header_and_literal_quotes(tmp_path):
    path = _write(tmp_path, "t.tsv", b'label\ttext\n1\the said "hi\n0\tok\textra\n')
    rows = read_tsv(path, tuple, fields=2, header="label")
    assert next(rows) == ("1", 'he said "hi')
    with pytest.raises(DataFormatError, match=r"t\.tsv:3: expected 2 tab-separated fields, got 3"):
        next(rows)
    assert list(read_tsv(path, tuple, fields=2, header="label", extra_fields=True))[-1] == ("0", "ok")
    with pytest.raises(DataFormatError, match=r"t\.tsv:1: expected a header starting with 'id', got 'label'"):
        list(read_tsv(path, tuple, fields=2, header="id"))


def test_builder_record_error_gets_the_location(tmp_path):
    def build(fields):
        raise RecordError("bad label 'x'")

    with pytest.raises(DataFormatError, match=r"t\.tsv:2: bad label 'x'"):
        list(read_tsv(_write(tmp_path, "t.tsv", b"\na\tb\n"), build, fields=2))
