"""ZIP (entropy-law) greedy selection: a Spark-free kernel over one pool of documents.

The reference (USTC-StarTeam/ZIP, METHODS.md section 3) scores a list of samples by its
compression ratio, `len(raw) / len(zlib.compress(raw, 9))`, and grows the selection in rounds:

1. global: the k1 pool members with the lowest `state` (initially the ratio of each one alone);
2. coarse local: `ratio(selected + [x])` for each of them, written back to `state`; the k2 lowest
   leave the pool for good;
3. fine local: greedily, k3 times, the one of those k2 whose addition to this round's picks gives
   the lowest ratio. The k2 - k3 others are dropped (a reference quirk, kept).

Documents that left the pool never return: stage 1 ranks pool members only, where the reference's
`argsort(state)[:k1]` would reach removed (+inf) samples once k1 exceeds the pool. Stage 3 stops
at the budget, so a run never overshoots it; its picks are the first `budget` of any longer run.

The reference recompresses the whole selection for every stage-2 candidate, so a run costs
O(budget^2) compressed bytes. Here every list shares a prefix that is compressed once:

* `zlib9`: a level-9 deflate stream holds the prefix; each candidate is compressed by a copy of the
  stream (`compressobj().copy()`) and flushed. The byte count equals `zlib.compress(whole, 9)`:
  both use deflate's defaults (wbits 15, memLevel 8, default strategy), and deflate's output does
  not depend on how its input is chunked (checked by the tests against one-shot compression).
  A candidate then costs O(|candidate|) plus re-encoding deflate's pending block (<= 16K symbols).
* `zstd`: the prefix (its last 2**window_log bytes, the level's window) is a raw-content
  dictionary for the candidate, and the ratio is
  `(|prefix| + |candidate|) / (zstd(prefix) + zstd(candidate | prefix))`. This is not the size of
  one frame of the concatenation (zstd cannot copy a stream), but it sees back a whole window
  (2 MiB at level 3) where deflate sees 32 KiB.

A list is serialised as `opener + separator.join(pieces) + closer` in UTF-8. Documents use
`TEXT_FRAMING` (texts joined by a blank line); ShareGPT records use `PYTHON_LIST_FRAMING` with
`repr(record)` pieces, which is byte for byte the reference's `str(list_of_sample_dicts)`.
Ties everywhere go to the lowest pool position, so results are deterministic.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zstandard

Backend = Literal["zlib9", "zstd"]
Serialization = Literal["text", "sharegpt"]
BACKENDS: tuple[str, ...] = ("zlib9", "zstd")
SERIALIZATIONS: tuple[str, ...] = ("text", "sharegpt")
ZLIB_LEVEL = 9


@dataclass(frozen=True)
class ListFraming:
    """How the bytes of a list of pieces are laid out: opener + separator.join(pieces) + closer."""

    opener: bytes
    separator: bytes
    closer: bytes

    def join(self, pieces: Iterable[bytes]) -> bytes:
        return self.opener + self.separator.join(pieces) + self.closer


TEXT_FRAMING = ListFraming(b"", b"\n\n", b"")
PYTHON_LIST_FRAMING = ListFraming(b"[", b", ", b"]")


def sharegpt_piece(record: dict[str, Any]) -> bytes:
    """One ShareGPT sample as the reference serialises it inside `str(list_of_samples)`."""
    if not isinstance(record, dict):
        raise ValueError(f"a ShareGPT record must be a dict, got {type(record).__name__}")
    return repr(record).encode("utf-8")


def reference_list_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    """The reference's serialisation of a list of samples: `str(list).encode('utf-8')`."""
    return PYTHON_LIST_FRAMING.join(sharegpt_piece(r) for r in records)


