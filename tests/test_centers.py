import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from ceecore.centers import Center, CenterMap, Override, Rule, load_overrides

BEFORE = dt.date(2014, 3, 9)
CHANGE = dt.date(2014, 3, 10)  # 79 FR 13322
LATER = dt.date(2024, 6, 1)

MAPPING_HEADER = "level,prefix,center,effective_from,effective_to,source\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cmap():
    return CenterMap.default()


# ----------------------------------------------------------------- centers


def test_ten_centers(cmap):
    assert cmap.codes == tuple(f"{i:03d}" for i in range(1, 11))
    assert len(cmap.centers) == 10
    assert cmap.centers[0] == Center("001", "Pharmaceuticals, Health & Chemicals", "New York")
    assert cmap.center("010") == Center("010", "Machinery", "Laredo")
    assert cmap.index_of("001") == 0
    assert cmap.index_of("010") == 9
    with pytest.raises(ValueError, match="011"):
        cmap.index_of("011")


def test_default_is_cached():
    assert CenterMap.default() is CenterMap.default()


def test_every_default_rule_cites_a_source(cmap):
    assert all(r.source for r in cmap.rules)
    sources = {r.source for r in cmap.rules}
    assert {"inferred", "79 FR 13322"} <= sources


def test_chapters_98_99_present_without_center(cmap):
    chapter_rules = {r.prefix: r for r in cmap.rules if r.level == "chapter"}
    assert chapter_rules["98"].center is None
    assert chapter_rules["99"].center is None


# ----------------------------------------------------------------- lookups


@pytest.mark.parametrize(
    "hts, on, expected",
    [
        ("8511", BEFORE, "010"),
        ("8511.40.0000", CHANGE, "003"),
        ("8511", LATER, "003"),
        ("9018", LATER, "001"),
        ("9022.14.0000", BEFORE, "001"),
        ("9017", LATER, "007"),
        ("8471.30.0100", LATER, "010"),
        ("8542", LATER, "007"),
        ("8703", LATER, "003"),
        ("8802", BEFORE, "003"),
        ("9903.88.03", LATER, None),
        ("9801", LATER, None),
        ("7701", LATER, None),
        ("0101", LATER, "002"),
        ("6109", LATER, "004"),
        ("2709", LATER, "006"),
        ("3004", LATER, "001"),
        ("7013", BEFORE, "008"),
        ("7013", CHANGE, "009"),
        ("7310", BEFORE, "005"),
        ("7310", CHANGE, "009"),
        ("7414", CHANGE, "009"),
        ("7415", BEFORE, "009"),
        ("7415", CHANGE, "005"),
        ("8308", BEFORE, "009"),
        ("8308", CHANGE, "005"),
        ("7208", LATER, "005"),
        ("7113", LATER, "008"),
        ("9503", LATER, "008"),
    ],
)
def test_center_of(cmap, hts, on, expected):
    assert cmap.center_of(hts, on) == expected


def test_8511_never_electronics(cmap):
    for on in (dt.date(2000, 1, 1), BEFORE, CHANGE, LATER):
        assert cmap.center_of("8511", on) != "007"


def test_center_of_accepts_datetime(cmap):
    assert cmap.center_of("8511", dt.datetime(2014, 3, 10, 0, 0)) == "003"


@pytest.mark.parametrize("hts", ["85", "85x1", "", "abcd"])
def test_center_of_rejects_bad_hts(cmap, hts):
    with pytest.raises(ValueError):
        cmap.center_of(hts, LATER)


# ----------------------------------------------------------- lookup tables


def sample_dates(starts):
    """A few dates inside every epoch: its start, the day after, its last day."""
    days = [0, -365 * 50, 10_000]  # 1970, 1920, 1997: all in the first epoch here
    for i, start in enumerate(starts[1:], start=1):
        days += [start, start + 1]
        days.append(starts[i + 1] - 1 if i + 1 < len(starts) else start + 5000)
    days.append(int(starts[1]) - 1 if len(starts) > 1 else 20_000)
    return [dt.date(1970, 1, 1) + dt.timedelta(days=int(d)) for d in days]


