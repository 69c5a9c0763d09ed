"""A user's own table, read into what training needs: features, an encoded target, a split.

``read_table(path)`` reads a CSV or TSV with a header row, a Parquet file, or an
``.npz`` holding ``X`` (m, n) and ``y`` (m,), and returns a ``Table``: the features
``X`` (m, n) as float64 in the file's column order, the target ``y`` encoded (class
indices into the sorted ``classes``, or floats), and the task read from the target.
``read_features`` and ``read_labelled`` read files (or a DataFrame, or an array) for
a trained model, matching columns by name. ``split_indices`` holds out the test part
with the project's one split (``jaxnn.data.stratified_split``), and ``Standardizer``
keeps a mean and standard deviation per feature as exact JSON.

Every problem with a file is a ``TableError`` (a ``ValueError``) of one line, raised
before anything is returned, that names the file, the column and the row, counted as
in the file: for CSV and TSV the header is line 1, so the first data row is line 2
(blank lines, which are skipped, still count); for Parquet, ``.npz``, DataFrames and
arrays, data rows count from row 1::

    wine.csv: column 'alcohol', line 17: 'abc' is not a number

The files are read with pyarrow (``pyarrow.csv``, ``pyarrow.parquet``), imported
when a file is read so that ``import jaxnn`` stays light. A CSV is streamed block by
block straight into the result (``pyarrow.csv.open_csv`` with the feature columns
typed as float64 from its first block), so the whole file is never held as an Arrow
table beside the NumPy array: ``scripts/bench_csv.py`` measures the time against
``pyarrow.csv.read_csv`` and the peak memory. A file that the stream cannot take
(a cell that stops parsing as a number after the first block, a target that turns
from integers to floats) is read again whole, and checked cell by cell, vectorised.
"""

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from jaxnn.data import stratified_split, target_deciles

__all__ = [
    "MAX_INTEGER_CLASSES",
    "Standardizer",
    "Table",
    "TableError",
    "read_features",
    "read_labelled",
    "read_table",
    "split_indices",
]

_PathLike = str | os.PathLike

#: An integer target with at most this many distinct values (and at most half as many
#: distinct values as rows) is read as classes; see ``read_table``.
MAX_INTEGER_CLASSES = 20

_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
_SUFFIXES = (*_CSV_DELIMITERS, ".parquet", ".pq", ".npz")
_TASKS = ("classification", "regression")
_SCAN_BLOCK = 1 << 20  # bytes read at a time when counting a CSV's lines


class TableError(ValueError):
    """A file (or DataFrame, or array) that cannot be trained on or predicted from.

    Its message is one line naming the file and the problem, and for a cell its column
    and row: ``wine.csv: column 'alcohol', line 17: empty cell (every feature needs a
    number)``.
    """


