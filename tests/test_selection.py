"""Selection flags: -k names/ids/globs, -l, --all, --full, -n --seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcode.harness.dataset import load_dataset
from localcode.harness.selection import Selection, SelectionError, select, split_csv
from sandbox_util import dataset_root

DATASET = dataset_root()


@pytest.fixture(scope="module")
def exercises():
    assert DATASET.is_dir(), f"the polyglot benchmark copy is missing at {DATASET}"
    return load_dataset(DATASET).exercises


def ids(exs):
    return [e.id for e in exs]


def test_exact_name_matches_every_language(exercises):
    got = ids(select(exercises, Selection(keywords=["bowling"])))
    assert got == [f"{lang}/bowling" for lang in ("go", "java", "javascript", "python", "rust")]


def test_lang_name_and_globs(exercises):
    assert ids(select(exercises, Selection(keywords=["python/bowling"]))) == ["python/bowling"]
    ciphers = ids(select(exercises, Selection(keywords=["python/*-cipher"])))
    assert ciphers and all(i.startswith("python/") and i.endswith("-cipher") for i in ciphers)
    by_name_glob = ids(select(exercises, Selection(keywords=["*-cipher"])))
    assert set(ciphers) < set(by_name_glob)


def test_unknown_keyword_is_an_error_naming_it(exercises):
    with pytest.raises(SelectionError, match="nosuch"):
        select(exercises, Selection(keywords=["bowling", "nosuch"]))
    with pytest.raises(SelectionError, match="zzz"):
        select(exercises, Selection(keywords=["zzz*"]))


def test_languages_all_full(exercises):
    assert len(select(exercises, Selection(full=True))) == 225
    js = select(exercises, Selection(all=True))
    assert len(js) == 49 and {e.language for e in js} == {"javascript"}
    two = select(exercises, Selection(languages=["python", "go"]))
    assert len(two) == 34 + 39
    assert ids(select(exercises, Selection(keywords=["bowling"], languages=["rust"]))) == ["rust/bowling"]
    with pytest.raises(SelectionError, match="unknown language"):
        select(exercises, Selection(languages=["cobol"]))


def test_nothing_selected_is_an_error(exercises):
    with pytest.raises(SelectionError, match="no exercises selected"):
        select(exercises, Selection())


def test_seeded_sample_is_reproducible(exercises):
    a = ids(select(exercises, Selection(full=True, n=10, seed=1)))
    b = ids(select(exercises, Selection(full=True, n=10, seed=1)))
    c = ids(select(exercises, Selection(full=True, n=10, seed=2)))
    assert a == b and len(a) == 10 and a != c
    assert a == sorted(a)
    # -n alone samples from everything; a sample larger than the pool is the pool
    assert len(select(exercises, Selection(n=5))) == 5
    assert len(select(exercises, Selection(languages=["cpp"], n=100))) == 26


def test_split_csv():
    assert split_csv(("a,b", "c", " d , ")) == ["a", "b", "c", "d"]
    assert split_csv(None) == []


def test_cli_unknown_keyword_exits_2(tmp_path, monkeypatch, capsys):
    from localcode.cli import main

    monkeypatch.setenv("LOCALCODE_HOME", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--agent", "oracle", "-k", "nosuch", "--dataset", str(DATASET)])
    assert exit_info.value.code == 2
    assert "nosuch" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--agent", "oracle", "--dataset", str(DATASET)])
    assert exit_info.value.code == 2
