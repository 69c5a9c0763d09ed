"""jaxnn.tabular: a user's file read into features, an encoded target and a split.

Files are written here with pyarrow, NumPy or as text, and read back; values are
compared with what was written (and, for the streamed CSV path, with pandas), never
with the reader itself. Every error's message is checked for its column and its row as
counted in the file, and for being one line.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pcsv = pytest.importorskip("pyarrow.csv")
pq = pytest.importorskip("pyarrow.parquet")

from jaxnn.data import stratified_split  # noqa: E402
from jaxnn.tabular import (  # noqa: E402
    MAX_INTEGER_CLASSES,
    Standardizer,
    Table,
    TableError,
    read_features,
    read_labelled,
    read_table,
    split_indices,
)

# One small table: an int, a float and a bool feature, and a text target.
COLUMNS = {
    "rooms": [3, 1, 4, 1, 5, 9],
    "area": [50.5, 20.25, 80.0, 22.5, 95.75, 140.0],
    "garden": [True, False, True, False, False, True],
    "kind": ["house", "flat", "house", "flat", "villa", "villa"],
}
X_EXPECTED = np.array(
    [COLUMNS["rooms"], COLUMNS["area"], np.array(COLUMNS["garden"], float)], float
).T
CLASSES = ("flat", "house", "villa")
Y_EXPECTED = np.array([1, 0, 1, 0, 2, 2])


def write_text(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


def write_columns(tmp_path, name: str, columns: dict):
    """``columns`` as a file named ``name``, in the format its suffix says."""
    path = tmp_path / name
    table = pa.table(columns)
    suffix = path.suffix
    if suffix in (".csv", ".tsv", ".tab"):
        delimiter = "," if suffix == ".csv" else "\t"
        pcsv.write_csv(table, path, pcsv.WriteOptions(delimiter=delimiter))
    elif suffix in (".parquet", ".pq"):
        pq.write_table(table, path)
    else:
        *features, target = columns
        X = np.column_stack([np.asarray(columns[c], float) for c in features])
        np.savez(path, X=X, y=np.asarray(columns[target]))
    return path


def raises(path_or_call, *fragments, **kwargs) -> str:
    """The TableError's message, checked to be one line holding every fragment."""
    with pytest.raises(TableError) as info:
        if callable(path_or_call):
            path_or_call()
        else:
            read_table(path_or_call, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.mark.slow
def test_import_needs_no_pyarrow():
    """jaxnn.tabular imports pyarrow (and pandas) only when a file is read."""
    code = (
        "import sys\n"
        "for name in ('pyarrow', 'pandas'): sys.modules[name] = None\n"
        "import jaxnn.tabular\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- Formats ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".tab", ".parquet", ".pq", ".npz"])
def test_every_format_reads_the_same_table(tmp_path, suffix):
    path = write_columns(tmp_path, "homes" + suffix, COLUMNS)
    table = read_table(path)
    assert isinstance(table, Table)
    np.testing.assert_array_equal(table.X, X_EXPECTED)
    assert table.X.dtype == np.float64 and table.y.dtype == np.int64
    np.testing.assert_array_equal(table.y, Y_EXPECTED)
    assert table.task == "classification" and table.classes == CLASSES
    if suffix == ".npz":
        assert table.feature_names == ("x0", "x1", "x2") and table.target == "y"
    else:
        assert table.feature_names == ("rooms", "area", "garden") and table.target == "kind"
    # X.T is the seeds' (n, m) layout without a copy.
    assert table.X.T.flags.c_contiguous


def test_target_defaults_to_the_last_column_and_can_be_named(tmp_path):
    numbers = {k: v for k, v in COLUMNS.items() if k != "kind"}
    path = write_columns(tmp_path, "homes.csv", numbers)
    table = read_table(path)
    assert table.target == "garden" and table.feature_names == ("rooms", "area")
    assert table.classes == (False, True)
    table = read_table(path, target="rooms")
    assert table.target == "rooms" and table.feature_names == ("area", "garden")
    np.testing.assert_array_equal(table.y, COLUMNS["rooms"])


def test_a_named_target_in_the_middle_leaves_the_others_in_file_order(tmp_path):
    path = write_text(tmp_path, "t.csv", "a,label,b\n1,x,10\n2,y,20\n3,x,30\n4,y,40\n")
    table = read_table(path, target="label")
    assert table.feature_names == ("a", "b") and table.target == "label"
    np.testing.assert_array_equal(table.X, [[1, 10], [2, 20], [3, 30], [4, 40]])
    np.testing.assert_array_equal(table.y, [0, 1, 0, 1])


def test_a_parquet_files_pandas_index_is_no_feature(tmp_path):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}, index=[10, 11, 12, 13])
    frame.to_parquet(tmp_path / "f.parquet")
    assert read_table(tmp_path / "f.parquet").feature_names == ("a",)


