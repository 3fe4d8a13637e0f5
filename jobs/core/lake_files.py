"""The data files of a delta-rs write: each Spark task writes its rows straight into the table's
partition folders under names no other write uses, and returns one row per file for the commit.

Nothing is staged and nothing moves (on object stores a move is a copy): a write killed before
its commit leaves only files no version references, which `maintain` (VACUUM) removes. Refused
rows (a partition value outside [a-z0-9_-], or outside the partitions being replaced) fail the
task before that partition's file is opened, with a message the driver turns into a LakeError.
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import DataFrame
from pyspark.sql.pandas.types import to_arrow_schema

PARTITION_VALUE = re.compile(r"^[a-z0-9_-]+$")
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
REFUSED = "LAKE-REFUSED: "
# The rows each task returns to the driver: one per data file it wrote.
FILE_ROWS_SCHEMA = "path string, size long, partition_values string, stats string, modified long"
# Rows a task buffers, over all the partition files it has open, before the file holding most of
# them writes its rows as one row group: Arrow batches from Spark hold ~2,000 rows, far too few
# for a row group that compresses and skips well, and a cap per task (not per file) keeps a
# write's memory the same however many partitions a task meets and however large it is.
ROW_GROUP_BYTES = 32 * 1024 * 1024


def sanitize_partition_value(value: str) -> str:
    """Lower-case and map anything outside [a-z0-9_-] to '_' (Spark would percent-encode it)."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "_", str(value).strip().lower()).strip("_")
    if not cleaned:
        raise ValueError(f"{value!r} has no usable characters for a partition value")
    return cleaned


def table_arrow_schema(df: DataFrame, partition_by: list[str]) -> pa.Schema:
    """Delta keeps partition columns last, as Spark's partitioned write lays them out."""
    schema = to_arrow_schema(df.schema, timezone="UTC")
    data_fields = [f for f in schema if f.name not in partition_by]
    return pa.schema(data_fields + [schema.field(col) for col in partition_by])


def file_name(write_id: str) -> str:
    """Unique per task attempt; the write id lets a refused write find and delete its files."""
    return f"part-{write_id}-{uuid.uuid4().hex}.zstd.parquet"


def partition_folder(values: tuple, partition_by: list[str]) -> str:
    return "/".join(
        f"{col}={HIVE_NULL if value is None else value}" for col, value in zip(partition_by, values, strict=True)
    )


def _checked_values(
    values: tuple, partition_by: list[str], allowed: Mapping[str, list[str]]
) -> tuple:
    checked = []
    for col, value in zip(partition_by, values, strict=True):
        if value is not None:
            value = str(value)
            if not PARTITION_VALUE.match(value):
                raise ValueError(
                    f"{REFUSED}partition value {value!r} of {col} is outside [a-z0-9_-]; sanitize "
                    "it (jobs.core.lake.sanitize_partition_value) before writing"
                )
        if col in allowed and value not in allowed[col]:
            raise ValueError(
                f"{REFUSED}data holds {col}={value!r}, outside the partitions being replaced "
                f"{allowed[col]}"
            )
        checked.append(value)
    return tuple(checked)