def serialize(
    texts: Sequence[str | None], serialization: Serialization, ids: Sequence[Any] | None = None
) -> tuple[list[bytes | None], ListFraming]:
    """Pieces and framing for the kernel. `sharegpt` texts are JSON objects (one record each)."""
    if serialization == "text":
        texts = [_text_or_none(t) for t in texts]
        return [t.encode("utf-8") if t is not None else None for t in texts], TEXT_FRAMING
    if serialization != "sharegpt":
        raise ValueError(f"serialization must be one of {SERIALIZATIONS}, got {serialization!r}")
    pieces: list[bytes | None] = []
    for i, text in enumerate(texts):
        text = _text_or_none(text)
        if text is None or not text:
            pieces.append(None)
            continue
        name = f"doc_id {ids[i]!r}" if ids is not None else f"record {i}"
        try:
            pieces.append(sharegpt_piece(json.loads(text)))
        except (json.JSONDecodeError, ValueError) as err:
            raise ValueError(f"{name}: not a ShareGPT JSON object: {err}") from err
    return pieces, PYTHON_LIST_FRAMING


def _text_or_none(value: Any) -> str | None:
    # Arrow hands pandas None for null strings; a float NaN can appear in object columns too.
    if value is None or (isinstance(value, float) and value != value):
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected a string document, got {type(value).__name__}")
    return value


class _ZlibPrefix:
    """A growing list kept as an open level-9 deflate stream."""

    def __init__(self, framing: ListFraming) -> None:
        self._framing = framing
        self._stream = zlib.compressobj(
            ZLIB_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, zlib.Z_DEFAULT_STRATEGY
        )
        self._emitted = len(self._stream.compress(framing.opener))
        self._raw = len(framing.opener)
        self.n_docs = 0

    def append(self, piece: bytes) -> None:
        data = self._framing.separator + piece if self.n_docs else piece
        self._emitted += len(self._stream.compress(data))
        self._raw += len(data)
        self.n_docs += 1

    def ratios(self, tails: Sequence[bytes]) -> np.ndarray:
        """Ratio of (this list + [x]) for each x, given as `piece + closer`."""
        base, emitted, raw = self._stream, self._emitted, self._raw
        if self.n_docs:
            base = base.copy()
            emitted += len(base.compress(self._framing.separator))
            raw += len(self._framing.separator)
        out = np.empty(len(tails))
        for i, tail in enumerate(tails):
            trial = base.copy()
            out[i] = (raw + len(tail)) / (emitted + len(trial.compress(tail)) + len(trial.flush()))
        return out

    def ratio(self) -> float:
        trial = self._stream.copy()
        tail = len(trial.compress(self._framing.closer)) + len(trial.flush())
        return (self._raw + len(self._framing.closer)) / (self._emitted + tail)


class _ZstdPrefix:
    """A growing list whose content serves candidates as a raw-content zstd dictionary."""

    def __init__(self, framing: ListFraming, level: int) -> None:
        self._framing = framing
        self._level = level
        self._plain = zstandard.ZstdCompressor(level=level)
        self._window = 1 << zstandard.ZstdCompressionParameters.from_level(level).window_log
        self._content = bytearray(framing.opener)
        self.n_docs = 0

    def append(self, piece: bytes) -> None:
        if self.n_docs:
            self._content += self._framing.separator
        self._content += piece
        self.n_docs += 1

    def ratios(self, tails: Sequence[bytes]) -> np.ndarray:
        out = np.empty(len(tails))
        if not self.n_docs:
            opener, compress = self._framing.opener, self._plain.compress
            for i, tail in enumerate(tails):
                out[i] = (len(opener) + len(tail)) / len(compress(opener + tail))
            return out
        prefix = bytes(self._content)
        prefix_size = len(self._plain.compress(prefix))
        dictionary = zstandard.ZstdCompressionDict(
            prefix[-self._window :], dict_type=zstandard.DICT_TYPE_RAWCONTENT
        )
        compress = zstandard.ZstdCompressor(level=self._level, dict_data=dictionary).compress
        sep = self._framing.separator
        raw = len(prefix) + len(sep)
        for i, tail in enumerate(tails):
            out[i] = (raw + len(tail)) / (prefix_size + len(compress(sep + tail)))
        return out

    def ratio(self) -> float:
        whole = bytes(self._content) + self._framing.closer
        return len(whole) / len(self._plain.compress(whole))


