"""The score flow: plan the input into partitions, score them as mapped tasks, then finalize.

The output folder is exactly what ``verticals score`` writes (``part-NNNNN.parquet``, ``_rejects.parquet``,
``_manifest.json``) because every step is a core building block from :mod:`verticals.scoring`; the flow
only decides where each partition runs and publishes what happened.

Why a re-run resumes correctly: each partition's part file is written atomically into a staging
folder whose path depends only on the output path (:func:`verticals.scoring.staging_dir`), and
:func:`verticals.scoring.score_partition` returns the recorded result for a partition that is already
committed there (same input file fingerprint, same model files). A run killed at any point leaves
whole parts or none; the next run skips the committed ones and :func:`verticals.scoring.finalize`
moves everything to the output in one rename. Prefect's own result cache is deliberately not used for
partitions: the staging folder is the record of what is committed, and a cache entry could outlive
the files it describes.

Where partitions run: in the flow's process by default, where one partition stream
(:class:`~verticals.scoring.stream.PartitionStream`) scores them all with one reader pool reading ahead
across partitions and each task waits for its partition's commit; in ``workers`` threads that each
score their own partitions when ``workers`` > 1; or on a Dask cluster through
prefect-dask when ``dask_address`` (or ``$VERTICALS_DASK_ADDRESS``) names a scheduler. Each Dask
worker opens the model once and keeps it for the partitions it receives.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.utilities.annotations import unmapped

from verticals_flows import artifacts
from verticals_flows.config import FLOW_NAMES
from verticals_flows.config import dask_address as _dask_address
from verticals_flows.paths import dated
from verticals_flows.retries import transient

_SESSIONS: dict[str, Any] = {}
_SESSIONS_LOCK = threading.Lock()
# Background scoring of a run's partitions in this process, by staging folder (see _score_all).
_STREAMS: dict[str, Any] = {}


def _key(open_args: dict[str, Any], isolate: bool) -> str:
    args = {k: v for k, v in open_args.items() if k != "_thread"}
    return json.dumps({**args, "_thread": threading.get_ident() if isolate else None}, sort_keys=True,
                      default=str)


def _session(open_args: dict[str, Any], isolate: bool = False) -> Any:
    """The process's scoring session for ``open_args``, opened on first use and then reused.

    ``isolate`` gives each thread its own session: when several partitions are scored at once in one
    process, they must not share one runtime's buffers and lanes.
    """
    from verticals.scoring import ScoringSession

    key = _key(open_args, isolate)
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            args = dict(open_args)
            session = ScoringSession.open(args.pop("pipeline"), args.pop("model"), args.pop("device"),
                                          args.pop("batch_size"), args.pop("home"), **args)
            _SESSIONS[key] = session
        return session


def _remember(open_args: dict[str, Any], session: Any) -> None:
    with _SESSIONS_LOCK:
        _SESSIONS.setdefault(_key(open_args, False), session)


def _forget(open_args: dict[str, Any], keep: Any) -> None:
    """Drop this run's sessions from this process's cache and close them, except ``keep`` (the flow's
    own session, which the flow closes). Sessions on Dask workers stay open for the next run."""
    base = _key(open_args, False)
    with _SESSIONS_LOCK:
        mine = [k for k in _SESSIONS if _key({**json.loads(k), "_thread": None}, False) == base]
        dropped = [_SESSIONS.pop(k) for k in mine]
    for session in dropped:
        if session is not keep:
            session.close()


def forget_sessions() -> None:
    """Close the sessions this process keeps (tests, long-lived workers after a model change)."""
    with _SESSIONS_LOCK:
        for session in _SESSIONS.values():
            session.close()
        _SESSIONS.clear()


@task(name="plan-partitions")
def plan(input: str) -> list[Any]:
    """Cut the input into partitions: one per Parquet row group or CSV file (or chunk of files)."""
    from verticals.scoring import plan_partitions

    return plan_partitions(Path(input))


@task(name="score-partition", task_run_name="score-{partition.name}", retries=1, retry_delay_seconds=2,
      retry_condition_fn=transient)
def score_part(open_args: dict[str, Any], partition: Any, staging: str, isolate: bool = False) -> Any:
    """Score one partition into the staging folder (a committed partition returns its recorded result).

    Where this process runs the flow's partition stream, the partition is already being scored there
    (read ahead with the others): the task waits for its commit. If the stream ended without it
    (a failure elsewhere, a cancellation), the task scores it directly, as it would without a stream.
    """
    from verticals.scoring import score_partition

    stream = _STREAMS.get(str(staging))
    if stream is not None:
        result = stream.result(partition)
        if result is not None:
            return result
    return score_partition(_session(open_args, isolate), partition, Path(staging))


def _runner(address: str | None, workers: int) -> Any:
    if address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=address)
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=max(1, workers))


@flow(name=FLOW_NAMES["score"], flow_run_name="score-{pipeline}", validate_parameters=True)
def score_flow(pipeline: str, input: str, output: str, model: str | None = None, device: str = "auto",
               batch_size: int = 65536, overwrite: bool = False, dask_address: str | None = None,
               workers: int = 1, threads: int | None = None, variant: str = "auto",
               home: str | None = None) -> dict[str, Any]:
    """Batch-score ``input`` with ``pipeline``'s model into ``output``, partition by partition.

    Args:
        pipeline: qualified pipeline name, e.g. ``finance.credit_risk``.
        input: a Parquet or CSV file, or a folder of them.
        output: the output folder (same layout as ``verticals score``); ``{date}`` becomes the run's
            scheduled date.
        model: version, alias or ``latest``; default the ``production`` alias, else the latest.
        device: ``auto``, ``cpu`` or ``cuda`` (resolved on the machine that scores each partition).
        batch_size: rows per model call.
        overwrite: replace an existing, finished output folder.
        dask_address: Dask scheduler to score partitions on; default ``$VERTICALS_DASK_ADDRESS``, else
            threads of this process.
        workers: partitions scored at once in this process when not on Dask.
        threads: ONNX Runtime threads per scoring process (default: all its cores); set it to
            cores / workers when several Dask workers share a machine.
        variant: ``auto`` (default), ``fp32``, ``int8`` or ``fp16`` (see ``verticals score --help``).
        home: the model store's root (``$VERTICALS_HOME`` when not given).

    Returns:
        The run's ``_manifest.json`` content.
    """
    from verticals.locking import OutputLock
    from verticals.scoring import ScoringSession, check_sources, finalize, grouped_partitions, prepare_staging
    from verticals.scoring.output import abandon, check_output, committed_parts

    logger = get_run_logger()
    started = time.time()
    out = dated(output)
    source = Path(input).expanduser().absolute()
    address = _dask_address(dask_address)
    check_output(out, overwrite=overwrite)
    partitions = plan(str(source))
    session = ScoringSession.open(pipeline, model, device, batch_size, home, threads=threads, variant=variant)
    # Every partition uses the version resolved now, even if an alias moves during the run.
    open_args = dict(session.open_args, model=session.model_version)
    staging = None
    lock = OutputLock(out, what="scoring run")
    try:
        notes = check_sources(session, partitions)
        for note in notes:
            logger.warning("%s", note)
        lock.acquire()  # before anything at the output location is created, cleared or deleted
        staging = prepare_staging(session, partitions, out, overwrite=overwrite)
        committed = committed_parts(staging)
        logger.info("%s: %d partition(s) of %s -> %s (%d already committed in %s), on %s",
                    session.version.label, len(partitions), source, out, committed, staging,
                    f"Dask {address}" if address else f"{max(1, workers)} local thread(s)")
        if not address and workers <= 1:
            _remember(open_args, session)
        _mark_abandoned_runs(out, logger)
        partitions = grouped_partitions(session, partitions, staging)
        results = _score_all(partitions, open_args, staging, address, workers,
                             session if not address and workers <= 1 else None)
        if sum(r.rows_in for r in results) == 0:
            notes.append(f"{source}: no rows to score")
        manifest = finalize(session, staging, out, results, overwrite=overwrite, started=started,
                            input=source, warnings=notes)
    except BaseException as exc:
        abandon(session, staging, exc)  # still under the lock: only this run's staging folder
        raise
    finally:
        lock.release()
        _forget(open_args, keep=session)
        session.close()
    artifacts.score_report(session.name, out, manifest, partitions, results)
    logger.info("scored %s rows (%s rejected, %d part(s) resumed) into %s", manifest.get("rows_scored"),
                manifest.get("rows_rejected"), sum(1 for r in results if r.reused), out)
    return manifest


def _mark_abandoned_runs(out: Path, logger: Any) -> None:
    """Runs into ``out`` still shown 'Running' are dead (this run holds the lock): mark them crashed."""
    from prefect.runtime import flow_run

    from verticals_flows.crashed import mark_abandoned

    try:
        mark_abandoned(out, current=flow_run.id, log=logger.warning)
    except Exception as exc:  # bookkeeping only: never fail a scoring run over it
        logger.warning("could not check for abandoned runs into %s: %s", out, exc)


def _score_all(partitions: list[Any], open_args: dict[str, Any], staging: Path, address: str | None,
               workers: int, session: Any = None) -> list[Any]:
    """Score every partition as a mapped task; raise naming the partitions that failed.

    With ``session`` (one local worker), the partitions are scored by one
    :class:`~verticals.scoring.stream.PartitionStream` for the whole run, one reader pool reading ahead
    across partitions, and each task waits for its partition's commit: the flow then runs at the
    speed of ``verticals score`` while every partition is still a task with its own state.
    """
    from verticals.scoring.stream import PartitionStream

    if not partitions:
        return []
    stream = PartitionStream(session, partitions, staging).start() if session is not None else None
    if stream is not None:
        _STREAMS[str(staging)] = stream
    try:
        return _map_tasks(partitions, open_args, staging, address, workers)
    finally:
        if stream is not None:
            _STREAMS.pop(str(staging), None)
            stream.close()


def _map_tasks(partitions: list[Any], open_args: dict[str, Any], staging: Path, address: str | None,
               workers: int) -> list[Any]:
    from verticals.errors import VerticalsError

    with _runner(address, workers) as runner:
        # One session per thread where partitions run side by side (local threads, Dask workers with
        # several threads); a single local thread reuses the flow's own session.
        isolate = bool(address) or workers > 1
        futures = runner.map(score_part, {"open_args": unmapped(open_args), "partition": partitions,
                                          "staging": unmapped(str(staging)), "isolate": unmapped(isolate)})
        futures.wait()
        states = [f.state for f in futures]
        failed = [(p, s) for p, s in zip(partitions, states, strict=True) if not s.is_completed()]
        if failed:
            part, state = failed[0]
            try:
                state.result()
            except VerticalsError as exc:  # a user-facing error (bad data, plugin): keep its kind
                raise type(exc)(f"{len(failed)} of {len(partitions)} partition(s) failed; "
                                f"{part.describe()}: {exc.message}", hint=exc.hint) from exc
            except Exception as exc:
                raise VerticalsError(f"{len(failed)} of {len(partitions)} partition(s) failed; "
                                     f"{part.describe()}: {type(exc).__name__}: {exc}",
                                     hint="fix the cause and run the same command again: committed "
                                          "partitions are kept") from exc
        return [f.result() for f in futures]
