"""Executors for sweeps: every backend is a :class:`concurrent.futures.Executor`.

The sweep layer only calls ``submit`` and waits on the returned futures, so anything that
implements the standard interface runs a sweep. Three factories are provided; none of them
schedules, queues or sends anything itself, each hands the work to an existing engine:

``local`` (default)
    :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start method (torch is
    not fork-safe once its thread pools exist).
``dask``
    a Dask distributed client: ``scheduler="tcp://HOST:PORT"`` connects to a running cluster;
    without it a :class:`distributed.LocalCluster` is started (one single-threaded worker
    process per batch slot). Dask reschedules the tasks of a worker that dies, so a killed
    worker costs a retry, not a lost batch (its ``allowed_failures`` bounds the retries).
    :meth:`distributed.Client.get_executor` is the executor.
``slurm``
    submitit (optional extra ``slurm``): each submitted call becomes a SLURM job;
    :class:`SubmititExecutor` only adapts submitit's job objects to standard futures.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.errors import HarnessInputError

EXECUTORS = ("local", "dask", "slurm")


def default_workers() -> int:
    """Worker slots when none are requested: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


@contextmanager
def local_executor(workers: int | None = None) -> Iterator[cf.Executor]:
    """A process pool of ``workers`` spawned processes (default :func:`default_workers`)."""
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers or default_workers(),
                                mp_context=context) as pool:
        yield pool


@contextmanager
def dask_executor(scheduler: str | None = None, workers: int | None = None
                  ) -> Iterator[cf.Executor]:
    """An executor on a Dask cluster: the one at ``scheduler`` or a new LocalCluster.

    Args:
        scheduler: address of a running scheduler (``tcp://HOST:PORT``); None starts a
            :class:`distributed.LocalCluster` with ``workers`` single-threaded processes.
        workers: LocalCluster size (default :func:`default_workers`); ignored with
            ``scheduler`` (the cluster's size is its own).

    Raises:
        HarnessInputError: the scheduler cannot be reached.
    """
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if scheduler is None:
            cluster = LocalCluster(n_workers=workers or default_workers(), threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout="20s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise HarnessInputError(
                    f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from None
        try:
            # pure=False: a batch is a side-effect-free call, but resubmitting it after a
            # failure must run it again, not hand back the cached failure.
            yield client.get_executor(pure=False)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


class SubmititExecutor(cf.Executor):
    """A standard executor over a submitit executor (SLURM, or submitit's local/debug modes).

    submitit returns job objects with a blocking ``result()``; a small thread pool waits on
    them and resolves standard futures, so the sweep code sees the same interface as for the
    other backends. Queueing and retries are SLURM's.

    Args:
        executor: a configured :class:`submitit.AutoExecutor` (or any object whose
            ``submit(fn, *args)`` returns something with ``result()``).
        max_waiting: how many jobs may be outstanding at once (threads waiting on them).
    """

    def __init__(self, executor, max_waiting: int = 64):
        self._executor = executor
        self._waiters = cf.ThreadPoolExecutor(max_workers=max_waiting,
                                              thread_name_prefix="submitit-wait")

    def submit(self, fn, /, *args, **kwargs) -> cf.Future:
        """Submit ``fn(*args, **kwargs)`` as a job; the future resolves with its result."""
        job = self._executor.submit(fn, *args, **kwargs)
        return self._waiters.submit(job.result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop waiting threads (jobs already queued on the cluster are not cancelled)."""
        self._waiters.shutdown(wait=wait, cancel_futures=cancel_futures)


@contextmanager
def slurm_executor(folder: str | Path, parameters: dict | None = None, cluster: str | None = None,
                   max_waiting: int = 64) -> Iterator[cf.Executor]:
    """An executor whose calls run as SLURM jobs through submitit.

    Args:
        folder: where submitit keeps job scripts and logs (must be on a shared file system).
        parameters: ``executor.update_parameters(**parameters)`` (``timeout_min``,
            ``slurm_partition``, ``gpus_per_node``, ...).
        cluster: submitit's cluster choice (None: SLURM if available, else local processes;
            ``"debug"`` runs in this process).
        max_waiting: jobs outstanding at once.

    Raises:
        HarnessInputError: submitit is not installed.
    """
    try:
        import submitit
    except ImportError:
        raise HarnessInputError("the slurm executor needs submitit: "
                                "pip install 'implicit-bias-harness[slurm]'") from None
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    if parameters:
        executor.update_parameters(**parameters)
    adapter = SubmititExecutor(executor, max_waiting=max_waiting)
    try:
        yield adapter
    finally:
        adapter.shutdown(wait=False, cancel_futures=True)


@contextmanager
def open_executor(kind: str = "local", *, workers: int | None = None,
                  scheduler: str | None = None, slurm_folder: str | Path | None = None,
                  slurm_parameters: dict | None = None) -> Iterator[cf.Executor]:
    """The executor named ``kind`` (one of :data:`EXECUTORS`), closed on exit.

    Raises:
        HarnessInputError: unknown kind, ``scheduler`` given for a non-Dask executor, or the
            slurm executor without a job folder.
    """
    if kind not in EXECUTORS:
        raise HarnessInputError(f"unknown executor {kind!r}; choose one of "
                                f"{', '.join(EXECUTORS)}")
    if scheduler is not None and kind != "dask":
        raise HarnessInputError(f"--scheduler is for the dask executor, not {kind!r}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise HarnessInputError(f"workers must be an integer >= 1, got {workers!r}")
    if kind == "local":
        with local_executor(workers) as executor:
            yield executor
    elif kind == "dask":
        with dask_executor(scheduler, workers) as executor:
            yield executor
    else:
        if slurm_folder is None:
            raise HarnessInputError("the slurm executor needs a folder for job files")
        with slurm_executor(slurm_folder, slurm_parameters) as executor:
            yield executor