def _new_prefix(framing: ListFraming, backend: str, zstd_level: int) -> _ZlibPrefix | _ZstdPrefix:
    return _ZlibPrefix(framing) if backend == "zlib9" else _ZstdPrefix(framing, zstd_level)


def list_compression(
    pieces: Iterable[bytes], framing: ListFraming = TEXT_FRAMING, backend: Backend = "zlib9",
    zstd_level: int = 3,
) -> tuple[int, int]:
    """(raw bytes, compressed bytes) of a whole list, streamed: no concatenated copy in memory.

    zlib9 gives exactly `len(zlib.compress(framing.join(pieces), 9))`; zstd one streamed frame.
    """
    _check_backend(backend, zstd_level)
    stream: Any = (
        zlib.compressobj(ZLIB_LEVEL) if backend == "zlib9"
        else zstandard.ZstdCompressor(level=zstd_level).compressobj()
    )
    raw, compressed = len(framing.opener), len(stream.compress(framing.opener))
    for i, piece in enumerate(pieces):
        data = framing.separator + piece if i else piece
        raw += len(data)
        compressed += len(stream.compress(data))
    raw += len(framing.closer)
    compressed += len(stream.compress(framing.closer)) + len(stream.flush())
    return raw, compressed


@dataclass(frozen=True)
class RoundProgress:
    round: int
    n_selected: int
    n_selected_chars: int
    pool_left: int
    seconds: float


@dataclass(frozen=True)
class ZipSelection:
    """Picks in selection order. Rounds and ranks (stage-3 positions) start at 1."""

    positions: np.ndarray  # int64 positions in the input pool
    rounds: np.ndarray  # int32
    ranks: np.ndarray  # int32
    ratios: np.ndarray  # float64, ratio(this round's earlier picks + [pick]) when it was picked
    unscorable: np.ndarray  # int64 positions of null/empty documents, never candidates
    n_rounds: int
    n_evaluations: int  # candidate compressions performed
    stop_reason: Literal["budget", "char_budget", "pool_exhausted"]
    selection_ratio: float | None  # ratio of the whole selected list, same back-end


def _lowest(values: np.ndarray, positions: np.ndarray, k: int) -> np.ndarray:
    """Up to k of `positions` (ascending) with the lowest values, ordered by (value, position)."""
    if k < positions.size:
        kth = np.partition(values[positions], k - 1)[k - 1]
        positions = positions[values[positions] <= kth]
    order = np.argsort(values[positions], kind="stable")
    return positions[order[:k]]


def _check_backend(backend: str, zstd_level: int) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "zstd" and not 1 <= zstd_level <= 22:
        raise ValueError(f"zstd_level must be in 1..22, got {zstd_level}")


def _check_params(k1: int, k2: int, k3: int, budget: int, char_budget: int | None) -> None:
    for name, value in (("k1", k1), ("k2", k2), ("k3", k3)):
        if not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not k3 <= k2 <= k1:
        raise ValueError(f"need k3 <= k2 <= k1, got k1={k1}, k2={k2}, k3={k3}")
    if not isinstance(budget, int | np.integer) or budget < 0:
        raise ValueError(f"budget must be a non-negative integer, got {budget!r}")
    if char_budget is not None and char_budget < 1:
        raise ValueError(f"char_budget must be positive when given, got {char_budget!r}")