def assert_tables_agree(m):
    starts, table = m.lookup_tables()
    assert starts.dtype == np.int32 and table.dtype == np.int8
    assert starts[0] == np.iinfo(np.int32).min
    assert np.all(np.diff(starts.astype(np.int64)) > 0)
    assert table.shape == (len(starts), 10000)
    assert table.flags["C_CONTIGUOUS"]
    for on in sample_dates(starts):
        day = (on - dt.date(1970, 1, 1)).days
        e = int(np.searchsorted(starts, day, side="right")) - 1
        expected = np.array(
            [
                -1 if (c := m.center_of(f"{h:04d}", on)) is None else m.index_of(c)
                for h in range(10000)
            ],
            dtype=np.int8,
        )
        mismatch = np.flatnonzero(table[e] != expected)
        assert mismatch.size == 0, f"{on}: headings {mismatch[:10]} differ"


def test_lookup_tables_match_center_of(cmap):
    assert_tables_agree(cmap)
    starts, _ = cmap.lookup_tables()
    assert list(starts) == [np.iinfo(np.int32).min, (CHANGE - dt.date(1970, 1, 1)).days]


def test_lookup_tables_cached_and_read_only(cmap):
    a = cmap.lookup_tables()
    assert cmap.lookup_tables()[1] is a[1]
    with pytest.raises(ValueError):
        a[1][0, 0] = 3


def test_lookup_tables_many_epochs(tmp_path):
    mapping = write(
        tmp_path / "extra.csv",
        MAPPING_HEADER
        + "heading,8471,007,2010-01-01,2012-01-01,test\n"
        + "heading,8471,,2012-01-01,2013-06-30,test\n"
        + "heading,8471,001,2020-01-01,,test\n"
        + "chapter,85,007,,2019-01-01,test\n"
        + "chapter,85,010,2019-01-01,,test\n",
    )
    m = CenterMap.from_files(mapping=mapping)
    starts, _ = m.lookup_tables()
    assert len(starts) == 1 + 6  # 2010, 2012, 2013, 2014 (default), 2019, 2020
    assert_tables_agree(m)
    assert m.center_of("8471", dt.date(2011, 1, 1)) == "007"
    assert m.center_of("8471", dt.date(2012, 5, 1)) is None
    assert m.center_of("8471", dt.date(2015, 1, 1)) == "010"  # chapter 84 default
    assert m.center_of("8542", dt.date(2019, 1, 1)) == "010"
    assert m.center_of("8511", dt.date(2019, 1, 1)) == "003"  # heading still wins


# ------------------------------------------------------------------- arrow


def test_centers_table(cmap):
    t = cmap.centers_table(LATER)
    assert isinstance(t, pa.Table)
    assert t.column_names == [
        "code", "name", "field_office", "chapters", "plus_headings", "minus_headings"
    ]
    rows = {r["code"]: r for r in t.to_pylist()}
    assert rows["001"]["chapters"] == "28-38"
    assert rows["001"]["plus_headings"] == "9018-9022"
    assert rows["007"]["minus_headings"] == "8511,9018-9022"
    assert rows["003"]["plus_headings"] == "8511"
    assert rows["005"]["minus_headings"] == "7309-7311,7414"
    before = {r["code"]: r for r in cmap.centers_table(BEFORE).to_pylist()}
    assert before["010"]["plus_headings"] == "8511"
    assert before["008"]["plus_headings"] == "7013"


def test_rules_table(cmap):
    t = cmap.rules_table()
    assert t.num_rows == len(cmap.rules)
    assert t.schema.field("effective_from").type == pa.date32()
    rows = [r for r in t.to_pylist() if r["prefix"] == "8511"]
    assert [(r["center"], r["effective_from"], r["effective_to"]) for r in rows] == [
        ("010", None, CHANGE),
        ("003", CHANGE, None),
    ]