def test_parquet_column_types(tmp_path):
    """Narrow ints and floats, decimals and a dictionary (a pandas categorical) target."""
    import decimal

    columns = {
        "small": pa.array([1, 2, 3, 4], pa.int8()),
        "single": pa.array([0.5, 1.5, 2.5, 3.5], pa.float32()),
        "money": pa.array([decimal.Decimal(v) for v in ("1.25", "2.50", "0.75", "9.00")]),
        "kind": pa.array(["b", "a", "b", "a"]).dictionary_encode(),
    }
    pq.write_table(pa.table(columns), tmp_path / "t.parquet")
    table = read_table(tmp_path / "t.parquet")
    np.testing.assert_array_equal(
        table.X, [[1, 0.5, 1.25], [2, 1.5, 2.5], [3, 2.5, 0.75], [4, 3.5, 9.0]]
    )
    assert table.classes == ("a", "b")
    np.testing.assert_array_equal(table.y, [1, 0, 1, 0])


def test_a_csv_larger_than_one_block_matches_pandas(tmp_path):
    """Several of pyarrow's 1 MiB blocks are streamed into X; a column that is all ints
    in the first block and has a float later, and a blank line, are read right."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    m = 120_000
    frame = pd.DataFrame(
        {
            "count": rng.integers(0, 100, m).astype(object),
            "x": np.round(rng.standard_normal(m), 3),
            "y": rng.integers(0, 3, m),
        }
    )
    frame.loc[m - 5, "count"] = 2.5  # turns the column into floats only near the end
    frame.to_csv(tmp_path / "big.csv", index=False)
    table = read_table(tmp_path / "big.csv")
    reference = pd.read_csv(tmp_path / "big.csv")
    np.testing.assert_array_equal(table.X, reference[["count", "x"]].to_numpy())
    np.testing.assert_array_equal(table.y, reference["y"].to_numpy())


# --- Task inference --------------------------------------------------------------------

TASKS = [
    # (target cells, task=, expected task, expected classes or None)
    (["b", "a", "c", "a", "b", "c"], None, "classification", ("a", "b", "c")),
    (["true", "false", "true", "false"], None, "classification", (False, True)),
    (["3", "1", "2", "1", "2", "3"], None, "classification", (1, 2, 3)),
    ([str(i % 10) for i in range(40)], None, "classification", tuple(range(10))),
    # More than MAX_INTEGER_CLASSES distinct integers: a count, not classes.
    ([str(i % 30) for i in range(90)], None, "regression", None),
    # More distinct values than half the rows: no class could have its 2 examples.
    (["1", "2", "3", "4", "5", "5"], None, "regression", None),
    (["0.5", "1.5", "0.5", "2.5"], None, "regression", None),
    (["1.0", "2.0", "1.0", "2.0"], None, "regression", None),  # floats, though whole
    # task= overrides.
    ([str(i % 30) for i in range(90)], "classification", "classification", tuple(range(30))),
    (["3", "1", "2", "1", "2", "3"], "regression", "regression", None),
    (["1.0", "2.0", "1.0", "2.0"], "classification", "classification", (1, 2)),
    (["true", "false", "true", "false"], "regression", "regression", None),
]


@pytest.mark.parametrize("cells, task, expected, classes", TASKS)
def test_the_task_is_read_from_the_target(tmp_path, cells, task, expected, classes):
    rows = "".join(f"{i},{c}\n" for i, c in enumerate(cells))
    path = write_text(tmp_path, "t.csv", "feature,target\n" + rows)
    table = read_table(path, task=task)
    assert table.task == expected and table.classes == classes
    if classes is None:
        assert table.y.dtype == np.float64
        values = [
            {"true": 1.0, "false": 0.0}[c] if c in ("true", "false") else float(c) for c in cells
        ]
        np.testing.assert_array_equal(table.y, values)
    else:
        names = [str(c).lower() for c in classes]
        np.testing.assert_array_equal(table.y, [names.index(c.removesuffix(".0")) for c in cells])
        assert all(type(c) in (str, int, bool) for c in classes)


def test_the_integer_class_limit_is_twenty():
    assert MAX_INTEGER_CLASSES == 20


# --- Errors ----------------------------------------------------------------------------

HEADER = "alcohol,acidity,quality\n"
GOOD = ["13.2,1.5,a", "12.8,2.5,b", "14.1,0.5,a", "13.9,1.0,b"]


def csv_with(cell_row: int, line: str) -> str:
    """HEADER and GOOD with data row ``cell_row`` (0-based) replaced by ``line``."""
    rows = list(GOOD)
    rows[cell_row] = line
    return HEADER + "\n".join(rows) + "\n"


CELL_ERRORS = [
    # (file text, fragments of the message)
    (csv_with(1, ",2.5,b"), ["column 'alcohol', line 3: empty cell"]),
    (csv_with(2, "14.1,abc,a"), ["column 'acidity', line 4: 'abc' is not a number"]),
    (csv_with(0, "NaN,1.5,a"), ["column 'alcohol', line 2: NaN"]),
    (csv_with(3, "13.9,inf,b"), ["column 'acidity', line 5: inf is not a finite number"]),
    (csv_with(2, "14.1,NA,a"), ["column 'acidity', line 4: 'NA' is not a number"]),
    (csv_with(1, "12.8,2.5,"), ["column 'quality', line 3: empty cell (every row needs a target)"]),
    # A blank line is skipped by the reader but still counted.
    (HEADER + "13.2,1.5,a\n\n12.8,x,b\n14.1,0.5,a\n", ["column 'acidity', line 4: 'x'"]),
    # A NaN above an empty cell in the same column is named first.
    (HEADER + "13.2,1.5,a\n12.8,nan,b\n14.1,,a\n13.0,1,b\n", ["'acidity', line 3: NaN"]),
    (csv_with(2, "14.1,0.5"), ["line 4: 2 cells where the header has 3"]),
]


@pytest.mark.parametrize("text, fragments", CELL_ERRORS)
def test_a_bad_cell_is_named_by_column_and_line(tmp_path, text, fragments):
    path = write_text(tmp_path, "wine.csv", text)
    raises(path, "wine.csv: ", *fragments)


def test_a_bad_cell_after_the_first_block_is_named_by_its_line(tmp_path):
    m = 200_000  # about 1.8 MB: the bad cell is in a later block than the first
    lines = np.full(m, "1.25,0.5,a", dtype=object)
    lines[1::2] = "2.75,1.5,b"
    lines[150_000] = "2.75,oops,b"
    path = write_text(tmp_path, "wine.csv", HEADER + "\n".join(lines) + "\n")
    raises(path, "column 'acidity', line 150002: 'oops' is not a number")


@pytest.mark.parametrize("block", [1, 2, 7, 1 << 20])
def test_lines_are_counted_across_scan_blocks(tmp_path, monkeypatch, block):
    """A data row's line in the file, blank lines and CRLF included, however the
    scan's blocks cut the file; checked against splitting the whole file in Python."""
    from jaxnn import tabular

    rng = np.random.default_rng(block)
    pieces = ["", "\r", "a,b", "1,2", "3,4\r", "55,66"]
    lines = ["h,y", *rng.choice(pieces, 60)]
    data = "\n".join(lines) + rng.choice(["", "\n"])
    path = write_text(tmp_path, "s.csv", data)
    monkeypatch.setattr(tabular, "_SCAN_BLOCK", block)
    nonblank = [n + 1 for n, line in enumerate(data.split("\n")) if line not in ("", "\r")]
    rows = nonblank[1:]  # the first non-blank line is the header
    assert [tabular._csv_line(str(path), i) for i in range(len(rows))] == rows
    assert tabular._max_rows(str(path)) >= len(rows)