class Table(NamedTuple):
    """A labelled table as ``read_table`` returns it.

    ``X`` is ``(m, n)`` float64, the features in the file's column order. It is
    Fortran-ordered (each feature contiguous), so ``X.T`` is the seeds' ``(n, m)``
    column layout without a copy, and ``X.T[:, idx]`` takes a split in that layout.
    ``y`` is ``(m,)``: int64 indices into ``classes`` for classification, float64
    values for regression. ``target`` is the target column's name (``"y"`` for an
    ``.npz``); ``task`` is ``"classification"`` or ``"regression"``; ``classes`` holds
    the class names (``str``, ``int`` or ``bool``) in sorted order, or None.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target: str
    task: str
    classes: tuple | None


# --- Public functions ------------------------------------------------------------------


def read_table(path: _PathLike, target: str | None = None, task: str | None = None) -> Table:
    """Read a labelled file: features, the target encoded, and the task.

    Formats, by suffix: ``.csv`` (comma), ``.tsv`` and ``.tab`` (tab), each with a
    header row; ``.parquet`` and ``.pq``; ``.npz`` with arrays ``X`` (m, n) and ``y``
    (m,), whose features are named ``x0 ... x{n-1}`` and whose target is ``"y"``.
    The target is the column ``target``, by default the last one; every other column
    is a feature and must hold numbers (integers, floats, or booleans as 0/1), with
    no empty cell, NaN or infinity.

    The task is read from the target's type:

    * text or booleans: classes;
    * integers: classes if there are at most ``MAX_INTEGER_CLASSES`` (20) distinct
      values and at most half as many distinct values as rows (so every class could
      have the two examples a split needs); otherwise regression. scikit-learn's
      ``type_of_target`` calls every integer target classes, which would make 200
      distinct counts 200 classes; AutoGluon asks for at most 5-10% distinct values,
      which would make a 10-row file with 3 classes a regression;
    * floats: regression, even when they are whole numbers (``1.0``).

    ``task`` (``"classification"`` or ``"regression"``) overrides it: floats as
    classes must be whole numbers (read as ints), booleans as values are 0 and 1,
    and text cannot be a regression target.

    Raises:
      TableError: the file cannot be read, is empty or holds only a header; the
        target column is missing; a feature cell is empty, NaN, infinite or not a
        number; a target cell is empty or NaN; the target is constant, or every
        feature is; a class has fewer than 2 examples; for ``.npz``, ``X`` or ``y``
        is missing, ``X`` is not 2-D, or they differ in length.
    """
    task = _check_task(task)
    raw = _read(path, features=None, target=target, want_target=True)
    n = len(raw.names)
    if all(_is_constant(raw.XT[j]) for j in range(n)):
        raise raw.where.fail(f"every feature is constant ({n} columns); nothing to learn from")
    y, task, classes = _encode_target(raw.target_column, raw.target, raw.where, task)
    return Table(raw.XT.T, y, raw.names, raw.target, task, classes)


def read_features(
    path_or_frame: Any, feature_names: Sequence[str], target: str | None = None
) -> np.ndarray:
    """The features ``(m, len(feature_names))`` float64 of rows to predict.

    ``path_or_frame`` is a file (as ``read_table`` reads), a pandas DataFrame, or a
    NumPy array. A file's or a DataFrame's columns are matched by name, in any order;
    other columns (the target ``target`` among them) are ignored. An array, like an
    ``.npz``'s ``X``, must have exactly ``len(feature_names)`` columns, in training
    order. Every cell must be a number, as in ``read_table``; the result is
    Fortran-ordered, as ``Table.X``.

    Raises:
      TableError: a feature column is missing (named), or a cell is not a number.
    """
    del target  # every column outside feature_names is ignored, the target included
    raw = _read(path_or_frame, features=tuple(feature_names), target=None, want_target=False)
    return raw.XT.T


def read_labelled(
    path: _PathLike,
    feature_names: Sequence[str],
    target: str,
    task: str,
    classes: Sequence | None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of a labelled file, encoded as a training run encoded its own.

    ``X`` is as ``read_features`` gives it; ``y`` is the column ``target`` as int64
    indices into ``classes`` for ``task="classification"``, or float64 values.

    Raises:
      TableError: as ``read_features``; the target column is missing, or one of its
        cells is empty, NaN, or (for classes) a class the run was not trained on.
    """
    task = _check_task(task)
    if task is None:
        raise ValueError("read_labelled needs the run's task: 'classification' or 'regression'")
    raw = _read(path, features=tuple(feature_names), target=target, want_target=True)
    col, where = raw.target_column, raw.where
    if task == "regression":
        return raw.XT.T, _target_values(col, target, where, "regression")
    return raw.XT.T, _encode_known_classes(col, target, where, classes)


def split_indices(table: Table, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``, each sorted, of a stratified split drawn with ``seed``.

    The split is ``jaxnn.data.stratified_split``: ``round(test_fraction * n_c)``
    examples of every class c go to the test part; for regression, of every decile of
    the target, as the built-in diabetes dataset is split.

    Raises:
      TableError: ``test_fraction`` is outside (0, 1), or leaves the test part or the
        training part empty.
    """
    m = len(table.y)
    if not 0 < test_fraction < 1:
        raise TableError(f"the test fraction must be in (0, 1), got {test_fraction}")
    labels = table.y if table.task == "classification" else target_deciles(table.y)
    train, test = stratified_split(labels, test_fraction, seed)
    for part, idx in (("test", test), ("training", train)):
        if len(idx) == 0:
            raise TableError(
                f"a test fraction of {test_fraction} leaves the {part} part empty "
                f"({m} examples); change --test-fraction"
            )
    return train, test


class Standardizer(NamedTuple):
    """Per-column ``(x - mean) / std``, with the statistics of the training part.

    A column that is constant there (``min == max``) gets ``std = 1`` and its value as
    the mean, so it becomes exactly 0 (a computed std of about 1e-17 from rounding
    would blow it up). For a regression target ``(m,)`` the statistics are scalars.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> "Standardizer":
        """The mean and std of each column of ``X`` (m, n), or of a target ``(m,)``."""
        X = np.asarray(X, np.float64)
        mean, std = X.mean(axis=0), X.std(axis=0)
        constant = X.min(axis=0) == X.max(axis=0)
        mean = np.where(constant, X[0] if len(X) else 0.0, mean)
        return cls(np.asarray(mean), np.asarray(np.where(constant, 1.0, std)))

    def apply(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / std``."""
        return (np.asarray(X, np.float64) - self.mean) / self.std

    def invert(self, Z: np.ndarray) -> np.ndarray:
        """``Z * std + mean``: values back on the original scale."""
        return np.asarray(Z, np.float64) * self.std + self.mean

    def to_json(self) -> dict:
        """``{"mean": [...], "std": [...]}`` (or scalars): floats that read back exactly."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> "Standardizer":
        """The standardizer ``to_json`` wrote."""
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64))


