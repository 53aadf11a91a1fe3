"""A small columnar table (column name -> 1-D NumPy array, all one length), pandas-free.

Both sources of fitting data land here: run directories (scaling/runs.py) and CSV files of
published runs (`read_csv`). Columns whose every non-empty cell parses as a number become float
arrays (empty cells -> NaN); the others stay string arrays; run histories are an object column.
"""
import csv
from collections.abc import Mapping, Sequence

import numpy as np

from core.run_format import damaged

CSV_FIX = ("restore it from a copy, or write it again (a sweep's results.csv: rerun the same "
           "lm.sweep command, which rewrites it)")


class Table:
    """Named columns of equal length; rows are selected with boolean masks or index arrays."""

    def __init__(self, columns: Mapping[str, Sequence]):
        self.columns = {name: _as_column(values) for name, values in columns.items()}
        lengths = {name: len(values) for name, values in self.columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns differ in length: {lengths}")

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise ValueError(f"no column {name!r}; the table has: {', '.join(self.columns)}. "
                             "Name the right one with the matching --*_col flag")
        return self.columns[name]

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def numeric(self, name: str) -> np.ndarray:
        """Column `name` as floats; a clear error if it holds text."""
        values = self[name]
        if values.dtype.kind not in "fiub":
            raise ValueError(f"column {name!r} is not numeric (e.g. {values[0]!r})")
        return values.astype(float)

    def rows(self, selection) -> "Table":
        """The rows picked by a boolean mask or an index array."""
        return Table({name: values[selection] for name, values in self.columns.items()})

    def with_column(self, name: str, values: Sequence) -> "Table":
        return Table({**self.columns, name: values})


def _as_column(values: Sequence) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    items = list(values)
    if items and all(isinstance(v, str) for v in items):
        try:
            return np.array([float(v) if v.strip() else np.nan for v in items])
        except ValueError:
            return np.array(items)
    if any(isinstance(v, (dict, list, tuple)) or hasattr(v, "__dataclass_fields__")
           for v in items):
        column = np.empty(len(items), dtype=object)
        column[:] = items
        return column
    return np.array(items)


def read_csv(path: str) -> Table:
    """A CSV file with a header row as a Table (numeric columns as floats). DamagedFile, naming
    the file and the line, for one that is not UTF-8 text or has a row whose cells do not match
    the header (torn by a kill mid-write, or edited): a shifted cell would be fitted silently."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            records = []
            for row in filter(None, reader):  # blank lines are no rows
                if len(row) != len(header):
                    raise damaged(path, f"line {reader.line_num} has {len(row)} cells, the "
                                        f"header {len(header)}", CSV_FIX)
                records.append(dict(zip(header, row)))
    except (UnicodeDecodeError, csv.Error) as err:
        raise damaged(path, f"{type(err).__name__}: {err}", CSV_FIX) from err
    if not records:
        raise ValueError(f"{path}: no data rows")
    return Table({name: [record[name] for record in records] for name in header})
