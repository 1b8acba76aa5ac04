"""Reading a user's CSV or Parquet file, and saying in one line why one cannot be read.

Training (``verticals train --data``) and scoring (``verticals score --input``) read files a user made;
when that fails the user needs the file, the cause and the fix, not a reader's 40-line dump:

* not UTF-8 (a latin-1 export) → "re-encode as UTF-8 or pass --encoding latin-1";
* another separator (``;`` from a spreadsheet in many locales) → "pass --separator ';'";
* a row with more or fewer fields than the header → the line number and both counts;
* not Parquet, or truncated → "rewrite it".
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verticals.errors import DataValidationError, UserError

if TYPE_CHECKING:  # pragma: no cover
    import polars as pl

__all__ = ["CsvOptions", "check_header", "csv_error", "csv_header", "csv_parse_options", "csv_read_options",
           "parquet_error", "read_csv", "read_parquet", "text_columns"]

SEPARATORS = (",", ";", "\t", "|")
_NAMES = {",": "','", ";": "';'", "\t": "'\\t' (tab)", "|": "'|'"}
_MAX_SHOWN = 120


@dataclass(frozen=True)
class CsvOptions:
    """How to read CSV files: ``encoding`` (any Python codec name) and ``separator`` (None: by suffix).

    Raises:
        UserError: an unknown encoding or a separator that is not one character.
    """

    encoding: str = "utf-8"
    separator: str | None = None

    def __post_init__(self) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise UserError(f"unknown encoding {self.encoding!r} (--encoding)",
                            hint="use a Python codec name such as utf-8, latin-1 or cp1252") from None
        if self.separator is not None:
            sep = "\t" if self.separator in ("\\t", "tab") else self.separator
            if len(sep) != 1:
                raise UserError(f"invalid separator {self.separator!r} (--separator)",
                                hint="use one character, e.g. ';' or '\\t' for tab")
            object.__setattr__(self, "separator", sep)

    @property
    def utf8(self) -> bool:
        return codecs.lookup(self.encoding).name == "utf-8"

    def separator_for(self, path: Path) -> str:
        if self.separator is not None:
            return self.separator
        return "\t" if path.name.lower().endswith(".tsv") else ","


def _shown(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 1] + "…"


def _first_line(path: Path, encoding: str) -> str:
    import gzip

    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=encoding, errors="replace", newline="") as fh:
            return fh.readline().rstrip("\r\n")
    except OSError:
        return ""


def check_header(path: Path, names: list[str], options: CsvOptions) -> None:
    """Fail when a one-column header holds another separator: the file was split on the wrong one.

    Raises:
        DataValidationError: naming the separator the header seems to use and the option to pass.
    """
    if len(names) != 1:
        return
    used = options.separator_for(path)
    counts = {s: names[0].count(s) for s in SEPARATORS if s != used}
    best = max(counts, key=lambda s: counts[s])
    if counts[best] == 0:
        return
    flag = "\\t" if best == "\t" else best
    raise DataValidationError(
        f"{path}: the header {_shown(names[0])!r} is one column when split on {_NAMES[used]}; the file seems "
        f"separated by {_NAMES[best]}", hint=f"pass --separator '{flag}'")


def _not_utf8(text: str) -> bool:
    lowered = text.lower()
    return any(s in lowered for s in ("utf8", "utf-8", "unicode", "invalid utf", "codec can't decode"))


def _ragged_line(path: Path, options: CsvOptions, limit: int = 2_000_000) -> tuple[int, int, int] | None:
    """(line number, fields, header fields) of the first row whose field count differs, if found quickly."""
    import gzip

    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding=options.encoding, errors="replace", newline="") as fh:
            reader = csv.reader(fh, delimiter=options.separator_for(path))
            header = next(reader, None)
            if header is None:
                return None
            for row in reader:
                if reader.line_num > limit:
                    return None
                if row and len(row) != len(header):
                    return reader.line_num, len(row), len(header)
    except (OSError, csv.Error):
        return None
    return None


def csv_error(path: Path, exc: BaseException, options: CsvOptions, *, what: str = "CSV") -> DataValidationError:
    """The one-line error for a CSV file that a reader (pyarrow or polars) failed on."""
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError) or _not_utf8(text):
        if options.utf8:
            return DataValidationError(f"{path}: not valid UTF-8 text", hint="re-encode it as UTF-8, or pass "
                                       "its encoding, e.g. --encoding latin-1 (or cp1252)")
        return DataValidationError(f"{path}: cannot be decoded as {options.encoding}",
                                   hint="pass the file's real encoding with --encoding")
    ragged = _ragged_line(path, options)
    if ragged is not None:
        line, got, want = ragged
        return DataValidationError(
            f"{path}: line {line} has {got} fields but the header has {want}",
            hint="fix that row (a stray separator or an unclosed quote), or pass the right --separator")
    return DataValidationError(f"{path}: cannot read as {what} ({_shown(text.splitlines()[0] if text else type(exc).__name__)})",
                               hint="check the separator (--separator), the quoting and the encoding (--encoding)")


def parquet_error(path: Path, exc: BaseException) -> DataValidationError:
    """The one-line error for a file that is not (complete) Parquet."""
    text = str(exc).strip().splitlines()
    detail = _shown(text[0]) if text else "unreadable"
    return DataValidationError(f"{path}: cannot read as Parquet ({detail})",
                               hint="check that the file is complete and really Parquet; rewrite it")


def read_parquet(path: Path) -> pl.DataFrame:
    """A whole Parquet file, or a one-line :class:`DataValidationError` naming it."""
    import polars as pl

    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise parquet_error(path, exc) from exc


def csv_read_options(options: CsvOptions, block_size: int = 1 << 20, use_threads: bool = False) -> Any:
    """pyarrow read options for ``options``: pyarrow transcodes any other encoding to UTF-8 while reading."""
    import pyarrow.csv as pacsv

    return pacsv.ReadOptions(block_size=block_size, use_threads=use_threads,
                             encoding="utf8" if options.utf8 else options.encoding)


def csv_parse_options(path: Path, options: CsvOptions | None = None) -> Any:
    """pyarrow parse options for ``path`` (the separator by option, else by suffix)."""
    import pyarrow.csv as pacsv

    return pacsv.ParseOptions(delimiter=(options or CsvOptions()).separator_for(path))


def text_columns(columns: list[str] | None) -> Any:
    """pyarrow convert options reading ``columns`` (all when None) as text; missing-value markers are
    pyarrow's defaults (``""``, ``NA``, ``NaN``, ``null``, …), the same for training and scoring."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if columns is None:
        return pacsv.ConvertOptions(column_types={}, strings_can_be_null=True, auto_dict_encode=False)
    return pacsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                                strings_can_be_null=True)