class _Where:
    """Where a file's problem is, for its one-line ``TableError``: the file (or "the
    array", "the DataFrame"), a column, and a row counted as in the file (a CSV's line,
    else "row N" from 1)."""

    def __init__(self, name: str, csv_path: str | None = None):
        self.name, self.csv_path = str(name), csv_path

    def fail(self, message: str, column: str | None = None, row: int | None = None) -> TableError:
        """The TableError for ``message`` at ``column`` and data row ``row`` (from 0)."""
        parts = []
        if column is not None:
            parts.append(f"column {column!r}")
        if row is not None:
            where = f"line {_csv_line(self.csv_path, row)}" if self.csv_path else f"row {row + 1}"
            parts.append(where)
        return TableError(": ".join([self.name, *([", ".join(parts)] if parts else []), message]))


def _csv_line(path: str, i: int) -> int:
    """The 1-based line of the file that holds data row ``i`` (0-based).

    pyarrow skips blank lines (empty, or a lone ``\\r``) and takes the first other line
    as the header, so data row i is the (i + 2)-th non-blank line. Found by scanning
    the file in blocks with NumPy, on the error path only.
    """
    wanted, seen, line, prev, last = i + 2, 0, 0, -1, 0  # prev: offset of the last "\n"
    offset = 0
    with open(path, "rb") as f:
        while block := f.read(_SCAN_BLOCK):
            b = np.frombuffer(block, np.uint8)
            nl = offset + np.flatnonzero(b == 10)
            starts = np.concatenate(([prev + 1], nl[:-1] + 1))
            before = np.concatenate(([last], b))[nl - offset]  # the byte before each "\n"
            length = nl - starts
            blank = (length == 0) | ((length == 1) & (before == 13))
            count = np.cumsum(~blank)
            k = np.searchsorted(count, wanted - seen)
            if k < len(nl):
                return line + int(k) + 1
            if len(nl):
                seen, line, prev = seen + int(count[-1]), line + len(nl), int(nl[-1])
            last = int(b[-1])
            offset += len(b)
    return line + 1  # the last line, without a final newline