def _split(batch: pa.RecordBatch, partition_by: list[str]) -> Iterator[tuple[tuple, pa.Table]]:
    table = pa.Table.from_batches([batch])
    if not partition_by:
        yield (), table
        return
    keys = list(zip(*(table.column(col).to_pylist() for col in partition_by), strict=True))
    groups: dict[tuple, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(key, []).append(index)
    data = table.drop_columns(partition_by)
    for key, rows in groups.items():
        yield key, data.take(pa.array(rows, pa.int64()))


class _PartitionFile:
    def __init__(self, fs: pafs.FileSystem, base: str, relative: str, values: tuple,
                 schema: pa.Schema):
        self.path, self.relative, self.values = f"{base}/{relative}", relative, values
        fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        self.sink = fs.open_output_stream(self.path)
        self.writer = pq.ParquetWriter(self.sink, schema, compression="zstd")
        self.pending: list[pa.Table] = []
        self.pending_bytes = 0

    def add(self, rows: pa.Table) -> None:
        self.pending.append(rows)
        self.pending_bytes += rows.nbytes

    def flush(self) -> None:
        if self.pending:
            self.writer.write_table(pa.concat_tables(self.pending), row_group_size=1 << 30)
            self.pending, self.pending_bytes = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()
        self.sink.close()


def write_task_files(
    batches: Iterator[pa.RecordBatch],
    table_uri: str,
    partition_by: list[str],
    write_id: str,
    allowed: Mapping[str, list[str]],
    max_pending_bytes: int = ROW_GROUP_BYTES,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: write one file per partition value this task sees; yield FILE_ROWS.

    At most `max_pending_bytes` of rows wait in memory, over all open files: past that, the
    file holding most of them writes them out as a row group."""
    fs, base = pafs.FileSystem.from_uri(table_uri)
    files: dict[tuple, _PartitionFile] = {}
    pending = 0
    try:
        for batch in batches:
            for key, rows in _split(batch, partition_by):
                if key not in files:
                    values = _checked_values(key, partition_by, allowed)
                    folder = partition_folder(values, partition_by)
                    relative = f"{folder}/{file_name(write_id)}" if folder else file_name(write_id)
                    files[key] = _PartitionFile(fs, base, relative, values, rows.schema)
                files[key].add(rows)
                pending += rows.nbytes
            while pending >= max_pending_bytes:
                largest = max(files.values(), key=lambda handle: handle.pending_bytes)
                pending -= largest.pending_bytes
                largest.flush()
    finally:
        for handle in files.values():
            handle.close()
    out = {name: [] for name in ("path", "size", "partition_values", "stats", "modified")}
    for handle in files.values():
        out["path"].append(handle.relative)
        out["size"].append(fs.get_file_info(handle.path).size)
        out["partition_values"].append(json.dumps(dict(zip(partition_by, handle.values, strict=True))))
        out["stats"].append(file_stats(fs, handle.path))
        out["modified"].append(int(time.time() * 1000))
    yield pa.RecordBatch.from_pydict(out, schema=pa.schema([
        ("path", pa.string()), ("size", pa.int64()), ("partition_values", pa.string()),
        ("stats", pa.string()), ("modified", pa.int64()),
    ]))


def file_stats(fs: pafs.FileSystem, path: str) -> str:
    """numRecords plus per-column null counts and min/max from the Parquet footer (data skipping)."""
    with fs.open_input_file(path) as handle:
        meta = pq.ParquetFile(handle).metadata
    stats: dict = {"numRecords": meta.num_rows, "nullCount": {}, "minValues": {}, "maxValues": {}}
    if meta.num_rows == 0:
        return json.dumps({"numRecords": 0})
    for col_index in range(meta.num_columns):
        column = meta.schema.column(col_index)
        if "." in column.path or column.max_repetition_level > 0:
            continue  # nested columns: numRecords is enough
        nulls, lo, hi, complete = 0, None, None, True
        for rg in range(meta.num_row_groups):
            st = meta.row_group(rg).column(col_index).statistics
            if st is None or not st.has_null_count:
                complete = False
                break
            nulls += st.null_count
            if st.has_min_max and column.physical_type in ("INT32", "INT64", "DOUBLE", "FLOAT"):
                if column.logical_type.type not in ("NONE", "INT"):
                    continue
                if not (math.isfinite(st.min) and math.isfinite(st.max)):
                    continue  # NaN / inf are not valid JSON in the Delta log
                lo = st.min if lo is None else min(lo, st.min)
                hi = st.max if hi is None else max(hi, st.max)
        if not complete:
            continue
        stats["nullCount"][column.name] = nulls
        if lo is not None:
            stats["minValues"][column.name] = lo
            stats["maxValues"][column.name] = hi
    return json.dumps(stats)


def read_keys(fs: pafs.FileSystem, base: str, files: list[tuple[str, dict]], key: list[str]) -> set:
    """The key tuples held by these data files (relative path, partition values)."""
    keys: set = set()
    for relative, values in files:
        data_cols = [c for c in key if c not in values]
        with fs.open_input_file(f"{base}/{relative}") as handle:
            table = pq.read_table(handle, columns=data_cols)
        columns = [
            table.column(c).to_pylist() if c in data_cols else [values[c]] * table.num_rows
            for c in key
        ]
        keys.update(zip(*columns, strict=True))
    return keys



class Commit:
    """What one commit of the log did to the data (compaction moves data, it changes none)."""

    def __init__(self, version: int, lines: list[dict]):
        self.version = version
        info = next((line["commitInfo"] for line in lines if "commitInfo" in line), {})
        self.operation = info.get("operation", "?")
        self.added = [
            (unquote(line["add"]["path"]), line["add"].get("partitionValues") or {})
            for line in lines if "add" in line and line["add"].get("dataChange", True)
        ]
        self.removes_data = any(
            "remove" in line and line["remove"].get("dataChange", True) for line in lines
        )
        self.removed = [unquote(line["remove"]["path"]) for line in lines if "remove" in line]


def commits_between(fs: pafs.FileSystem, base: str, after: int, upto: int) -> list[Commit]:
    """Commits after version `after` up to `upto`, read from the table's JSON log."""
    commits = []
    for version in range(after + 1, upto + 1):
        with fs.open_input_stream(f"{base}/_delta_log/{version:020d}.json") as handle:
            text = handle.read().decode("utf-8")
        commits.append(Commit(version, [json.loads(line) for line in text.splitlines() if line]))
    return commits


def conflict_reason(
    commits: list[Commit], mode: str, unique_key: list[str] | None, fs: pafs.FileSystem,
    base: str, our_keys: Callable[[], set] | None,
) -> str | None:
    """Why a write planned before `commits` must not commit now (None: it may)."""
    if mode == "overwrite" and any(c.added or c.removes_data for c in commits):
        return "this write would replace data it never read"
    if any(c.removes_data for c in commits):
        return "a concurrent writer removed or replaced data this append planned against"
    if unique_key and our_keys is not None:
        theirs = read_keys(fs, base, [f for c in commits for f in c.added], unique_key)
        shared = theirs & our_keys()
        if shared:
            return (
                f"a concurrent append wrote {len(shared):,} of the same {unique_key} "
                f"(e.g. {sorted(shared)[0]})"
            )
    return None


def delete_files(fs: pafs.FileSystem, base: str, relative_paths: list[str]) -> None:
    for relative in relative_paths:
        try:
            fs.delete_file(f"{base}/{relative}")
        except (FileNotFoundError, OSError):
            pass


def delete_write(fs: pafs.FileSystem, base: str, write_id: str) -> None:
    """The files a failed write left (its tasks name them after the write id)."""
    try:
        infos = fs.get_file_info(pafs.FileSelector(base, recursive=True))
    except (FileNotFoundError, OSError):
        return
    delete_files(fs, base, [
        info.path[len(base) + 1:] for info in infos
        if info.type == pafs.FileType.File and write_id in info.base_name
    ])