def test_a_tsv_names_its_line(tmp_path):
    path = write_text(tmp_path, "w.tsv", "a\tb\ty\n1\t2\tx\n3\t\ty\n")
    raises(path, "w.tsv: column 'b', line 3: empty cell")


FILE_ERRORS = [
    # (file name, text, read_table kwargs, fragments)
    ("w.csv", HEADER + "\n".join(GOOD) + "\n", {"target": "grade"},
     ["no target column 'grade'", "'alcohol', 'acidity', 'quality'"]),
    ("w.csv", HEADER + "13,1,a\n12,2,a\n14,3,b\n11,4,c\n12,5,b\n", {},
     ["column 'quality'", "'c' (1 example)", "at least 2"]),
    ("w.csv", HEADER + "13,1,a\n13,1,b\n13,1,a\n13,1,b\n", {}, ["every feature is constant"]),
    ("w.csv", HEADER + "13,1,a\n12,2,a\n14,3,a\n", {}, ["column 'quality'", "'a' in every row"]),
    ("w.csv", "alcohol,quality\n1,2.5\n2,2.5\n3,2.5\n", {}, ["'quality'", "2.5 in every row"]),
    ("w.csv", "", {}, ["w.csv: the file is empty"]),
    ("w.csv", HEADER, {}, ["w.csv: no data rows, only the header"]),
    ("w.csv", "a,b,a\n1,2,3\n4,5,6\n", {}, ["column 'a' appears more than once"]),
    ("w.csv", "y\n1\n2\n", {}, ["only the target column 'y'; no feature columns"]),
    ("w.txt", "a,b\n1,2\n", {}, ["w.txt: unknown file type '.txt'"]),
    ("w.csv", "a,y\n1,x\n2,y\n3,x\n4,y\n", {"task": "regression"},
     ["column 'y'", "text such as 'x'", "regression"]),
    ("w.csv", "a,y\n1,0.5\n2,1\n3,0.5\n4,1\n", {"task": "classification"},
     ["column 'y', line 2: 0.5 is not a whole number"]),
]  # fmt: skip