def _cell_text(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- Reading ---------------------------------------------------------------------------


class _Raw(NamedTuple):
    """A file read and its features checked to be numbers, before the target is encoded."""

    XT: np.ndarray  # (n, m) float64, the seeds' layout
    names: tuple[str, ...]
    target: str | None
    target_column: Any  # a pyarrow ChunkedArray, or None
    where: _Where


def _check_task(task: str | None) -> str | None:
    if task is not None and task not in _TASKS:
        raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
    return task


def _read(source: Any, features: tuple[str, ...] | None, target, want_target: bool) -> _Raw:
    """Dispatch on the input's kind; ``features`` None means every column but the target."""
    if want_target and not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected the path of a file, got {type(source).__name__}")
    if isinstance(source, np.ndarray):
        return _from_numpy(source, None, features, _Where("the array"), subject="")
    if hasattr(source, "columns") and hasattr(source, "iloc"):  # a pandas DataFrame
        return _from_frame(source, features)
    path = os.fspath(source)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SUFFIXES:
        raise TableError(
            f"{path}: unknown file type {suffix or '(no suffix)'!r}; "
            f"use {', '.join(_SUFFIXES[:-1])} or {_SUFFIXES[-1]}"
        )
    if not os.path.exists(path):
        raise TableError(f"{path}: no such file")
    if os.path.isdir(path):
        raise TableError(f"{path}: is a directory, not a file")
    try:
        if os.path.getsize(path) == 0:
            raise TableError(f"{path}: the file is empty")
        if suffix == ".npz":
            return _read_npz(path, features, target)
        if suffix in (".parquet", ".pq"):
            return _read_parquet(path, features, target, want_target)
        return _read_csv(path, _CSV_DELIMITERS[suffix], features, target, want_target)
    except OSError as e:
        raise TableError(f"{path}: cannot be read ({e.strerror or e})") from None


def _choose_columns(names, features, target, want_target, where: _Where):
    """(feature names, target name) from a header, with the checks on names."""
    seen = set()
    for name in names:
        if name in seen:
            raise where.fail(f"column {name!r} appears more than once in the header")
        seen.add(name)

    def missing(name, what):
        shown = ", ".join(repr(c) for c in names[:20])
        more = f", ... ({len(names)} in all)" if len(names) > 20 else ""
        return where.fail(f"no {what} column {name!r}; the columns are {shown}{more}")

    if want_target:
        if target is None:
            target = names[-1]
        elif target not in seen:
            raise missing(target, "target")
    if features is None:
        features = tuple(c for c in names if c != target)
        if not features:
            raise where.fail(f"only the target column {target!r}; no feature columns")
    for name in features:
        if name not in seen:
            raise missing(name, "feature")
    return tuple(features), (target if want_target else None)


def _read_csv(path, delimiter, features, target, want_target) -> _Raw:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    where = _Where(path, csv_path=path)
    parse = pcsv.ParseOptions(delimiter=delimiter)
    # "" is the only null: "NA" or "nan" in a feature column is then a named bad cell
    # (pyarrow parses "NaN" as a float NaN, which the finite check names).
    options = dict(null_values=[""], strings_can_be_null=True)
    try:
        peek = pcsv.open_csv(
            path, parse_options=parse, convert_options=pcsv.ConvertOptions(**options)
        )
        schema = peek.schema
        peek.close()
    except pa.ArrowInvalid as e:
        raise _csv_failure(path, parse, e, where) from None
    features, target = _choose_columns(schema.names, features, target, want_target, where)
    wanted = [*features, *([target] if target is not None else [])]
    types = {}
    for name in features:
        t = schema.field(name).type
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            types[name] = pa.float64()  # a later block's "2.5" in an int column still parses
        elif pa.types.is_boolean(t):
            types[name] = t
        else:  # text, or all empty, in the first block: the whole read names the cell
            return _read_csv_whole(path, parse, options, features, target, where)
    if target is not None:
        types[target] = schema.field(target).type
    convert = pcsv.ConvertOptions(column_types=types, include_columns=wanted, **options)
    XT = np.empty((len(features), _max_rows(path)))
    target_chunks, m = [], 0
    try:
        reader = pcsv.open_csv(path, parse_options=parse, convert_options=convert)
        for batch in reader:
            k = batch.num_rows
            if m + k > XT.shape[1]:
                raise pa.ArrowInvalid("more rows than lines")  # cannot happen; read it whole
            for j, name in enumerate(features):
                _put_column(XT[j, m : m + k], batch.column(j), name, where, m)
            if target is not None:
                target_chunks.append(batch.column(len(features)))
            m += k
    except pa.ArrowInvalid as e:
        if _is_ragged(e):
            raise _csv_failure(path, parse, e, where) from None
        # A later block that does not fit the first one's types: read it whole.
        del XT, target_chunks
        return _read_csv_whole(path, parse, options, features, target, where)
    if m == 0:
        raise where.fail("no data rows, only the header")
    column = pa.chunked_array(target_chunks, types.get(target)) if target is not None else None
    return _Raw(XT[:, :m], features, target, column, where)


def _read_csv_whole(path, parse, options, features, target, where) -> _Raw:
    """The whole file as one Arrow table, each column's type inferred from all of it."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    wanted = [*features, *([target] if target is not None else [])]
    convert = pcsv.ConvertOptions(include_columns=wanted, **options)
    try:
        table = pcsv.read_csv(path, parse_options=parse, convert_options=convert)
    except pa.ArrowInvalid as e:
        raise _csv_failure(path, parse, e, where) from None
    return _from_arrow(table, features, target, where)


def _max_rows(path: str) -> int:
    """An upper bound on the data rows: the lines after the header. The streamed
    features go straight into an array this long, whose unused end is never touched
    (so never resident)."""
    lines, last = 0, b"\n"
    buffer = bytearray(_SCAN_BLOCK)
    with open(path, "rb", buffering=0) as f:
        while k := f.readinto(buffer):
            lines += buffer.count(b"\n", 0, k)
            last = buffer[k - 1 : k]
    physical = lines if last == b"\n" else lines + 1  # the last line may lack its "\n"
    return max(physical - 1, 0)


def _is_ragged(e: Exception) -> bool:
    return "Expected" in str(e) and "columns" in str(e)


def _csv_failure(path, parse, e: Exception, where: _Where) -> TableError:
    """A TableError for pyarrow's failure to parse ``path``: a row with the wrong number
    of cells is found again, single-threaded, for its number, and given as its line."""
    import pyarrow.csv as pcsv

    text = "".join(c if c.isprintable() else "?" for c in str(e).split("\n")[0][:100])
    if "Empty CSV file" in text:
        return where.fail("the file is empty")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as bad:
        if bad.start < len(head) - 4:  # not a character cut at the end of the block
            return where.fail(f"is not text in UTF-8 (byte {bad.start}); cannot be read as CSV")
    if not _is_ragged(e):
        kind = "TSV" if parse.delimiter == "\t" else "CSV"
        return where.fail(f"cannot be read as {kind} ({text})")
    found = []

    def handler(row):
        found.append(row)
        return "error"

    retry = pcsv.ParseOptions(delimiter=parse.delimiter, invalid_row_handler=handler)
    try:
        pcsv.read_csv(path, parse_options=retry, read_options=pcsv.ReadOptions(use_threads=False))
    except Exception:
        pass
    if not found or found[0].number is None:
        return where.fail(f"cannot be read ({text})")
    row = found[0]
    # pyarrow numbers rows from 1 with the header, blank lines skipped.
    return where.fail(
        f"{row.actual_columns} cell{'s' * (row.actual_columns != 1)} where the header "
        f"has {row.expected_columns}",
        row=row.number - 2,
    )


def _read_parquet(path, features, target, want_target) -> _Raw:
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = _Where(path)
    try:
        schema = pq.read_schema(path)
        index = (schema.pandas_metadata or {}).get("index_columns", [])
        names = [c for c in schema.names if c not in index]  # a DataFrame's index: no feature
        features, target = _choose_columns(names, features, target, want_target, where)
        wanted = [*features, *([target] if target is not None else [])]
        table = pq.read_table(path, columns=wanted)
    except pa.ArrowException as e:
        raise where.fail(f"cannot be read as Parquet ({str(e).splitlines()[0]})") from None
    return _from_arrow(table, features, target, where)


def _from_arrow(table, features, target, where: _Where) -> _Raw:
    if table.num_rows == 0:
        raise where.fail("no data rows" + (", only the header" if where.csv_path else ""))
    XT = np.empty((len(features), table.num_rows))
    for j, name in enumerate(features):
        _put_column(XT[j], table.column(name), name, where)
    column = table.column(target) if target is not None else None
    return _Raw(XT, features, target, column, where)


def _read_npz(path, features, target) -> _Raw:
    where = _Where(path)
    if target not in (None, "y"):
        raise where.fail(f"an .npz has no named columns; its target is the array y, not {target!r}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:  # not a zip, a pickle, a truncated file
        raise where.fail(f"cannot be read as .npz ({str(e).splitlines()[0]})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise where.fail("is a single .npy array, not an .npz archive of X and y")
    with archive:
        missing = [k for k in ("X", "y") if k not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "none"
            raise where.fail(f"an .npz needs arrays X and y; found {found}")
        try:
            X, y = archive["X"], archive["y"]
        except Exception as e:  # an object array (pickled), a damaged member
            raise where.fail(f"cannot be read as .npz ({str(e).splitlines()[0]})") from None
    if X.ndim != 2:
        raise where.fail(f"X has shape {X.shape}; it must be 2-D, (m examples, n features)")
    if y.ndim != 1:
        raise where.fail(f"y has shape {y.shape}; it must be 1-D, (m,)")
    if len(y) != len(X):
        raise where.fail(f"X has {len(X)} rows but y has {len(y)}")
    return _from_numpy(X, y, features, where, subject="X ")


def _from_numpy(X, y, features, where: _Where, subject: str) -> _Raw:
    import pyarrow as pa

    if X.ndim != 2:
        raise where.fail(f"{subject}has shape {X.shape}; rows are 2-D, (m examples, n features)")
    if features is not None and X.shape[1] != len(features):
        raise where.fail(
            f"{subject}has {X.shape[1]} columns; the model takes {len(features)} "
            f"({', '.join(features)}), in the training file's order"
        )
    if X.dtype.kind not in "biuf":
        raise where.fail(f"{subject}holds {X.dtype} values; features must be numbers")
    if X.shape[0] == 0:
        raise where.fail("no data rows")
    names = features or tuple(f"x{j}" for j in range(X.shape[1]))
    if not names:
        raise where.fail("X has no columns; no features")
    XT = np.array(X.T, np.float64, order="C")
    for j, name in enumerate(names):
        _check_finite(XT[j], name, where)
    column = None if y is None else pa.chunked_array([pa.array(y)])
    return _Raw(XT, tuple(names), None if y is None else "y", column, where)


def _from_frame(frame, features) -> _Raw:
    import pyarrow as pa

    where = _Where("the DataFrame")
    by_name = {str(c): c for c in frame.columns}
    features, _ = _choose_columns(list(by_name), features, None, False, where)
    if len(frame) == 0:
        raise where.fail("no data rows")
    XT = np.empty((len(features), len(frame)))
    for j, name in enumerate(features):
        series = frame[by_name[name]]
        try:
            column = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects: numbers and text
            import pandas as pd

            values = series.to_numpy(dtype=object)
            text = np.where(pd.isna(values), None, values.astype(str))
            column = pa.array(text, pa.string())
        _put_column(XT[j], column, name, where)
    return _Raw(XT, features, None, None, where)


# --- Cells -----------------------------------------------------------------------------


def _chunks(column) -> list:
    return column.chunks if hasattr(column, "chunks") else [column]


def _first_null(column) -> int | None:
    import pyarrow.compute as pc

    if column.null_count == 0:
        return None
    return pc.index(pc.is_null(column), True).as_py()


def _first_unparsable(column, type) -> int | None:
    """The first cell of a text column that ``type`` cannot parse (nulls pass), found by
    halving: each half is cast whole, so the search costs about two casts of the column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def parses(start, stop):
        try:
            pc.cast(column.slice(start, stop - start), type)
            return True
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False

    start, stop = 0, len(column)
    if parses(start, stop):
        return None
    while stop - start > 1:
        middle = (start + stop) // 2
        if parses(start, middle):
            start = middle
        else:
            stop = middle
    return start


def _put_column(out: np.ndarray, column, name: str, where: _Where, offset: int = 0) -> None:
    """Copy one feature column (an Arrow Array or ChunkedArray) into ``out`` as float64,
    after checking that every cell is a number; ``offset`` is its first row's index."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    if pa.types.is_null(t):
        raise where.fail("empty cell (every feature needs a number)", name, offset)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        bad = [
            i
            for i in (_first_null(column), _first_unparsable(column, pa.float64()))
            if i is not None
        ]
        if bad:
            i = min(bad)
            value = column[i].as_py()
            if value is None or not value.strip():
                raise where.fail("empty cell (every feature needs a number)", name, offset + i)
            raise where.fail(f"{_cell_text(value)} is not a number", name, offset + i)
        column, t = pc.cast(column, pa.float64()), pa.float64()
    if pa.types.is_decimal(t):
        column, t = pc.cast(column, pa.float64()), pa.float64()
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        raise where.fail(f"holds {t} values; features must be numbers", name)
    i = _first_null(column)
    if i is not None:
        if pa.types.is_floating(t):  # a NaN above the empty cell is named first
            j = pc.index(pc.invert(pc.is_finite(column)), True).as_py()
            if 0 <= j < i:
                _check_finite(column[j : j + 1].to_numpy(), name, where, offset + j)
        raise where.fail("empty cell (every feature needs a number)", name, offset + i)
    start = 0
    for chunk in _chunks(column):
        k = len(chunk)
        out[start : start + k] = chunk.to_numpy(zero_copy_only=False)
        start += k
    if pa.types.is_floating(t):
        _check_finite(out, name, where, offset)


def _check_finite(x: np.ndarray, name: str, where: _Where, offset: int = 0) -> None:
    """Name the first NaN or infinity of the feature ``x``, by its row."""
    if not np.isfinite(x).all():
        i = int(np.argmin(np.isfinite(x)))
        what = "NaN" if np.isnan(x[i]) else f"{x[i]} is not a finite number"
        raise where.fail(f"{what} (every feature needs a number)", name, offset + i)


def _is_constant(x: np.ndarray) -> bool:
    return bool((x == x[0]).all())


# --- The target ------------------------------------------------------------------------


def _target_kind(column, name, where: _Where):
    """The column with dictionaries and decimals resolved, and its kind: "text",
    "bool", "int" or "float"; empty cells and NaN are named here."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = column.type
    if pa.types.is_dictionary(t):
        column, t = column.cast(t.value_type), t.value_type
    if pa.types.is_decimal(t):
        column, t = pc.cast(column, pa.float64()), pa.float64()
    i = _first_null(column)
    if i is not None:
        raise where.fail("empty cell (every row needs a target)", name, i)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return column, "text"
    if pa.types.is_boolean(t):
        return column, "bool"
    if pa.types.is_integer(t):
        return column, "int"
    if pa.types.is_floating(t):
        values = column.to_numpy()
        if not np.isfinite(values).all():
            i = int(np.argmin(np.isfinite(values)))
            what = "NaN" if np.isnan(values[i]) else f"{values[i]} is not a finite number"
            raise where.fail(f"{what} (every row needs a target)", name, i)
        return column, "float"
    raise where.fail(f"holds {t} values; a target must be text, booleans or numbers", name)


def _target_values(column, name, where: _Where, task) -> np.ndarray:
    """A regression target as float64."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column, kind = _target_kind(column, name, where)
    if kind == "text":
        raise where.fail(
            f"holds text such as {_cell_text(column[0].as_py())}, which cannot be a "
            f"{task} target (use classification)",
            name,
        )
    return pc.cast(column, pa.float64()).to_numpy()


def _encode_target(column, name, where: _Where, task):
    """``(y, task, classes)`` of ``read_table``: the task inferred (see there) or given."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column, kind = _target_kind(column, name, where)
    m = len(column)
    if task is None:
        if kind == "int":
            k = len(pc.unique(column))
            task = "classification" if k <= MAX_INTEGER_CLASSES and 2 * k <= m else "regression"
        else:
            task = "regression" if kind == "float" else "classification"
    if task == "regression":
        y = _target_values(column, name, where, task)
        if _is_constant(y):
            raise where.fail(
                f"is {y[0]:g} in every row; a constant target leaves nothing to learn", name
            )
        return y, task, None
    if kind == "float":
        values = column.to_numpy()
        fractional = values != np.trunc(values)
        if fractional.any():
            i = int(np.argmax(fractional))
            raise where.fail(
                f"{float(values[i])!r} is not a whole number; classes must be text, booleans or "
                "integers (or use regression)",
                name,
                i,
            )
        column = pc.cast(column, pa.int64())
    classes = sorted(pc.unique(column).to_pylist())
    if len(classes) == 1:
        raise where.fail(
            f"is {classes[0]!r} in every row; a single class leaves nothing to learn", name
        )
    y = pc.index_in(column, value_set=pa.array(classes, column.type)).to_numpy().astype(np.int64)
    counts = np.bincount(y, minlength=len(classes))
    few = np.flatnonzero(counts < 2)
    if len(few):
        listed = ", ".join(f"{classes[c]!r} ({counts[c]} example)" for c in few[:5])
        more = f" and {len(few) - 5} more" if len(few) > 5 else ""
        raise where.fail(
            f"class{'es' if len(few) > 1 else ''} {listed}{more}: every class needs at "
            "least 2 examples (one to train on, one to test)",
            name,
        )
    return y, task, tuple(classes)


def _encode_known_classes(column, name, where: _Where, classes) -> np.ndarray:
    """The target as indices into a trained run's ``classes``; an unknown class is named."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not classes:
        raise ValueError("read_labelled needs the run's classes for classification")
    column, _ = _target_kind(column, name, where)
    known = pa.array(list(classes))
    try:
        matched = pc.cast(column, known.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # e.g. text where ints were trained
        known = pa.array([str(c) for c in classes])
        matched = pc.cast(column, pa.string())
    y = pc.index_in(matched, value_set=known)
    i = _first_null(y)
    if i is not None:
        shown = ", ".join(repr(c) for c in classes[:20])
        raise where.fail(
            f"class {_cell_text(column[i].as_py())} was not among the training run's "
            f"classes ({shown})",
            name,
            i,
        )
    return y.to_numpy().astype(np.int64)
