"""Kafka client work in a child process, so a crash inside librdkafka fails a check instead of killing the run.

`stream(fn, *args, timeout=..., what=...)` runs the generator function `fn(*args)` in a child and yields, in the
parent, each item the child produces as soon as it arrives. A child killed by a signal, one that stops producing for
`timeout` seconds, or one whose `fn` raises becomes `IsolatedError` with a one-line reason ("librdkafka crashed
(SIGSEGV) in the Kafka checks"); the items already yielded stay with the caller, who can start a fresh child for the
rest. One child serves a whole batch of calls: `drtopo.checks.kafka` runs every Kafka check of a validate run in one.

Why the "spawn" start method, not fork: a forked child inherits the parent's threads' locks and open sockets in
whatever state they are; librdkafka runs background threads per client and the parent may already hold clients (the
drill, the tests) or a PostgreSQL connection whose finalizer would write to the shared socket from the child. A
spawned child is a fresh interpreter that shares nothing but what is pickled to it, so `fn` must be a module-level
function and its arguments and items picklable (exceptions from the Kafka client are not: they cross as text).
The price is a new interpreter importing `fn`'s module (and the parent's `__main__` module), once per validate run:
on the lab machine (2 cores, median of 5) a bare child costs 0.36 s; the Kafka checks take 0.71 s isolated against
0.37 s in-process, and `validate --skip service --skip database` 0.92 s in all.

The crash it guards against: `AdminClient.list_consumer_group_offsets` SIGSEGVs in `rd_kafka_cgrp_op` when the
coordinator answers NOT_COORDINATOR (librdkafka #5040, confluent-kafka-python #1982). `drtopo.kafka.admin` no
longer takes that path; the isolation is for the crashes nobody has found yet. Tested with confluent-kafka 2.16.1
(librdkafka 2.16.0), the newest release on PyPI when written.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any, TypeVar

T = TypeVar("T")

ITEM, DONE, RAISED = "item", "done", "raised"
# Signals that mean the native code crashed rather than something outside killing the child.
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS, signal.SIGILL, signal.SIGFPE})
REAP_TIMEOUT = 5.0


class IsolatedError(RuntimeError):
    """The isolated work did not finish; `reason` says why in a few words, str() adds where ("... in <what>")."""

    def __init__(self, reason: str, what: str) -> None:
        super().__init__(f"{reason} in {what}")
        self.reason = reason
        self.what = what


def death_reason(exitcode: int | None) -> str:
    """Why a child that closed its pipe without saying it was done ended, from its exit code (pure)."""
    if exitcode is None:
        return "the child closed its pipe but did not exit"
    if exitcode < 0:
        number = -exitcode
        try:
            sig = signal.Signals(number)
        except ValueError:
            return f"the child was killed by signal {number}"
        return f"librdkafka crashed ({sig.name})" if sig in CRASH_SIGNALS else f"the child was killed by {sig.name}"
    return f"the child exited with code {exitcode} before finishing"


def _child(conn: Connection, fn: Callable[..., Iterator[Any]], args: tuple[Any, ...]) -> None:
    try:
        for item in fn(*args):
            conn.send((ITEM, item))
        conn.send((DONE, None))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        conn.send((RAISED, f"{type(exc).__name__}: {first}" if first else type(exc).__name__))
    finally:
        conn.close()


def stream(fn: Callable[..., Iterator[T]], *args: Any, timeout: float, what: str) -> Iterator[T]:
    """Yield the items of `fn(*args)`, run in a spawned child; each must arrive within `timeout` s of the previous.

    Raises IsolatedError when the child dies (a signal, an exit), stalls past `timeout` (it is killed) or raises.
    The child is always reaped, also when the caller stops iterating early.
    """
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, fn, args), name=f"isolated: {what}", daemon=True)
    child.start()
    sender.close()
    try:
        while True:
            if not receiver.poll(timeout):
                raise IsolatedError(f"no answer within {timeout:.0f} s (the child was killed)", what)
            try:
                kind, payload = receiver.recv()
            except EOFError:
                child.join(REAP_TIMEOUT)
                raise IsolatedError(death_reason(child.exitcode), what) from None
            if kind == DONE:
                return
            if kind == RAISED:
                raise IsolatedError(f"raised {payload}", what)
            yield payload
    finally:
        receiver.close()
        if child.is_alive():
            child.kill()
        child.join(REAP_TIMEOUT)