# ------------------------------------------------------------ user files


def test_mapping_extend_replaces_same_level_prefix(tmp_path):
    path = write(
        tmp_path / "map.csv",
        "level,prefix,center,effective_from,effective_to\n"
        "heading,8511,007,,\n"
        "heading,9401,008,2020-01-01,\n",
    )
    m = CenterMap.from_files(mapping=path)
    assert m.center_of("8511", BEFORE) == "007"  # both dated default rows dropped
    assert m.center_of("8511", LATER) == "007"
    assert m.center_of("9401", LATER) == "008"
    assert m.center_of("9018", LATER) == "001"  # defaults kept
    assert len([r for r in m.rules if r.prefix == "8511"]) == 1
    assert {r.source for r in m.rules if r.prefix in ("8511", "9401")} == {"user"}
    assert CenterMap.default().center_of("8511", BEFORE) == "010"  # default untouched


def test_mapping_replace(tmp_path):
    path = write(tmp_path / "map.csv", MAPPING_HEADER + "chapter,85,007,,,official\n")
    m = CenterMap.from_files(mapping=path, replace=True)
    assert len(m.rules) == 1
    assert m.center_of("8511", LATER) == "007"
    assert m.center_of("0101", LATER) is None
    assert_tables_agree(m)


def test_centers_extend_and_replace(tmp_path):
    path = write(
        tmp_path / "centers.csv",
        "code,name,field_office\n010,Machinery & Equipment,Laredo\n011,Test Center,Nowhere\n",
    )
    m = CenterMap.from_files(centers=path)
    assert m.codes[-1] == "011" and len(m.codes) == 11
    assert m.center("010").name == "Machinery & Equipment"
    mapping = write(tmp_path / "map.csv", MAPPING_HEADER + "heading,9503,011,,,\n")
    m = CenterMap.from_files(centers=path, mapping=mapping)
    assert m.center_of("9503", LATER) == "011"
    assert_tables_agree(m)

    # replacing the centers while keeping a default mapping that needs them fails
    with pytest.raises(ValueError, match="hts_centers.csv: line"):
        CenterMap.from_files(centers=path, replace=True)
    m = CenterMap.from_files(centers=path, mapping=mapping, replace=True)
    assert m.codes == ("010", "011")
    assert m.center_of("9503", LATER) == "011"


@pytest.mark.parametrize(
    "body, message",
    [
        ("heading,8511,012,,,x\n", r"line 2: unknown center code '012'"),
        ("heading,851,003,,,x\n", r"line 2: heading prefix '851' must be 4 digits"),
        ("chapter,851,003,,,x\n", r"line 2: chapter prefix '851' must be 2 digits"),
        ("section,85,003,,,x\n", r"line 2: level 'section'"),
        ("heading,8511,003,2014-13-01,,x\n", r"line 2: effective_from '2014-13-01'"),
        ("heading,8511,003,,10/03/2014,x\n", r"line 2: effective_to '10/03/2014'"),
        ("heading,8511,003,2014-03-10,2014-03-10,x\n", r"line 2: effective_from 2014-03-10 is not before"),
        (
            "heading,8511,003,2010-01-01,2015-01-01,x\nheading,8511,010,2014-01-01,,x\n",
            r"line 3: heading 8511 dates overlap the rule at .*line 2",
        ),
        ("heading,8511,003,,,x\nheading,8511,010,,,x\n", r"line 3: heading 8511 dates overlap"),
        ("heading,8511,003,,,x,extra\n", r"line 2: more fields"),
    ],
)
def test_bad_mapping_rows(tmp_path, body, message):
    path = write(tmp_path / "bad_map.csv", MAPPING_HEADER + body)
    with pytest.raises(ValueError, match=message) as info:
        CenterMap.from_files(mapping=path)
    assert "bad_map.csv" in str(info.value)


