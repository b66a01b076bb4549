"""`metrics-center validate` speaks the reader's language: 简体中文 when the terminal's locale is zh-CN
(``METRICS_CENTER_LOCALE``, else ``LC_ALL`` / ``LC_MESSAGES`` / ``LANG``), English otherwise — word for word
what it always printed. Keys, paths, values and code stay as written."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from metrics_center.cli.app import main
from metrics_center.definitions.loader import load_catalog
from metrics_center.i18n.translate import translator, using

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CJK = re.compile(r"[\u4e00-\u9fff]")
#: Words of the English messages below: none may be left in the Chinese output.
ENGLISH_WORDS = (
    "unknown key",
    "did you mean",
    "otherwise remove",
    "unknown argument",
    "accepted:",
    "is not a person",
    "fix the spelling",
    "does not exist",
    "create it",
    "lasts no time",
    "positive number",
    "Input should be",
    "use one of",
    "problem(s)",
    "required key",
    "rename",
    " or ",
)


def _metric(**changes: object) -> dict:
    spec = yaml.safe_load((FIXTURES / "valid" / "metrics" / "gmv_daily.yaml").read_text(encoding="utf-8"))
    spec.update(changes)
    return spec


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two broken metrics: one whose only schema error is a misspelt key (so every later check runs), one whose
    schema fails on a zero timeout and a misspelt grain."""
    root = tmp_path_factory.mktemp("zh")
    shutil.copytree(FIXTURES / "valid" / "sql", root / "sql")
    metrics = root / "metrics"
    metrics.mkdir()
    shutil.copy(FIXTURES / "valid" / "metrics" / "_teams.yaml", metrics / "_teams.yaml")

    gmv = _metric(transform={"sql": "metrics/missing.sql"})
    gmv["descripton"] = gmv.pop("description")
    gmv["quality"][1] = {"expect": "expect_column_values_to_be_between", "column": "value", "min_vlaue": 0}
    gmv["approval"]["stages"][0]["approvers"] = ["zoe"]
    (metrics / "gmv_daily.yaml").write_text(yaml.safe_dump(gmv, allow_unicode=True, sort_keys=False))

    other = _metric(key="gmv_other", grain="dai")
    other["approval"]["timeout"] = "0h"
    (metrics / "gmv_other.yaml").write_text(yaml.safe_dump(other, allow_unicode=True, sort_keys=False))
    return metrics


def _validate(folder: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["validate", str(folder)])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


#: The problems of the folder in English, exactly as `validate` has always written them (after the path).
ENGLISH = [
    "gmv_daily.yaml:1: description: required key `description` is missing — rename `descripton` to `description`",
    "gmv_daily.yaml:50: descripton: unknown key `descripton` — did you mean 'description'? otherwise remove it "
    "(`metrics-center schema` lists every key)",
    "gmv_daily.yaml:21: transform.sql: SQL file 'metrics/missing.sql' does not exist under {sql} — create it or fix "
    "the path",
    "gmv_daily.yaml:27: quality[1].min_vlaue: unknown argument of expect_column_values_to_be_between — did you "
    "mean 'min_value'? accepted: ",
    "gmv_daily.yaml:40: approval.stages[0].approvers[0]: approver 'zoe' is not a person (or a department with "
    "people) in _teams.yaml — add them to _teams.yaml or fix the spelling",
    "gmv_other.yaml:9: grain: Input should be 'day', 'week' or 'month' — did you mean 'day'?",
    "gmv_other.yaml:46: approval.timeout: '0h' lasts no time — write a positive number and a unit, e.g. 30m, 24h, "
    "2d, 1w",
    "7 problem(s) in 2 metric file(s)",
]


def _lines_of(output: str, folder: Path) -> list[str]:
    return [line.replace(f"{folder}/", "") for line in output.strip().splitlines()]


