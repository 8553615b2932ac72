"""The extraction worker pool: forkserver children that run tasks, report progress, and die with the run.

Workers are forked by multiprocessing's forkserver, a clean process without CUDA or threads that imports
torch once. Their parent is therefore the forkserver, not the main process, and the forkserver stays up
as long as any worker holds its "alive" pipe, so neither ``prctl(PR_SET_PDEATHSIG)`` nor the parent pid
tells a worker that the run it works for was killed. Each worker instead watches the main process itself
through multiprocessing's parent sentinel (a pipe only the main process holds the other end of: it
becomes readable when that process exits, ``kill -9`` included, and cannot be fooled by a reused pid): a
daemon thread stops the worker at once, and :func:`check_main` lets a task check again right before it
publishes a result. Once the workers are gone, the forkserver and the resource tracker exit by themselves.

A worker is stopped (by that thread, or by the main process on Ctrl-C or an error) with SIGTERM, which
raises :class:`Stop` in the task it is running: the task's ``finally`` blocks remove its temporary files,
then the worker exits.
"""

import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import torch

from lsvit.pipeline.errors import LsvitError

Tick = Callable[[bool], None]
_progress: "mp.Queue | None" = None
_busy = False  # a worker is running a task


class PoolError(LsvitError):
    """A worker process died."""


class Stop(BaseException):
    """Raised inside a worker's task when the run is over: unwind (removing temporary files) and exit."""


def main_alive() -> bool:
    """False in a worker whose main process has exited; always True in the main process itself."""
    parent = mp.parent_process()
    return parent is None or parent.is_alive()


def check_main() -> None:
    """Raises :class:`Stop` in a worker whose main process has exited (call it before publishing)."""
    if not main_alive():
        raise Stop


def _on_sigterm(signum: int, frame: object) -> None:
    if _busy:
        raise Stop
    os._exit(1)


def _exit_with_main() -> None:
    parent = mp.parent_process()
    if parent is not None:
        parent.join()  # returns when the main process is gone
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        os._exit(1)  # the task did not unwind in time (stuck in a long native call)


def _init_worker(progress: "mp.Queue") -> None:
    global _progress
    _progress = progress
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the workers
    signal.signal(signal.SIGTERM, _on_sigterm)
    torch.set_num_threads(1)  # parallelism comes from the processes
    threading.Thread(target=_exit_with_main, name="exit-with-main", daemon=True).start()


def _tick(ok: bool) -> None:
    _progress.put(ok)


def _call(fn: Callable[[Any, Tick], Any], task: Any) -> Any:
    global _busy
    _busy = True
    try:
        return fn(task, _tick)
    except Stop:
        os._exit(1)  # the task has unwound: its temporary files are gone
    finally:
        _busy = False


def run_tasks(
    fn: Callable[[Any, Tick], Any], tasks: Sequence[Any], workers: int, tick: Tick, preload: str
) -> list:
    """Runs ``fn(task, tick)`` for every task, in ``workers`` processes (0: in this process).

    Args:
        fn: A module-level function; it calls ``tick(ok)`` once per item of work done.
        tasks: Picklable tasks.
        workers: Worker processes; 0 runs the tasks here, one after the other.
        tick: Called in this process for every tick of every task.
        preload: Module the forkserver imports once (the one defining ``fn``).

    Returns:
        The results, in the order the tasks finished.

    Raises:
        PoolError: A worker died (killed, or out of memory).
    """
    if workers == 0:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in the workers: the bytes must not depend on where a task ran
        try:
            return [fn(t, tick) for t in tasks]
        finally:
            torch.set_num_threads(threads)
    results: list = []
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload([preload])
    progress = ctx.Queue()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(progress,))
    try:
        pending = {pool.submit(_call, fn, t) for t in tasks}
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            _drain(progress, tick)
            results.extend(f.result() for f in done)
    except BaseException as e:
        # Ctrl-C or a worker error: stop at once; unfinished work stays .tmp and is redone on rerun.
        pool.shutdown(wait=False, cancel_futures=True)
        for child in mp.active_children():
            child.terminate()
        if isinstance(e, BrokenProcessPool):
            raise PoolError(
                "a worker process died (killed, or out of memory?); finished shards are kept: rerun to resume"
            ) from e
        raise
    pool.shutdown()
    _drain(progress, tick)  # ticks still in the pipe when the last task finished
    return results


def _drain(progress: "mp.Queue", tick: Tick) -> None:
    while True:
        try:
            ok = progress.get_nowait()
        except queue.Empty:
            return
        tick(ok)