@pytest.mark.parametrize("name, text, kwargs, fragments", FILE_ERRORS)
def test_a_bad_file_is_one_line_naming_the_problem(tmp_path, name, text, kwargs, fragments):
    path = write_text(tmp_path, name, text)
    raises(path, *fragments, **kwargs)


def test_a_missing_or_unreadable_file(tmp_path):
    raises(tmp_path / "nowhere.csv", "nowhere.csv: no such file")
    (tmp_path / "d.csv").mkdir()
    raises(tmp_path / "d.csv", "is a directory")
    (tmp_path / "junk.csv").write_bytes(bytes(range(256)) * 20)
    raises(tmp_path / "junk.csv", "junk.csv: ", "UTF-8")
    write_text(tmp_path, "junk.parquet", "a,b\n1,2\n")
    raises(tmp_path / "junk.parquet", "junk.parquet: cannot be read as Parquet")


def test_parquet_cells_are_named_by_row(tmp_path):
    columns = {"a": [1.0, None, 3.0, 4.0], "y": [0, 1, 0, 1]}
    raises(write_columns(tmp_path, "p.parquet", columns), "column 'a', row 2: empty cell")
    columns = {"a": ["1", "2", "3", "x"], "y": [0, 1, 0, 1]}
    raises(write_columns(tmp_path, "q.parquet", columns), "column 'a', row 4: 'x' is not a number")
    columns = {"a": [1.0, 2.0, 3.0, 4.0], "y": ["u", "v", None, "u"]}
    raises(write_columns(tmp_path, "r.parquet", columns), "column 'y', row 3: empty cell")


