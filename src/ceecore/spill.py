"""A run's parsed lines, kept between its two passes, so that its input is read once.

``run`` fits on every line before it can score any, so it goes over the lines twice.
The first pass keeps each batch's accepted lines — the columns scoring writes out and
the kernel's parse of them — in an Arrow IPC file beside the job's outputs (memory
does not grow with the input); the second pass replays them as intakes, with nothing
read from the input or parsed again. A one-time stream can be run this way too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from ceecore._kernels._accounts import PARSED_COLUMNS
from ceecore.accounts import Intake
from ceecore.schema import plain_rows

__all__ = ["LineSpill"]

# Parsed fields kept narrower than the kernel hands them out (values always fit).
_NARROW = {"day": np.int32, "center": np.int8, "country": np.int16, "port": np.int16, "hts6": np.int32,
           "hts4": np.int16, "basis": np.int8}
_PREFIX = "parsed:"
REPLAY_ROWS = 32 * 1024


class LineSpill:
    """Accepted lines in an IPC file at ``path``: ``typed`` canonical columns in the given
    types (null where the input lacks them), then the parsed fields.

    :meth:`batch` (any thread) makes one batch's record; :meth:`write` appends it (one
    thread, in input order); :meth:`intakes` replays them once writing is done.
    """

    def __init__(self, path: str | os.PathLike[str], typed: dict[str, pa.DataType]) -> None:
        self.path = Path(path)
        self.typed = typed
        self.schema = pa.schema([*typed.items(), *[(_PREFIX + name, pa.from_numpy_dtype(_NARROW.get(name, dtype)))
                                                   for name, dtype in PARSED_COLUMNS.items() if name != "rows"]])
        self._writer: ipc.RecordBatchFileWriter | None = None
        self.lines = 0

    def batch(self, intake: Intake) -> pa.RecordBatch:
        """The accepted lines of one ingested batch, as the spill keeps them."""
        rows = pa.array(intake.parsed["rows"])
        canonical = intake.canonical
        n = len(rows)
        columns = [plain_rows(canonical.column(name), rows, kind) if name in canonical.schema.names
                   else pa.nulls(n, kind) for name, kind in self.typed.items()]
        columns += [pa.array(values.astype(_NARROW.get(name, values.dtype), copy=False))
                    for name, values in intake.parsed.items() if name != "rows"]
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._writer = ipc.new_file(str(self.path), self.schema)
        self._writer.write_batch(batch)
        self.lines += batch.num_rows

    def close(self) -> None:
        if self._writer is None:
            self._writer = ipc.new_file(str(self.path), self.schema)
        self._writer.close()

    def intakes(self, rows: int = REPLAY_ROWS) -> Iterator[Intake]:
        """The kept lines as intakes (every line accepted) of at most ``rows`` lines, in the
        order they were written: smaller than the input's batches, so that the batches a
        scoring pass has in flight (with their scores) take less memory."""
        names = list(self.typed)
        with pa.OSFile(str(self.path)) as source:  # read, not mapped: pages do not pile up in memory
            reader = ipc.open_file(source)
            for i in range(reader.num_record_batches):
                kept = reader.get_batch(i)
                for start in range(0, kept.num_rows, rows):
                    batch = kept.slice(start, rows)
                    n = batch.num_rows
                    parsed = {name: batch.column(_PREFIX + name).to_numpy().astype(dtype, copy=False)
                              for name, dtype in PARSED_COLUMNS.items() if name != "rows"}
                    parsed["rows"] = np.arange(n, dtype=np.int64)
                    yield Intake(batch.select(names), np.zeros(n, np.uint8), parsed)
