"""Fetch -> validate -> store: the ingestion half of the pipeline, shared by the CLI, tasks and the API.

Each batch (a PNCP page, or up to BATCH_SIZE records of a file) is one transaction that writes the records,
the quarantine, the run's counters and the watermark cursor together, so a crash loses at most the batch in
flight and a resumed run re-fetches it idempotently.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from cidadao.config import Settings
from cidadao.domain.records import Record, RecordKind, Rejection
from cidadao.logs import get_logger
from cidadao.sources.files import SourcedRecord, detect_format, read_sourced_records
from cidadao.sources.pncp import MAX_PAGE_SIZE, Page, PncpClient, Window, split_window
from cidadao.sources.pncp_schema import BRASILIA, parse_record
from cidadao.store.db import engine_for, transaction
from cidadao.store.repositories import (
    add_run_counts,
    finish_run,
    get_watermark,
    quarantine,
    save_watermark,
    start_run,
    upsert_records,
)

BATCH_SIZE = 2000
ENDPOINTS: tuple[str, ...] = ("contratacoes", "contratos")
# PNCP's clock (Brasília, naive in the API): windows and watermarks use it.
PNCP_TZ = BRASILIA
# Ingestion runs of the fast path (its records are stored as source "pncp", like the full pass's).
TAIL_SOURCE = "pncp-tail"

log = get_logger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class IngestStats:
    """Counts of one ingestion; `changed` lists the control numbers inserted or updated (to analyse)."""

    fetched: int = 0
    ingested: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0
    changed: list[str] = field(default_factory=list)
    run_id: int | None = None

    def add(self, other: IngestStats) -> None:
        for name, value in other.counts().items():
            setattr(self, name, getattr(self, name) + value)
        self.changed += other.changed

    def counts(self) -> dict[str, int]:
        return {
            "fetched": self.fetched,
            "ingested": self.ingested,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "quarantined": self.quarantined,
        }


class IngestFailed(RuntimeError):
    """The source failed mid-run; the run is marked failed and what was stored before stays stored."""

    def __init__(self, message: str, stats: IngestStats) -> None:
        super().__init__(message)
        self.stats = stats

    def __reduce__(self) -> tuple[type[IngestFailed], tuple[str, IngestStats]]:
        return IngestFailed, (str(self), self.stats)  # from a share's process to the caller's


Progress = Callable[[IngestStats], None]


class PageClient(Protocol):
    """What ingest_pncp needs from the PNCP client: one window's pages, from a given page on."""

    def iter_pages(
        self,
        endpoint: str,
        start: date,
        end: date,
        modalidade: int | None = None,
        first_page: int = 1,
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]: ...


def ingest_raw(
    engine: Engine,
    source: str,
    raws: Iterable[dict[str, Any] | Rejection],
    run: int | None = None,
    progress: Progress | None = None,
    *,
    kind: RecordKind | None = None,
    batch_size: int = BATCH_SIZE,
) -> IngestStats:
    """Validate and store raw PNCP records in batches; bad ones are quarantined, never fatal.

    With `run` the counts are added to that ingestion run, which the caller finishes; without it a run is
    opened and closed here. A failure of the source raises IngestFailed after marking the run failed.
    """
    items = ((raw, None) for raw in raws)
    return _ingest_sourced(engine, source, items, run, progress, kind=kind, batch_size=batch_size)


def _ingest_sourced(
    engine: Engine,
    source: str,
    items: Iterable[SourcedRecord],
    run: int | None,
    progress: Progress | None,
    *,
    kind: RecordKind | None = None,
    batch_size: int = BATCH_SIZE,
) -> IngestStats:
    stats = IngestStats()
    with _running(engine, source, run, stats) as run_id, _heap_frozen():
        # Reading and validating the next batch overlaps with the database storing this one.
        for batch in _in_background(_parsed_batches(items, kind, batch_size)):
            _store_parsed(engine, source, batch, run_id, stats)
            if progress:
                progress(stats)
    return stats


@dataclass(frozen=True, slots=True)
class _Parsed:
    fetched: int
    records: list[Record]
    rejections: list[Rejection]