def test_npz_errors(tmp_path):
    def npz(name, **arrays):
        np.savez(tmp_path / name, **arrays)
        return tmp_path / name

    raises(npz("a.npz", X=np.ones((4, 2))), "a.npz: an .npz needs arrays X and y; found X")
    raises(npz("b.npz", X=np.ones(4), y=np.ones(4)), "b.npz: X has shape (4,)", "2-D")
    raises(npz("c.npz", X=np.ones((4, 2)), y=np.ones(3)), "c.npz: X has 4 rows but y has 3")
    X = np.arange(8.0).reshape(4, 2)
    X[2, 1] = np.nan
    raises(npz("d.npz", X=X, y=np.array([0, 1, 0, 1])), "d.npz: column 'x1', row 3: NaN")


# --- Reading rows for a trained model -----------------------------------------------------


def test_read_features_matches_columns_by_name_in_any_order(tmp_path):
    path = write_text(tmp_path, "new.csv", "kind,area,extra,rooms\nflat,20,x,1\nhouse,80,y,4\n")
    X = read_features(path, ("rooms", "area"), target="kind")
    np.testing.assert_array_equal(X, [[1, 20], [4, 80]])


def test_read_features_without_the_target_column(tmp_path):
    path = write_text(tmp_path, "new.csv", "area,rooms\n20,1\n80,4\n")
    np.testing.assert_array_equal(
        read_features(path, ("rooms", "area"), "kind"), [[1, 20], [4, 80]]
    )


def test_read_features_names_a_missing_column(tmp_path):
    path = write_text(tmp_path, "new.csv", "area,kind\n20,flat\n")
    raises(lambda: read_features(path, ("rooms", "area")), "new.csv: no feature column 'rooms'")


def test_read_features_checks_cells(tmp_path):
    path = write_text(tmp_path, "new.csv", "rooms,area\n1,20\n2,\n")
    raises(lambda: read_features(path, ("rooms", "area")), "column 'area', line 3: empty cell")


def test_read_features_from_a_dataframe_and_an_array():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"area": [20.0, 80.0], "kind": ["flat", "house"], "rooms": [1, 4]})
    np.testing.assert_array_equal(read_features(frame, ["rooms", "area"]), [[1, 20], [4, 80]])
    frame.loc[1, "area"] = np.nan
    raises(lambda: read_features(frame, ["rooms", "area"]), "column 'area', row 2: empty cell")
    mixed = pd.DataFrame({"rooms": [1, "two"], "area": [20.0, 80.0]})
    raises(lambda: read_features(mixed, ["rooms", "area"]), "'rooms', row 2: 'two' is not a number")
    X = np.array([[1.0, 20.0], [4.0, 80.0]])
    np.testing.assert_array_equal(read_features(X, ["rooms", "area"]), X)
    raises(lambda: read_features(X, ["rooms", "area", "garden"]), "has 2 columns", "takes 3")


def test_read_labelled_encodes_with_the_runs_classes(tmp_path):
    path = write_text(tmp_path, "test.csv", "area,rooms,kind\n20,1,flat\n95,5,villa\n")
    X, y = read_labelled(path, ("rooms", "area"), "kind", "classification", CLASSES)
    np.testing.assert_array_equal(X, [[1, 20], [5, 95]])
    np.testing.assert_array_equal(y, [0, 2])
    assert y.dtype == np.int64


def test_read_labelled_names_an_unknown_class(tmp_path):
    path = write_text(tmp_path, "test.csv", "rooms,area,kind\n1,20,flat\n2,30,castle\n")
    read = lambda: read_labelled(path, ("rooms", "area"), "kind", "classification", CLASSES)
    raises(read, "test.csv: column 'kind', line 3: class 'castle'", "'flat', 'house', 'villa'")