def csv_header(path: Path, options: CsvOptions | None = None) -> list[str] | None:
    """The column names of a CSV file (``None``: an empty file), checked: one line naming the file
    for a wrong separator, a wrong encoding or duplicate column names."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = options or CsvOptions()
    try:
        reader = pacsv.open_csv(path, read_options=csv_read_options(options, 1 << 16),
                                parse_options=csv_parse_options(path, options), convert_options=text_columns(None))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if "empty" in str(exc).lower():
            return None
        raise csv_error(path, exc, options) from exc
    names = list(reader.schema.names)
    reader.close()
    check_header(path, names, options)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DataValidationError(f"{path}: column(s) {', '.join(repr(d) for d in dupes)} appear more than once "
                                  "in the header", hint="rename or remove the duplicate columns")
    return names


def read_csv(path: Path, options: CsvOptions | None = None) -> pl.DataFrame:
    """A whole CSV file with every column as text, or a one-line :class:`DataValidationError` naming it.

    The same reader, options and checks as scoring's streaming CSV reader (pyarrow): a row with too
    few or too many fields, a wrong encoding or separator fail the same way in ``train --data`` and
    ``score --input``. Values are typed later by validation, which rejects bad cells row by row.
    """
    import polars as pl
    import pyarrow as pa
    import pyarrow.csv as pacsv

    options = options or CsvOptions()
    names = csv_header(path, options)
    if names is None:
        return pl.DataFrame()
    try:
        table = pacsv.read_csv(path, read_options=csv_read_options(options, 1 << 20, use_threads=True),
                               parse_options=csv_parse_options(path, options), convert_options=text_columns(names))
    except (pa.ArrowException, UnicodeDecodeError, OSError) as exc:
        if isinstance(exc, OSError) and not isinstance(exc, UnicodeDecodeError) and exc.errno is not None:
            raise
        raise csv_error(path, exc, options) from exc
    return pl.from_arrow(table)  # type: ignore[return-value]
