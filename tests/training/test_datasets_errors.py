"""Every bad-input path gives a DatasetError that names the file, the record and what was
expected; --skip-invalid skips and reports instead."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.datasets import (
    DatasetError,
    default_data_dir,
    load_dialogues,
    load_dialogues_with_report,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _sys(text: str, strategy: str = "Question") -> dict:
    return {"text": text, "speaker": "sys", "strategy": strategy}


def _usr(text: str) -> dict:
    return {"text": text, "speaker": "usr"}


def _esconv_line(dialog: list | None = None, **extra) -> str:
    record = {
        "emotion_type": "anxiety",
        "problem_type": "job crisis",
        "situation": "worried about work",
        "experience_type": "Current Experience",
        "survey_score": {"seeker": {"initial_emotion_intensity": "4"}, "supporter": {}},
        "dialog": [_usr("I am worried."), _sys("Why is that?")] if dialog is None else dialog,
    }
    record.update(extra)
    return json.dumps(record)


def _write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _esconv_dir(root: Path, test_lines: list[str]) -> Path:
    _write(root, "esconv/train.jsonl", _esconv_line() + "\n")
    _write(root, "esconv/valid.jsonl", _esconv_line() + "\n")
    return _write(root, "esconv/test.jsonl", "\n".join(test_lines) + "\n")


def _error(dataset: str, root: Path, split: str | None = None) -> str:
    with pytest.raises(DatasetError) as excinfo:
        load_dialogues(dataset, split, data_dir=root)
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --- missing files and settings ---------------------------------------------------------------


def test_missing_data_dir(tmp_path):
    message = _error("esconv", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in message
    assert "EVALSITE_DATA_DIR" in message and "--data-dir" in message


@pytest.mark.parametrize(
    ("dataset", "looked_for", "published"),
    [
        (
            "esconv",
            ["esconv/train.jsonl", "esconv/ESConv.json"],
            "thu-coai/Emotional-Support-Conversation",
        ),
        ("esconv-failed", ["esconv/FailedESConv.json"], "thu-coai/Emotional-Support-Conversation"),
        ("augesc", ["augesc/augesc.txt"], "thu-coai/augesc"),
        ("extes", ["extes/ExTES.json"], "pandazzh2020/ExTES"),
    ],
)
def test_missing_file_says_where_and_how(tmp_path, dataset, looked_for, published):
    message = _error(dataset, tmp_path)
    for relative in looked_for:
        assert str(tmp_path / relative) in message
    assert "EVALSITE_DATA_DIR" in message and "--data-dir" in message
    assert published in message


def test_missing_one_split_names_that_split(tmp_path):
    _write(tmp_path, "esconv/train.jsonl", _esconv_line() + "\n")
    assert load_dialogues("esconv", "train", data_dir=tmp_path)[0].id == "esconv/train/0"
    assert str(tmp_path / "esconv" / "valid.jsonl") in _error("esconv", tmp_path)


def test_unknown_dataset_and_split(tmp_path):
    assert "'esconv2'" in _error("esconv2", tmp_path) and "augesc" in _error("x", tmp_path)
    message = _error("esconv", tmp_path, split="dev")
    assert "'dev'" in message and "valid" in message


def test_data_dir_comes_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSITE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    _esconv_dir(tmp_path, [_esconv_line()])
    assert len(load_dialogues("esconv")) == 3
    monkeypatch.setenv("EVALSITE_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match="from EVALSITE_DATA_DIR"):
        load_dialogues("esconv")
    monkeypatch.delenv("EVALSITE_DATA_DIR")
    repo = Path(__file__).resolve().parents[2]
    assert default_data_dir() == repo.parent / "shared" / "data"


# --- ESConv .jsonl records ---------------------------------------------------------------------


def test_invalid_json_names_file_and_line(tmp_path):
    path = _esconv_dir(tmp_path, [_esconv_line(), '{"dialog": [', _esconv_line()])
    message = _error("esconv", tmp_path, "test")
    assert f"{path}, line 2" in message and "invalid JSON" in message


def test_unknown_speaker_names_record_and_turn(tmp_path):
    path = _esconv_dir(tmp_path, [_esconv_line([_usr("hi"), {"text": "hey", "speaker": "bot"}])])
    message = _error("esconv", tmp_path)
    assert f"{path}, line 1, dialog[1]" in message
    assert "unknown speaker 'bot'" in message and "'usr' or 'sys'" in message


def test_unknown_strategy_names_record_and_turn(tmp_path):
    lines = [_esconv_line(), _esconv_line([_usr("hi"), _sys("hello", "Small talk")])]
    path = _esconv_dir(tmp_path, lines)
    message = _error("esconv", tmp_path)
    assert f"{path}, line 2, dialog[1].strategy" in message
    assert "'Small talk'" in message and "Providing Suggestions" in message


def test_empty_dialogue(tmp_path):
    path = _esconv_dir(tmp_path, [_esconv_line(), _esconv_line(), _esconv_line([])])
    message = _error("esconv", tmp_path)
    assert f"{path}, line 3" in message and "empty" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[1, 2]", "expected a JSON object, got a JSON array"),
        ('{"situation": "x"}', "'dialog' must be a list of turns, got null"),
        (_esconv_line([_usr("hi"), "hello"]), "dialog[1]: a turn must be an object"),
        (_esconv_line([{"text": 5, "speaker": "usr"}]), "dialog[0]: 'text' must be a string"),
        (_esconv_line([{"speaker": "usr"}]), "dialog[0]: 'text' must be a string, got null"),
        (
            _esconv_line(survey_score={"seeker": {"empathy": "high"}}),
            "survey_score.seeker.empathy: must be an integer score, got 'high'",
        ),
        (_esconv_line(survey_score=[1]), "survey_score: must be an object"),
        (_esconv_line(situation=["x"]), "situation: must be a string, got array"),
    ],
)
def test_malformed_records(tmp_path, line, expected):
    path = _esconv_dir(tmp_path, [line])
    message = _error("esconv", tmp_path, "test")
    assert f"{path}, line 1" in message and expected in message


def test_invalid_utf8_names_line(tmp_path):
    path = _esconv_dir(tmp_path, [_esconv_line()])
    path.write_bytes(_esconv_line().encode() + b"\n" + b'{"situation": "caf\xe9"}\n')
    message = _error("esconv", tmp_path, "test")
    assert f"{path}, line 2: not valid UTF-8" in message


def test_blank_lines_are_ignored_and_keep_line_ids(tmp_path):
    _esconv_dir(tmp_path, [_esconv_line(), "", "   ", _esconv_line()])
    assert [d.id for d in load_dialogues("esconv", "test", data_dir=tmp_path)] == [
        "esconv/test/0",
        "esconv/test/3",
    ]


# --- raw-schema JSON lists: ESConv.json, FailedESConv.json ----------------------------------


def _raw_record(dialog: list) -> dict:
    return {"situation": "s", "emotion_type": "sadness", "problem_type": "p", "dialog": dialog}


def _raw_turn(speaker: str, text: str, strategy: str | None = None) -> dict:
    return {
        "speaker": speaker,
        "annotation": {"strategy": strategy} if strategy else {},
        "content": text,
    }


def test_raw_esconv_invalid_json_names_line_and_column(tmp_path):
    path = _write(tmp_path, "esconv/ESConv.json", '[\n  {"dialog": []},\n  {"dialog": [}\n]')
    message = _error("esconv", tmp_path)
    assert f"{path}, line 3, column" in message and "invalid JSON" in message


def test_raw_esconv_must_be_a_list(tmp_path):
    path = _write(tmp_path, "esconv/ESConv.json", '{"dialog": []}')
    assert f"{path}: expected one JSON list of ESConv conversations, got a JSON object" in _error(
        "esconv", tmp_path
    )


def test_raw_failed_esconv_record_errors(tmp_path):
    good = _raw_record([_raw_turn("speaker", "hi"), _raw_turn("listener", "hello", "Questions")])
    bad_speaker = _raw_record([_raw_turn("speaker", "hi"), _raw_turn("helper", "hello", "Other")])
    path = _write(tmp_path, "esconv/FailedESConv.json", json.dumps([good, bad_speaker]))
    message = _error("esconv-failed", tmp_path)
    assert f"{path}, record [1], dialog[1]" in message and "unknown speaker 'helper'" in message
    bad_strategy = _raw_record([_raw_turn("listener", "hello", "Cheering up")])
    path.write_text(json.dumps([good, good, bad_strategy]))
    message = _error("esconv-failed", tmp_path)
    assert f"{path}, record [2], dialog[0].annotation.strategy" in message
    assert "'Cheering up'" in message
    path.write_text(json.dumps([good, _raw_record([])]))
    assert f"{path}, record [1]" in _error("esconv-failed", tmp_path)


# --- AugESC ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "kind", "expected"),
    [
        ('[["usr", "hi"], ["sys", "hello"', "invalid JSON", "line 2: invalid JSON"),
        (
            '[["usr", "hi"], ["bot", "hello"]]',
            "unknown speaker",
            "line 2, [1]: unknown speaker 'bot'",
        ),
        ("[]", "empty dialogue", "line 2: the dialogue has no turns"),
        ('[["usr", "hi", "extra"]]', "bad record", "line 2, [0]: expected a [speaker, text] pair"),
        ('[["usr", null]]', "bad record", "line 2, [0]: text must be a string, got null"),
        ('{"dialog": []}', "bad record", "line 2: expected a list of [speaker, text] pairs"),
    ],
)
def test_augesc_errors_and_skips(tmp_path, line, kind, expected):
    good = '[["usr", "I feel low."], ["sys", "I am here for you."]]'
    path = _write(tmp_path, "augesc/augesc.txt", f"{good}\n{line}\n{good}\n")
    message = _error("augesc", tmp_path)
    assert f"{path}, {expected}" in message
    dialogues, report = load_dialogues_with_report("augesc", data_dir=tmp_path, skip_invalid=True)
    assert [d.id for d in dialogues] == ["augesc/train/0", "augesc/train/2"]
    assert [(s.where, s.kind) for s in report.skipped] == [("line 2", kind)]


# --- ExTES -------------------------------------------------------------------------------------


def _extes_record(content: list) -> dict:
    return {"scene": "Academic Stress", "description": "exam worries", "content": content}


GOOD_EXTES = _extes_record(
    [{"User": "I failed."}, {"AI": "I'm sorry.", "AI Strategy": "Empathetic Statements"}]
)


@pytest.mark.parametrize(
    ("record", "kind", "expected"),
    [
        (
            _extes_record([{"User": "hi"}, {"Bot": "hello"}]),
            "unknown speaker",
            "content[1]: turn has keys ['Bot']; expected 'User' and/or 'AI'",
        ),
        (_extes_record([]), "empty dialogue", "'content' is empty"),
        ({"scene": "x", "dialog": []}, "bad record", "'content' must be a list of turns, got null"),
        ("just text", "bad record", "expected a JSON object, got string"),
        (
            _extes_record([{"AI": {"Text": "hello"}}]),
            "bad record",
            "content[0].AI.Response: must be a string, got null",
        ),
        (
            _extes_record([{"User": ["hi"]}]),
            "bad record",
            "content[0].User: must be a string, got array",
        ),
        (
            _extes_record([{"AI": "hi", "AI Strategy": 7}]),
            "unknown strategy",
            "content[0].AI Strategy: strategy must be a string",
        ),
        (_extes_record(["hi"]), "bad record", "content[0]: a turn must be an object"),
    ],
)
def test_extes_errors_and_skips(tmp_path, record, kind, expected):
    path = _write(tmp_path, "extes/ExTES.json", json.dumps([GOOD_EXTES, record, GOOD_EXTES]))
    message = _error("extes", tmp_path)
    assert f"{path}, record [1]" in message and expected in message
    dialogues = load_dialogues("extes", data_dir=tmp_path, skip_invalid=True)
    assert [d.id for d in dialogues] == ["extes/train/0", "extes/train/2"]
    assert [(s.where, s.kind) for s in dialogues.report.skipped] == [("record [1]", kind)]


def test_extes_invalid_json_and_non_list(tmp_path):
    path = _write(tmp_path, "extes/ExTES.json", json.dumps([GOOD_EXTES], indent=1)[:-3])
    message = _error("extes", tmp_path)
    assert f"{path}, line" in message and "invalid JSON" in message
    path.write_text(json.dumps({"data": [GOOD_EXTES]}))
    assert "expected one JSON list of ExTES dialogues" in _error("extes", tmp_path)
    # a file that is not JSON at all cannot be skipped record by record
    path.write_text("not json")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_dialogues("extes", data_dir=tmp_path, skip_invalid=True)


def test_extes_unknown_labels_of_skipped_records_are_not_counted(tmp_path):
    bad = _extes_record([{"AI": "hi", "AI Strategy": "Humor"}, {"Bot": "x"}])
    _write(tmp_path, "extes/ExTES.json", json.dumps([GOOD_EXTES, bad]))
    dialogues = load_dialogues("extes", data_dir=tmp_path, skip_invalid=True)
    assert len(dialogues) == 1 and not dialogues.report.unknown_strategies


# --- skip_invalid on ESConv ------------------------------------------------------------------


def test_skip_invalid_reports_how_many_and_why(tmp_path):
    lines = [
        _esconv_line(),
        "{not json",
        _esconv_line([_usr("hi"), {"text": "x", "speaker": "bot"}]),
        _esconv_line([_sys("hello", "Jokes")]),
        _esconv_line([]),
        _esconv_line(),
    ]
    path = _esconv_dir(tmp_path, lines)
    dialogues, report = load_dialogues_with_report(
        "esconv", "test", data_dir=tmp_path, skip_invalid=True
    )
    assert [d.id for d in dialogues] == ["esconv/test/0", "esconv/test/5"]
    assert report.loaded == 2 and dialogues.report is report
    assert [(s.where, s.kind) for s in report.skipped] == [
        ("line 2", "invalid JSON"),
        ("line 3", "unknown speaker"),
        ("line 4", "unknown strategy"),
        ("line 5", "empty dialogue"),
    ]
    assert all(s.file == str(path) and s.message.startswith(str(path)) for s in report.skipped)
    assert report.skip_reasons() == {
        "invalid JSON": 1,
        "unknown speaker": 1,
        "unknown strategy": 1,
        "empty dialogue": 1,
    }
    assert "skipped 4 invalid records" in report.summary()


def test_raw_esconv_skip_keeps_official_split(tmp_path):
    """Skipping an invalid record must not move the others to another split."""
    source = json.loads((FIXTURES / "esconv_raw" / "esconv" / "ESConv.json").read_text())
    expected = {
        s: [d.id for d in load_dialogues("esconv", s, data_dir=FIXTURES / "esconv_raw")]
        for s in ("train", "valid", "test")
    }
    source[0]["dialog"][0]["speaker"] = "robot"
    _write(tmp_path, "esconv/ESConv.json", json.dumps(source))
    loaded = load_dialogues("esconv", data_dir=tmp_path, skip_invalid=True)
    assert [s.where for s in loaded.report.skipped] == ["record [0]"]
    got = {s: [d.id for d in loaded if d.id.split("/")[1] == s] for s in expected}
    assert sum(len(v) for v in got.values()) == 19
    for split in expected:
        assert set(got[split]) <= set(expected[split])
