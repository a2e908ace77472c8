"""``kexue bench data``: our validating JSONL readers against bare ``json.loads`` loops.

Both sides read the same KgCLUE-shaped file (written to a temporary folder, so no data is
needed). Case 1 measures the generic reader alone (per-line UTF-8 decoding with line numbers
for errors) against ``[json.loads(line) for line in file]``. Case 2 builds typed KgCLUE records
(keys and types checked, balanced-parenthesis meaning split) against a script-style loop that
splits the same fields without checks. The ratios are the price of the validation.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

from kexue.bench.harness import Comparison, compare, register_benchmark
from kexue.data.kgclue import ANSWER_SEPARATOR, parse_kgclue
from kexue.data.readers import read_jsonl


def _write_kgclue_like(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    characters = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"
    with path.open("w", encoding="utf-8") as handle:
        for index in range(rows):
            words = ["".join(rng.choices(characters, k=rng.randint(2, 8))) for _ in range(4)]
            answer = f"{words[0]}（{words[1]}） ||| {words[2]} ||| {words[3]}"
            question = f"{words[0]}的{words[2]}是什么？"
            handle.write(json.dumps({"id": index, "question": question, "answer": answer}, ensure_ascii=False) + "\n")


def _json_loads_loop(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _naive_kgclue_loop(path: Path) -> list[tuple]:
    """What a typical script does: parse, split the answer, cut the meaning at the first "（"."""
    rows = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            obj = json.loads(line)
            subject, predicate, object_ = obj["answer"].split(ANSWER_SEPARATOR)
            name, _, meaning = subject.partition("（")
            rows.append((obj["id"], obj["question"], subject, name, meaning.rstrip("）"), predicate, object_))
    return rows


@register_benchmark("data", anchor="json.loads loop", summary="validating JSONL readers vs bare parsing loops")
def run(quick: bool) -> list[Comparison]:
    rows = 20_000 if quick else 200_000
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "kgclue_like.json"
        _write_kgclue_like(path, rows)
        cases = (
            ("generic JSONL reader (dict records)", dict, "json.loads loop", _json_loads_loop,
             "line-numbered errors cost at most 1.5x (speedup >= 0.67)", 0.67),
            ("KgCLUE typed records", parse_kgclue, "json.loads + split loop", _naive_kgclue_loop,
             "validation and balanced-parenthesis meanings cost at most 2x (speedup >= 0.5)", 0.5),
        )
        return [
            compare(f"{case}, {rows} rows", lambda build=build: list(read_jsonl(path, build)),
                    anchor_name, lambda anchor=anchor: anchor(path), repeats=repeats, measure_memory=True,
                    goal=goal, goal_met=lambda c, least=least: c.speedup >= least, rows=rows)
            for case, build, anchor_name, anchor, goal, least in cases
        ]