def zip_select(
    pieces: Sequence[bytes | None],
    *,
    k1: int,
    k2: int,
    k3: int,
    budget: int,
    char_budget: int | None = None,
    char_lengths: Sequence[int] | None = None,
    framing: ListFraming = TEXT_FRAMING,
    backend: Backend = "zlib9",
    zstd_level: int = 3,
    on_round: Callable[[RoundProgress], None] | None = None,
) -> ZipSelection:
    """Select up to `budget` pieces by the reference's three-stage greedy.

    Stops at `budget` documents, once the selected characters reach `char_budget` (the pick that
    crosses it is kept), or when the pool is empty: every round removes k2 documents but keeps k3,
    so a budget above about len(pool) * k3 / k2 ends early with stop_reason "pool_exhausted".
    `char_lengths` defaults to the code points of each piece. Null or empty pieces have no ratio
    and are never candidates; they are listed in `unscorable`.
    """
    _check_params(k1, k2, k3, budget, char_budget)
    _check_backend(backend, zstd_level)
    n = len(pieces)
    if char_lengths is None:
        char_lengths = [len(p.decode("utf-8")) if p else 0 for p in pieces]
    elif len(char_lengths) != n:
        raise ValueError(f"char_lengths has {len(char_lengths)} entries for {n} pieces")
    chars = np.asarray(char_lengths, dtype=np.int64)
    scorable_mask = np.fromiter((bool(p) for p in pieces), dtype=bool, count=n)
    alive = scorable_mask.copy()
    tails = [p + framing.closer if p else p for p in pieces] if framing.closer else list(pieces)

    def new_prefix() -> _ZlibPrefix | _ZstdPrefix:
        return _new_prefix(framing, backend, zstd_level)

    started = time.perf_counter()
    # ratio([x]) is both the initial global state and stage 3's first step of every round.
    single = np.full(n, np.inf)
    scorable = np.flatnonzero(alive)
    single[scorable] = new_prefix().ratios([tails[i] for i in scorable])
    n_evaluations = scorable.size
    state = single.copy()
    selected = new_prefix()
    picks: list[tuple[int, int, int, float]] = []
    n_chars = 0
    round_no = 0

    def stop_reason() -> str | None:
        if len(picks) >= budget:
            return "budget"
        if char_budget is not None and n_chars >= char_budget:
            return "char_budget"
        return None

    while (reason := stop_reason()) is None:
        pool = np.flatnonzero(alive)
        if pool.size == 0:
            reason = "pool_exhausted"
            break
        round_no += 1
        # Stage 1 and 2: the stage-2 ratios overwrite the global state, as in the reference.
        c1 = _lowest(state, pool, k1)
        state[c1] = selected.ratios([tails[i] for i in c1])
        c2 = _lowest(state, np.sort(c1), k2)
        alive[c2] = False
        state[c2] = np.inf
        n_evaluations += c1.size
        # Stage 3: greedy against this round's picks only.
        remaining = np.sort(c2)
        local = new_prefix()
        rank = 0
        while remaining.size and rank < k3 and stop_reason() is None:
            if rank == 0:
                values = single[remaining]
            else:
                values = local.ratios([tails[i] for i in remaining])
                n_evaluations += remaining.size
            best = int(np.argmin(values))  # first minimum = lowest position
            pick = int(remaining[best])
            remaining = np.delete(remaining, best)
            rank += 1
            local.append(pieces[pick])  # type: ignore[arg-type]
            selected.append(pieces[pick])  # type: ignore[arg-type]
            n_chars += int(chars[pick])
            picks.append((pick, round_no, rank, float(values[best])))
        if on_round is not None:
            on_round(RoundProgress(round_no, len(picks), n_chars, int(alive.sum()),
                                   time.perf_counter() - started))

    columns = list(zip(*picks, strict=True)) if picks else [(), (), (), ()]
    return ZipSelection(
        positions=np.asarray(columns[0], dtype=np.int64),
        rounds=np.asarray(columns[1], dtype=np.int32),
        ranks=np.asarray(columns[2], dtype=np.int32),
        ratios=np.asarray(columns[3], dtype=np.float64),
        unscorable=np.flatnonzero(~scorable_mask),
        n_rounds=round_no,
        n_evaluations=int(n_evaluations),
        stop_reason=reason,  # type: ignore[arg-type]
        selection_ratio=selected.ratio() if picks else None,
    )