def test_adjacent_ranges_are_fine(tmp_path):
    path = write(
        tmp_path / "map.csv",
        MAPPING_HEADER + "heading,8511,003,,2014-03-10,x\nheading,8511,010,2014-03-10,,x\n",
    )
    m = CenterMap.from_files(mapping=path)
    assert m.center_of("8511", BEFORE) == "003"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty file"),
        ("level,prefix,centre,effective_from,effective_to\n", "line 1: header"),
    ],
)
def test_bad_mapping_header(tmp_path, text, message):
    path = write(tmp_path / "bad_map.csv", text)
    with pytest.raises(ValueError, match=message) as info:
        CenterMap.from_files(mapping=path)
    assert "bad_map.csv" in str(info.value)


@pytest.mark.parametrize(
    "body, message",
    [
        ("11,Short,X\n", r"line 2: center code '11' is not 3 digits"),
        ("011,,X\n", r"line 2: center 011 has no name"),
        ("011,A,X\n011,B,Y\n", r"line 3: center code 011 already on line 2"),
    ],
)
def test_bad_center_rows(tmp_path, body, message):
    path = write(tmp_path / "bad_centers.csv", "code,name,field_office\n" + body)
    with pytest.raises(ValueError, match=message) as info:
        CenterMap.from_files(centers=path)
    assert "bad_centers.csv" in str(info.value)


def test_missing_file_is_value_error(tmp_path):
    with pytest.raises(ValueError, match="nope.csv"):
        CenterMap.from_files(mapping=tmp_path / "nope.csv")


def test_constructor_from_objects():
    m = CenterMap(
        [Center("002", "B", ""), Center("001", "A", "")],
        [Rule("chapter", "01", "002"), Rule("heading", "0101", None, dt.date(2020, 1, 1))],
    )
    assert m.codes == ("001", "002")
    assert m.center_of("0101", dt.date(2019, 1, 1)) == "002"
    assert m.center_of("0101", dt.date(2020, 1, 1)) is None
    assert_tables_agree(m)
    with pytest.raises(ValueError, match="rule 1: unknown center code '003'"):
        CenterMap([Center("001", "A", "")], [Rule("chapter", "01", "003")])


# --------------------------------------------------------------- overrides


def test_load_overrides(tmp_path, cmap):
    path = write(
        tmp_path / "overrides.csv",
        "importer_id,center,note\n"
        "12-3456789AB,003,appeal granted 2024-05-02\n"
        "98-7654321CD,010,\n"
        "12-3456789AB,003,duplicate row is fine\n",
    )
    got = load_overrides(path, cmap)
    assert got == {
        "12-3456789AB": Override("003", "appeal granted 2024-05-02"),
        "98-7654321CD": Override("010", ""),
    }


def test_load_overrides_note_optional(tmp_path, cmap):
    path = write(tmp_path / "overrides.csv", "importer_id,center\n120101-00001,005\n")
    assert load_overrides(path, cmap) == {"120101-00001": Override("005", "")}


def test_load_overrides_uses_given_centers(tmp_path):
    centers = write(tmp_path / "centers.csv", "code,name,field_office\n011,Test,X\n")
    m = CenterMap.from_files(centers=centers)
    path = write(tmp_path / "overrides.csv", "importer_id,center,note\nA,011,\n")
    assert load_overrides(path, m)["A"].center == "011"
    with pytest.raises(ValueError, match="unknown center code '011'"):
        load_overrides(path, CenterMap.default())


@pytest.mark.parametrize(
    "body, message",
    [
        ("A,012,\n", r"line 2: unknown center code '012'"),
        ("A,,\n", r"line 2: unknown center code ''"),
        (",003,\n", r"line 2: importer_id is empty"),
        ("A,003,\nB,004,\nA,005,\n", r"line 4: importer A overridden to 005, but to 003 on line 2"),
    ],
)
def test_bad_overrides(tmp_path, cmap, body, message):
    path = write(tmp_path / "bad_overrides.csv", "importer_id,center,note\n" + body)
    with pytest.raises(ValueError, match=message) as info:
        load_overrides(path, cmap)
    assert "bad_overrides.csv" in str(info.value)