def test_problems_read_in_chinese_when_the_locale_is_zh_cn(folder, capsys, monkeypatch):
    monkeypatch.setenv("METRICS_CENTER_LOCALE", "zh-CN")
    code, output = _validate(folder, capsys)
    assert code == 1
    lines = _lines_of(output, folder)
    assert len(lines) == len(ENGLISH), output
    for line in lines:
        assert CJK.search(line), line
    for word in ENGLISH_WORDS:
        assert word not in output, (word, output)
    sql = folder.parent / "sql"
    expected = [
        "gmv_daily.yaml:1: description: 缺少必填键 `description` — 将 `descripton` 改名为 `description`",
        "gmv_daily.yaml:50: descripton: 未知的键 `descripton` — 是否想写 'description'？否则请删除"
        "（`metrics-center schema` 列出所有键）",
        f"gmv_daily.yaml:21: transform.sql: SQL 文件 'metrics/missing.sql' 在 {sql} 下不存在 — 创建该文件，或修正路径",
        "gmv_daily.yaml:27: quality[1].min_vlaue: expect_column_values_to_be_between 没有这个参数 — 是否想写 "
        "'min_value'？可用的参数：",
        "gmv_daily.yaml:40: approval.stages[0].approvers[0]: 审批人 'zoe' 不是 _teams.yaml 中的人员（或有人员的部门）"
        " — 将其加入 _teams.yaml，或修正拼写",
        "gmv_other.yaml:9: grain: 应为 'day', 'week', 'month' 之一 — 是否想写 'day'？",
        "gmv_other.yaml:46: approval.timeout: '0h' 时长为零 — 写一个正数加单位，如 30m, 24h, 2d, 1w",
        "2 个指标文件中有 7 个问题",
    ]
    for line, want in zip(lines, expected, strict=True):
        assert line.startswith(want), (line, want)


def test_problems_stay_in_english_word_for_word_without_a_chinese_locale(folder, capsys, monkeypatch):
    for locale in ("en", ""):
        monkeypatch.setenv("METRICS_CENTER_LOCALE", locale)
        monkeypatch.setenv("LANG", "C.UTF-8")
        for name in ("LC_ALL", "LC_MESSAGES"):
            monkeypatch.delenv(name, raising=False)
        code, output = _validate(folder, capsys)
        assert code == 1
        assert not CJK.search(output), output
        sql = folder.parent / "sql"
        lines = _lines_of(output, folder)
        for line, want in zip(lines, ENGLISH, strict=True):
            assert line.startswith(want.format(sql=sql)), (line, want)


def test_lang_alone_gives_chinese_and_metrics_center_locale_beats_it(folder, capsys, monkeypatch):
    for name in ("METRICS_CENTER_LOCALE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    _, output = _validate(folder, capsys)
    assert "未知的键 `descripton`" in output and output.strip().endswith("2 个指标文件中有 7 个问题")

    monkeypatch.setenv("LC_ALL", "C")  # LC_ALL beats LANG: English
    _, output = _validate(folder, capsys)
    assert not CJK.search(output)

    monkeypatch.delenv("LC_ALL")
    monkeypatch.setenv("METRICS_CENTER_LOCALE", "en")
    _, output = _validate(folder, capsys)
    assert not CJK.search(output) and output.strip().endswith("7 problem(s) in 2 metric file(s)")


def test_a_valid_folder_says_ok_in_chinese(capsys, monkeypatch):
    monkeypatch.setenv("METRICS_CENTER_LOCALE", "zh_CN.UTF-8")
    code, output = _validate(FIXTURES / "valid" / "metrics", capsys)
    assert code == 0
    assert output.strip() == "ok：1 个指标文件有效"


def test_every_problem_of_the_folder_has_a_translation(folder):
    strict = translator("zh-CN", strict=True)
    with using(strict):
        catalog = load_catalog(folder, sql_root=folder.parent / "sql", check_with_gx=True)
    assert strict.missing == set(), f"untranslated: {sorted(strict.missing)}"
    problems = [p for found in catalog.problems.values() for p in found]
    assert len(problems) == 7
    for problem in problems:
        assert CJK.search(problem.message) and CJK.search(problem.fix), problem


def test_the_parse_cache_never_serves_one_language_to_another(folder, monkeypatch, tmp_path):
    from metrics_center.definitions.catalog_cache import cached_catalog

    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("METRICS_CENTER_PARSE_CACHE", "true")
    sql = folder.parent / "sql"
    english = cached_catalog(folder, sql_root=sql)
    with using("zh-CN"):
        chinese = cached_catalog(folder, sql_root=sql)
    assert english is not chinese
    again = cached_catalog(folder, sql_root=sql)  # from the cache, still English

    def text(catalog) -> str:
        return "\n".join(str(p) for found in catalog.problems.values() for p in found)

    assert not CJK.search(text(english)) and not CJK.search(text(again))
    assert CJK.search(text(chinese))
    assert len(list((tmp_path / "metrics_center_cache").rglob("catalog-*.pickle"))) == 2