def _parse(items: Sequence[SourcedRecord], kind: RecordKind | None) -> _Parsed:
    records: list[Record] = []
    rejections: list[Rejection] = []
    for raw, text in items:
        item = raw if isinstance(raw, Rejection) else parse_record(raw, kind, text)
        if isinstance(item, Rejection):
            rejections.append(item)
        else:
            records.append(item)
    return _Parsed(len(items), records, rejections)


def _parsed_batches(
    items: Iterable[SourcedRecord], kind: RecordKind | None, batch_size: int
) -> Iterator[_Parsed]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, batch_size)):
        yield _parse(batch, kind)


_frozen_by = 0  # ingestions running with the heap frozen
_we_froze = False  # False when the process had frozen its heap itself; then it is left frozen
_frozen_lock = threading.Lock()


@contextmanager
def _heap_frozen() -> Iterator[None]:
    """Keep the garbage collector's full passes to the objects a bulk ingestion allocates.

    Reading and validating allocates several containers per record, which triggers a full collection about
    every 10,000 records, and each one traversed the whole heap that existed before (modules, caches): ~12 us
    of Python per record of a first load. `gc.freeze` sets those objects aside until the last concurrent
    ingestion ends; they are still freed when no longer referenced, and cycles among them are collected after
    `unfreeze`.
    """
    global _frozen_by, _we_froze
    with _frozen_lock:
        if not _frozen_by:
            # A process that froze its heap itself (e.g. before forking workers) must find it frozen after.
            _we_froze = not gc.get_freeze_count()
            if _we_froze:
                gc.freeze()
        _frozen_by += 1
    try:
        yield
    finally:
        with _frozen_lock:
            _frozen_by -= 1
            if not _frozen_by and _we_froze:
                gc.unfreeze()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _in_background(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run an iterator in a thread, at most `depth` items ahead; its exceptions re-raise here."""
    ready: queue.Queue[T | _Failure | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: T | _Failure | None) -> None:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def produce() -> None:
        try:
            for item in items:
                put(item)
                if stop.is_set():
                    return
            put(None)
        except BaseException as error:  # handed to the consumer, which decides
            put(_Failure(error))

    worker = threading.Thread(target=produce, name="ingest-reader", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def ingest_file(
    engine: Engine,
    path: str | Path,
    run: int | None = None,
    progress: Progress | None = None,
    *,
    jobs: int = 1,
) -> IngestStats:
    """Ingest a PNCP export: a response page, a JSON array, JSON Lines or the flattened CSV.

    With `jobs` > 1, a JSON Lines file going into PostgreSQL is shared among that many processes by control
    number (`files.line_share`): each reads the file, validates and stores its share in its own batches and
    transactions, under the same ingestion run. Other files and SQLite (one writer at a time) use one.
    """
    if jobs > 1 and engine.dialect.name == "postgresql" and _is_json_lines(Path(path)):
        return _ingest_file_shared(engine, Path(path), run, progress, jobs)
    return _ingest_sourced(engine, "file", read_sourced_records(path), run, progress)


def _is_json_lines(path: Path) -> bool:
    with path.open("rb") as stream:
        return detect_format(stream, path.suffix.lower()) == "jsonl"


_COUNTS = tuple(IngestStats().counts())
_share_counts: Any = None  # in a share's process: its slots of the counts every share reports


def _ingest_file_shared(
    engine: Engine, path: Path, run: int | None, progress: Progress | None, jobs: int
) -> IngestStats:
    # forkserver: children start from a clean process with this module imported, not from a fork of a
    # caller that may hold threads (progress bars) and open connections.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    counts = context.Array("q", len(_COUNTS) * jobs, lock=False)
    url = engine.url.render_as_string(hide_password=False)
    stats = IngestStats()
    with (
        _running(engine, "file", run, stats) as run_id,
        ProcessPoolExecutor(jobs, context, initializer=_share_init, initargs=(counts,)) as pool,
    ):
        shares = [pool.submit(_ingest_share, url, str(path), run_id, (index, jobs)) for index in range(jobs)]
        while wait(shares, timeout=0.25).not_done:
            if progress:
                progress(_summed(counts, jobs))
        for share in shares:
            stats.add(share.result())
    if progress:
        progress(stats)
    return stats


def _share_init(counts: Any) -> None:
    global _share_counts
    _share_counts = counts


def _summed(counts: Any, jobs: int) -> IngestStats:
    width = len(_COUNTS)
    totals = {name: sum(counts[share * width + i] for share in range(jobs)) for i, name in enumerate(_COUNTS)}
    return IngestStats(**totals)


def _ingest_share(url: str, path: str, run_id: int, share: tuple[int, int]) -> IngestStats:
    offset = share[0] * len(_COUNTS)

    def report(stats: IngestStats) -> None:
        for i, value in enumerate(stats.counts().values()):
            _share_counts[offset + i] = value

    engine = engine_for(url)
    try:
        return _ingest_sourced(engine, "file", read_sourced_records(path, share=share), run_id, report)
    finally:
        engine.dispose()


@contextmanager
def _running(
    engine: Engine,
    source: str,
    run: int | None,
    stats: IngestStats,
    window: tuple[datetime | None, datetime | None] = (None, None),
) -> Iterator[int]:
    if run is None:
        with transaction(engine) as session:
            stats.run_id = start_run(session, source, *window)
    else:
        stats.run_id = run
    try:
        yield stats.run_id
    except Exception as error:
        message = f"{type(error).__name__}: {error}"
        log.error("ingestion failed", source=source, run_id=stats.run_id, error=message, **stats.counts())
        if run is None:
            with transaction(engine) as session:
                finish_run(session, stats.run_id, "failed", message)
        raise IngestFailed(message, stats) from error
    if run is None:
        with transaction(engine) as session:
            finish_run(session, stats.run_id, "succeeded")
    log.info("ingestion finished", source=source, run_id=stats.run_id, **stats.counts())


def store_batch(
    engine: Engine,
    source: str,
    raws: Sequence[dict[str, Any] | Rejection],
    run_id: int | None,
    stats: IngestStats,
    *,
    kind: RecordKind | None = None,
    after: Callable[[Session], None] | None = None,
) -> None:
    """Parse and store one batch in one transaction; `after` adds writes to it (e.g. the watermark)."""
    _store_parsed(engine, source, _parse([(raw, None) for raw in raws], kind), run_id, stats, after)


def _store_parsed(
    engine: Engine,
    source: str,
    parsed: _Parsed,
    run_id: int | None,
    stats: IngestStats,
    after: Callable[[Session], None] | None = None,
) -> None:
    try:
        with transaction(engine) as session:
            # A run that has met only new records so far (a first load) skips looking up stored versions.
            expect_new = stats.fetched > 0 and not stats.updated and not stats.unchanged
            batch = _write(session, source, parsed, run_id, after, isolate=False, expect_new=expect_new)
    except DBAPIError:
        # A value the database refuses (too long, out of range) must not sink its whole batch.
        with transaction(engine) as session:
            batch = _write(session, source, parsed, run_id, after, isolate=True)
    stats.add(batch)


def _write(
    session: Session,
    source: str,
    parsed: _Parsed,
    run_id: int | None,
    after: Callable[[Session], None] | None,
    *,
    isolate: bool,
    expect_new: bool = False,
) -> IngestStats:
    batch = IngestStats(fetched=parsed.fetched, run_id=run_id)
    refused: list[Rejection] = []
    for group in ([record] for record in parsed.records) if isolate else [parsed.records]:
        try:
            with session.begin_nested() if isolate else nullcontext():
                result = upsert_records(session, group, source, expect_new=expect_new)
        except DBAPIError as error:
            if not isolate:
                raise
            reason = f"refused by the database: {str(error.orig or error).splitlines()[0]}"
            refused.append(Rejection(reason, group[0].raw, group[0].control_number))
            continue
        batch.ingested += len(result.inserted)
        batch.updated += len(result.updated)
        batch.unchanged += result.unchanged
        batch.changed += result.inserted + result.updated
    batch.quarantined = quarantine(session, [*parsed.rejections, *refused], source, run_id)
    if run_id is not None:
        add_run_counts(session, run_id, **batch.counts())
    if after:
        after(session)
    return batch


def ingest_pncp(
    engine: Engine,
    settings: Settings,
    start: date | None = None,
    end: date | None = None,
    client: PageClient | None = None,
    *,
    endpoints: Sequence[str] = ENDPOINTS,
    run: int | None = None,
    progress: Progress | None = None,
) -> IngestStats:
    """Fetch PNCP windows of at most `pncp_window_days` days, page by page, and store them.

    With `start` the dates [start, end] are fetched (a backfill, resumable on its own watermark); without it
    the run is incremental: from the source's watermark minus `pncp_overlap_minutes` up to today. Each page
    is stored with a cursor (endpoint, window, modalidade, page) in the same transaction, so a crash resumes
    at the interrupted page; the watermark position advances only when a whole window is stored.
    """
    now = datetime.now(PNCP_TZ).replace(tzinfo=None)
    last = end or now.date()
    with transaction(engine) as session:
        plans = [_plan(session, settings, endpoint, start, last, now) for endpoint in endpoints]
    if start is not None and all(plan.first > last for plan in plans):
        # This backfill was completed before: asked again, it runs again from the start.
        plans = [replace(plan, first=start, cursor=None) for plan in plans]
    first = min((plan.first for plan in plans), default=last)
    stats = IngestStats()
    window = (datetime.combine(first, time()), datetime.combine(last + timedelta(days=1), time()))
    with ExitStack() as cleanup:
        if client is None:
            client = cleanup.enter_context(PncpClient(settings))
        with _running(engine, "pncp", run, stats, window) as run_id:
            for plan in plans:
                _ingest_endpoint(engine, settings, client, plan, last, now, run_id, stats, progress)
    return stats


@dataclass(frozen=True, slots=True)
class _Plan:
    endpoint: str
    key: str  # watermark row
    first: date
    position: datetime
    cursor: dict[str, Any] | None


def _plan(
    session: Session, settings: Settings, endpoint: str, start: date | None, last: date, now: datetime
) -> _Plan:
    if start is not None:
        # A backfill keeps its own watermark so it never disturbs the incremental one.
        key = f"pncp:{endpoint}@{start:%Y%m%d}-{last:%Y%m%d}"
        mark = get_watermark(session, key)
        if mark is None:
            return _Plan(endpoint, key, start, datetime.combine(start, time()), None)
        first = date.fromisoformat(mark.cursor["window"][0]) if mark.cursor else mark.position.date()
        return _Plan(endpoint, key, max(first, start), mark.position, mark.cursor)
    key = f"pncp:{endpoint}"
    mark = get_watermark(session, key)
    if mark is None:
        return _Plan(endpoint, key, now.date(), datetime.combine(now.date(), time()), None)
    if mark.cursor:
        first = date.fromisoformat(mark.cursor["window"][0])
    else:
        first = (mark.position - timedelta(minutes=settings.pncp_overlap_minutes)).date()
    return _Plan(endpoint, key, min(first, last), mark.position, mark.cursor)


def _ingest_endpoint(
    engine: Engine,
    settings: Settings,
    client: PageClient,
    plan: _Plan,
    last: date,
    now: datetime,
    run_id: int,
    stats: IngestStats,
    progress: Progress | None,
) -> None:
    kind = RecordKind.CONTRATO if plan.endpoint == "contratos" else RecordKind.CONTRATACAO
    modalidades: list[int | None] = (
        list(settings.pncp_modalidades) if kind is RecordKind.CONTRATACAO else [None]
    )
    position, cursor = plan.position, plan.cursor
    for span in split_window(plan.first, last, settings.pncp_window_days):
        window_start, window_end = span.start, span.end
        window = [window_start.isoformat(), window_end.isoformat()]
        resume = cursor if cursor and cursor.get("window") == window else None
        for index, modalidade in enumerate(modalidades):
            first_page = 1
            if resume:
                done = modalidades.index(resume["modalidade"]) if resume["modalidade"] in modalidades else -1
                if index < done:
                    continue
                if index == done:
                    first_page = int(resume["page"]) + 1
            pages = client.iter_pages(plan.endpoint, window_start, window_end, modalidade, first_page)
            for page, items in pages:
                checkpoint = {"window": window, "modalidade": modalidade, "page": page}
                store_batch(
                    engine,
                    "pncp",
                    items,
                    run_id,
                    stats,
                    kind=kind,
                    after=partial(save_watermark, source=plan.key, position=position, cursor=checkpoint),
                )
                if progress:
                    progress(stats)
        # The window is complete: move the position (never backwards, never past now) and drop the cursor.
        position = max(position, min(datetime.combine(window_end + timedelta(days=1), time()), now))
        cursor = None
        with transaction(engine) as session:
            save_watermark(session, plan.key, position, None)
        log.info("pncp window stored", endpoint=plan.endpoint, window=window, **stats.counts())


class TailClient(Protocol):
    """What the tail poll needs from the PNCP client: one page of a window, with its totals."""

    def fetch_page(
        self, endpoint: str, window: Window, number: int, modalidade: int | None = None
    ) -> Page: ...


def tail_key(endpoint: str, modalidade: int | None, day: date) -> str:
    """The `watermarks` row of one (endpoint, modalidade, day) tail: how many of its records are stored."""
    return f"pncp-tail:{endpoint}:{'-' if modalidade is None else modalidade}:{day:%Y%m%d}"


def ingest_pncp_tail(
    engine: Engine,
    settings: Settings,
    client: TailClient | None = None,
    *,
    endpoints: Sequence[str] = ENDPOINTS,
    run: int | None = None,
    now: datetime | None = None,
) -> IngestStats:
    """The fast path: fetch only what PNCP appended to today's listings since the last poll.

    Per endpoint and modalidade, the `pncp-tail:` watermark holds how many of today's records (in PNCP's
    order) are stored. One request, for the page holding the last of them, tells the current total; unchanged
    -> done. Grown from N to M -> that page and the following ones up to M are stored, each in one
    transaction with the new count, so a crash re-polls from the interrupted page and upserts stay idempotent.
    It assumes PNCP appends new records at the end of a day's listing; records inserted elsewhere, changed, or
    published late are the full pass's business (incremental with overlap), which remains the guarantee.
    """
    now = now or datetime.now(PNCP_TZ).replace(tzinfo=None)
    day = now.date()
    stats = IngestStats()
    with ExitStack() as cleanup:
        if client is None:
            client = cleanup.enter_context(PncpClient(settings))
        with _running(engine, TAIL_SOURCE, run, stats) as run_id:
            for endpoint in endpoints:
                kind = RecordKind.CONTRATO if endpoint == "contratos" else RecordKind.CONTRATACAO
                modalidades: list[int | None] = (
                    list(settings.pncp_modalidades) if kind is RecordKind.CONTRATACAO else [None]
                )
                for modalidade in modalidades:
                    _ingest_tail(
                        engine, settings, client, endpoint, kind, modalidade, day, now, run_id, stats
                    )
    return stats


def _ingest_tail(
    engine: Engine,
    settings: Settings,
    client: TailClient,
    endpoint: str,
    kind: RecordKind,
    modalidade: int | None,
    day: date,
    now: datetime,
    run_id: int,
    stats: IngestStats,
) -> None:
    key = tail_key(endpoint, modalidade, day)
    size = min(settings.pncp_page_size, MAX_PAGE_SIZE[endpoint])
    with transaction(engine) as session:
        mark = get_watermark(session, key)
    stored = int(mark.cursor.get("total", 0)) if mark and mark.cursor else 0
    window = Window(day, day)
    number = max(1, -(-stored // size))  # the page holding the last stored record
    page = client.fetch_page(endpoint, window, number, modalidade)
    if not page.records and number > 1:
        # Past the end (HTTP 204 carries no totals): the listing shrank; ask page 1 for the total.
        number = 1
        page = client.fetch_page(endpoint, window, number, modalidade)
    total = page.total_records if page.records else 0
    if total <= stored:
        if total < stored:
            # Records vanished or moved: restart the count; the full pass reconciles whatever changed.
            log.warning(
                "pncp listing shrank", endpoint=endpoint, modalidade=modalidade, was=stored, now=total
            )
            with transaction(engine) as session:
                save_watermark(session, key, now, {"total": total})
        return
    last_page = -(-total // size)
    while page.records:  # empty: the listing shrank meanwhile; the next poll sees it
        covered = min(total, number * size)
        store_batch(
            engine,
            "pncp",
            page.records,
            run_id,
            stats,
            kind=kind,
            after=partial(save_watermark, source=key, position=now, cursor={"total": covered}),
        )
        if number >= last_page:
            break
        number += 1
        page = client.fetch_page(endpoint, window, number, modalidade)
    log.info("pncp tail stored", endpoint=endpoint, modalidade=modalidade, was=stored, total=total)
