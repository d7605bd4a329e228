"""Option files are outside data too: any bytes give a loaded option or one clear ValueError.

Hypothesis writes column mappings and scoring configs as TOML, documents that mix the
keys the loaders know with values of every TOML type (and infinities, NaN, huge
numbers), and Center, rule and override files as CSV. A loaded scoring config must also
score: it is used on a small batch. ``CEECORE_FUZZ_EXAMPLES`` runs longer.
"""

from __future__ import annotations

import datetime as dt
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ceecore
from ceecore import synth
from ceecore.centers import CenterMap, load_overrides
from ceecore.schema import CANONICAL, ColumnMapping
from ceecore.scoring import ScoringConfig, _default_config_doc

EXAMPLES = int(os.environ.get("CEECORE_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_scalars = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, 1, -1, 30, 2**62]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.inf, -math.inf, math.nan, 0.5, 1e300]),
    st.text(max_size=12), st.sampled_from(list(CANONICAL) + ["%Y-%m-%d", "%d/%m/%Y", "%Q", ""]),
    st.dates(min_value=dt.date(1, 1, 1)),
)
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=6)


def _toml_key(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"').encode("unicode_escape").decode().replace(
        '\\\\"', '\\"') + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == math.inf else "-inf" if value == -math.inf
                                             else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _toml_key(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"


def _toml(doc: dict[str, object]) -> str:
    """A TOML document: top-level scalars first, then one table per dict."""
    top = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{_toml_key(k)}]\n" + "\n".join(f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top + tables) + "\n"


def _sections(known: dict[str, list[str]]) -> st.SearchStrategy[dict[str, object]]:
    """Documents with the known sections and keys (and a few unknown ones), any values."""
    section = st.sampled_from([*known, "other"])
    return st.dictionaries(section, st.one_of(
        _scalars, st.dictionaries(st.one_of(*(st.sampled_from(keys) for keys in known.values() if keys),
                                            st.text(max_size=6)), _values, max_size=5)), max_size=4)


_MAPPING_KEYS = {"columns": list(CANONICAL), "constants": list(CANONICAL), "options": ["date_format"],
                 "history": ["keys"]}
_CONFIG_KEYS = {name: list(values) for name, values in _default_config_doc().items()}


def _loads_or_refuses(load, path):  # noqa: ANN001, ANN202
    try:
        return load(path)
    except ValueError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return None


@FUZZ
@given(doc=_sections(_MAPPING_KEYS))
def test_any_column_mapping_loads_or_is_refused(tmp_path, doc):
    path = tmp_path / "mapping.toml"
    path.write_text(_toml(doc))
    mapping = _loads_or_refuses(ColumnMapping.from_toml, path)
    if mapping is not None:
        assert all(target in CANONICAL for target in mapping.columns.values())


@pytest.fixture(scope="module")
def lines():
    return synth.generate_table(lines=3_000, accounts=60, seed=3)


@FUZZ
@given(doc=_sections(_CONFIG_KEYS))
def test_any_scoring_config_loads_or_is_refused_and_a_loaded_one_scores(tmp_path, lines, doc):
    path = tmp_path / "scoring.toml"
    path.write_text(_toml(doc))
    config = _loads_or_refuses(ScoringConfig.from_toml, path)
    if config is not None:
        scored = ceecore.score(lines, ceecore.fit(lines, config=config, threads=1), threads=1).lines
        assert scored.num_rows == lines.num_rows


@FUZZ
@given(text=st.one_of(st.text(max_size=200),
                      st.lists(st.lists(st.one_of(st.text(max_size=8), st.sampled_from(
                          ["code", "name", "field_office", "level", "prefix", "center", "effective_from",
                           "effective_to", "source", "importer_id", "note", "CEE001", "heading", "8511",
                           "2020-01-01", "9999-12-31", "chapter", ""])), max_size=6), max_size=6)
                      .map(lambda rows: "\n".join(",".join(r) for r in rows))))
def test_any_center_rule_or_override_file_loads_or_is_refused(tmp_path, text):
    path = tmp_path / "file.csv"
    path.write_text(text)
    _loads_or_refuses(lambda p: CenterMap.from_files(centers=p), path)
    _loads_or_refuses(lambda p: CenterMap.from_files(mapping=p), path)
    _loads_or_refuses(load_overrides, path)


def test_bytes_that_are_not_text_are_refused(tmp_path):
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe\x00columns = 5\x80")
    for load in (ColumnMapping.from_toml, ScoringConfig.from_toml, lambda p: CenterMap.from_files(centers=p),
                 load_overrides):
        with pytest.raises(ValueError):
            load(path)
