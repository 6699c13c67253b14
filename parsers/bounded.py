"""Run untrusted parsing in a forked child with an address-space cap and a deadline, and get plain bytes back.

A school's attachment is a stranger's file: pdfminer is pure Python and can be made to spin or balloon, and even
lxml on a .docx that is within the zip caps can be asked to build a tree of tens of millions of nodes. So reading
happens in a child process: ``RLIMIT_AS`` caps how much it may *grow* (the forked child starts as big as the
parent, which is none of the file's doing) and the parent watches the memory it makes its own (it could fill the
parent's freed memory without growing), ``RLIMIT_CPU`` and a wall-clock deadline cap its time, and whatever it
sends back is capped too. The child writes one JSON line per finished piece of work, so when it is stopped the
parent still has everything finished before (``run_bounded_lines``). Fork, not spawn: the child already has the
readers imported, so a child costs a millisecond or two. Nothing is pickled: the child hands back plain JSON.
"""
from __future__ import annotations

import gc
import json
import math
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

try:  # not on every platform; without it only the deadline bounds the child
    import resource
except ImportError:  # pragma: no cover
    resource = None  # type: ignore[assignment]

__all__ = ["Budget", "Stop", "run_bounded", "run_bounded_lines", "MAX_RESULT_BYTES"]

# The child's last line when all its work is done: with it, the parent need not wait to learn how the child ended.
_DONE = b'{"done": true}\n'

# Upper bound on what a child may send back: a form reads back as tens of kilobytes; anything near this is not a
# form, and decoding and recognising it would be unbounded work in the worker itself.
MAX_RESULT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Budget:
    """What one child may use: growth of its address space, and seconds (wall clock, and CPU)."""

    memory_bytes: int
    seconds: float


class Stop(StrEnum):
    """Why a child's output ended early."""

    SLOW = "slow"          # the deadline passed
    MEMORY = "memory"      # it sent back more than MAX_RESULT_BYTES, or died without finishing (the caps kill)


def run_bounded(work: Callable[[], bytes], budget: Budget) -> bytes:
    """Run ``work`` in a child under ``budget``; its bytes, or ``{"error": "slow"|"memory"}`` as JSON when it
    was stopped, or b"" when it died without a word (killed by a cap, or a crash in a C library)."""
    lines, stop = run_bounded_lines(lambda: iter([work()]), budget)
    if stop is not None:
        return json.dumps({"error": stop.value, "reason": ""}).encode()
    return b"\n".join(lines)


def run_bounded_lines(work: Callable[[], Iterator[bytes]], budget: Budget) -> tuple[list[bytes], Stop | None]:
    """Run ``work`` in a child; each item it yields is one result (no newline inside: JSON). Returns the results
    that arrived, and why the child stopped early (None when it finished). A child that died without finishing
    counts as ``Stop.MEMORY``: the caps kill with a signal, and a failed allocation is the usual cause."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        status = 0
        try:
            os.close(read_fd)
            _limit_child(budget)
            try:
                for item in work():
                    _write_all(write_fd, item.replace(b"\n", b" ") + b"\n")
                _write_all(write_fd, _DONE)
            except MemoryError:
                _write_all(write_fd, b'{"stop": "memory"}\n')
            os.close(write_fd)
        except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
            status = 1
        finally:
            os._exit(status)
    os.close(write_fd)
    try:
        raw, stop, status = _collect_child(pid, read_fd, budget)
    finally:
        os.close(read_fd)
    results = [line for line in raw.split(b"\n")[:-1] if line]   # a last line without its newline is cut off
    if results and results[-1] == _DONE.strip():
        return results[:-1], None
    if results and results[-1] == b'{"stop": "memory"}':
        return results[:-1], Stop.MEMORY
    if stop is None and status != 0:
        # Killed by a cap: SIGXCPU is the CPU limit, anything else (SIGKILL, SIGSEGV in a C library under the
        # address-space cap) is taken as memory.
        slow = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU
        stop = Stop.SLOW if slow else Stop.MEMORY
    return results, stop


def _limit_child(budget: Budget) -> None:
    # No garbage collection in a short-lived child: a collection walks (and so copies, page by page) the whole heap
    # it shares with the parent, which costs more than the reading itself. The memory cap still bounds it.
    gc.disable()
    # The parent's own servers may have installed handlers; the child should just die when told to.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    if resource is None:
        return
    current = _address_space_bytes()
    cap = current + budget.memory_bytes
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        cpu = math.ceil(budget.seconds) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    except (ValueError, OSError):
        pass  # an already lower hard limit stays in force, which is just as safe


def _address_space_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# How often the parent looks at the child's own memory while it waits for its output.
_WATCH_SECONDS = 0.05


def _private_bytes(pid: int) -> int | None:
    """Memory the child has of its own (``Private_Clean`` + ``Private_Dirty`` of ``/proc/<pid>/smaps_rollup``): pages
    it wrote to, copied from the parent or new. None where the kernel does not say."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            text = rollup.read()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith((b"Private_Clean:", b"Private_Dirty:")):
            total += int(line.split()[1]) * 1024
    return total


def _collect_child(pid: int, fd: int, budget: Budget) -> tuple[bytes, Stop | None, int]:
    """The child's output, why it was stopped (if it was) and its wait status. Besides the deadline and the size
    of the output, the parent watches the child's own memory: ``RLIMIT_AS`` bounds only how much the child's
    address space grows, and a child forked from a long-running parent can fill the parent's freed memory (the
    interpreter's and the C heap's) without growing it at all."""
    deadline = time.monotonic() + budget.seconds
    next_watch = time.monotonic() + _WATCH_SECONDS
    chunks: list[bytes] = []
    size = 0
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    stop: Stop | None = None
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stop = Stop.SLOW
                break
            ready = poller.poll(max(1, int(min(remaining, _WATCH_SECONDS) * 1000)))
            if time.monotonic() >= next_watch:
                next_watch = time.monotonic() + _WATCH_SECONDS
                used = _private_bytes(pid)
                if used is not None and used > budget.memory_bytes:
                    stop = Stop.MEMORY
                    break
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_RESULT_BYTES:
                stop = Stop.MEMORY
                break
            chunks.append(chunk)
    finally:
        output = b"".join(chunks)
        if stop is None and output.endswith(_DONE):
            _reap_later(pid)     # it finished its work and is exiting: no need to wait for that
            status = 0
        else:
            status = _reap(pid, wait=stop is None)
    return output, stop, status


_EXITING: list[int] = []


def _reap_later(pid: int) -> None:
    """Collect children that finished earlier (without blocking), and remember this one for next time."""
    for old in list(_EXITING):
        try:
            if os.waitpid(old, os.WNOHANG)[0]:
                _EXITING.remove(old)
        except ChildProcessError:
            _EXITING.remove(old)
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == 0:
            _EXITING.append(pid)
    except ChildProcessError:
        pass


def _reap(pid: int, *, wait: bool) -> int:
    """Make sure the child is gone and waited for, whatever happened; its wait status."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            # Its output ended without its last line: give it a moment to exit on its own (unless it was
            # stopped), then kill it.
            for _ in range(50 if wait else 0):
                time.sleep(0.002)
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    return status
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        return status
    except ChildProcessError:
        return 0