def test_read_labelled_integer_classes_and_regression(tmp_path):
    path = write_text(tmp_path, "test.csv", "a,q\n1,5\n2,3\n3,5.0\n")
    _, y = read_labelled(path, ("a",), "q", "classification", (3, 4, 5))
    np.testing.assert_array_equal(y, [2, 0, 2])
    _, y = read_labelled(path, ("a",), "q", "regression", None)
    np.testing.assert_array_equal(y, [5.0, 3.0, 5.0])
    path = write_text(tmp_path, "t2.csv", "a,q\n1,5\n2,7\n")
    read = lambda: read_labelled(path, ("a",), "q", "classification", (3, 4, 5))
    raises(read, "column 'q', line 3: class 7")


# --- The split -------------------------------------------------------------------------


def classified(m_per_class=(10, 25, 5)) -> Table:
    y = np.repeat(np.arange(len(m_per_class)), m_per_class)
    X = np.arange(len(y), dtype=float)[:, None]
    return Table(X, y, ("x",), "y", "classification", tuple("abc"[: len(m_per_class)]))


def test_split_is_stratified_by_class():
    table = classified((10, 25, 5))
    train, test = split_indices(table, 0.2, seed=0)
    # round(0.2 * n_c) of each class: 2, 5 (round(5.0)) and 1.
    np.testing.assert_array_equal(np.bincount(table.y[test]), [2, 5, 1])
    assert sorted(np.concatenate([train, test])) == list(range(len(table.y)))


def test_split_depends_on_the_seed_and_only_on_it():
    table = classified((30, 30))
    first = split_indices(table, 0.25, seed=1)
    np.testing.assert_array_equal(first[1], split_indices(table, 0.25, seed=1)[1])
    assert not np.array_equal(first[1], split_indices(table, 0.25, seed=2)[1])


def test_regression_split_is_stratified_by_deciles():
    rng = np.random.default_rng(0)
    y = rng.standard_normal(200)
    table = Table(y[:, None], y, ("x",), "y", "regression", None)
    _, test = split_indices(table, 0.2, seed=3)
    edges = np.quantile(y, np.linspace(0, 1, 11))
    decile = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, 9)
    np.testing.assert_array_equal(np.bincount(decile[test], minlength=10), np.full(10, 4))
    # The same indices as the project's one split, on the same strata.
    np.testing.assert_array_equal(test, stratified_split(decile, 0.2, 3)[1])


def test_an_empty_test_part_asks_for_another_fraction():
    raises(
        lambda: split_indices(classified((3, 3)), 0.1, seed=0), "test part empty", "--test-fraction"
    )


# --- Standardizer ----------------------------------------------------------------------


def test_standardizer_centres_and_scales_every_column():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(5, 3, 50), np.full(50, 0.1), rng.uniform(0, 1e-3, 50)])
    s = Standardizer.fit(X)
    Z = s.apply(X)
    np.testing.assert_allclose(Z[:, [0, 2]].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(Z[:, [0, 2]].std(axis=0), 1, rtol=1e-12)
    # The constant column: std 1, and exactly 0 after.
    assert s.std[1] == 1.0 and np.all(Z[:, 1] == 0.0)
    np.testing.assert_allclose(s.invert(Z), X, rtol=1e-12)


def test_standardizer_json_round_trip_is_exact():
    rng = np.random.default_rng(1)
    s = Standardizer.fit(rng.standard_normal((20, 4)) * np.pi)
    back = Standardizer.from_json(json.loads(json.dumps(s.to_json())))
    assert back.mean.tobytes() == s.mean.tobytes() and back.std.tobytes() == s.std.tobytes()
    y = Standardizer.fit(rng.standard_normal(9))  # a regression target: scalars
    back = Standardizer.from_json(json.loads(json.dumps(y.to_json())))
    assert float(back.mean) == float(y.mean) and float(back.std) == float(y.std)
