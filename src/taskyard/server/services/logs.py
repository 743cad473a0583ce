"""Task logs: append-only chunks numbered by the agent, stored in order, read from any offset.

A chunk is stored once: a resent chunk (same ``seq``) is acknowledged and ignored, and a chunk
after a gap is not stored until the gap is filled, so the agent resends from the last ack.
"""

from __future__ import annotations

import time

from sqlalchemy import Row, bindparam, insert, select
from sqlalchemy.orm import Session

from taskyard import settings
from taskyard.models import LogChunk, LogPage
from taskyard.server.db.models import LogChunkRow, TaskRow
from taskyard.server.metrics import events as metric_events
from taskyard.server.notifier import logs_key, task_key
from taskyard.server.services.lifecycle import flush_pending, insert_at_flush, notify_on_commit
from taskyard.status import TaskStatus

TRUNCATED = "\n[taskyard] log truncated: it passed the cap of {mb} MB (TASKYARD_LOG_CAP_MB); later output is dropped\n"


def append(session: Session, task: TaskRow, chunks: list[LogChunk]) -> int:
    """Store the chunks that come next after ``task.log_seq``; return the highest seq stored."""
    cap = settings.log_cap_bytes()
    for chunk in sorted(chunks, key=lambda c: c.seq):
        if chunk.seq != task.log_seq + 1:
            continue  # a resend (already stored) or after a gap (resent later)
        _store(session, task, chunk, cap)
        task.log_seq = chunk.seq
    notify_on_commit(session, task_key(task.id), logs_key(task.id))
    return task.log_seq


def _store(session: Session, task: TaskRow, chunk: LogChunk, cap: int) -> None:
    data = chunk.text.encode("utf-8", "replace")
    room = cap - task.log_bytes
    if room <= 0:
        return
    if len(data) >= room:
        marker = TRUNCATED.format(mb=f"{cap / (1024 * 1024):g}").encode()
        data = data[:room].decode("utf-8", "ignore").encode() + marker
        task.log_bytes = cap  # nothing more is stored after the marker
    else:
        task.log_bytes += len(data)
    row = {"task_id": task.id, "seq": chunk.seq, "stream": chunk.stream, "ts": chunk.ts, "data": data}
    insert_at_flush(session, _INSERT, row)
    metric_events.log_bytes(session, len(data))


_INSERT = insert(LogChunkRow)


def system_line(session: Session, task: TaskRow, text: str) -> None:
    """Add a line of the control plane's own to a task's log (a retry, say), after what is there."""
    chunk = LogChunk(seq=task.log_seq + 1, stream="system", ts=time.time(), text=text.rstrip("\n") + "\n")
    append(session, task, [chunk])


def read(session: Session, task_id: str, after: int, max_bytes: int = 1 << 20) -> tuple[list[LogChunk], bool]:
    """The chunks after ``after``, about ``max_bytes`` of them, and whether they are all that is stored."""
    flush_pending(session)  # the chunks stored in this transaction, if any
    chunks, total = [], 0
    with session.execute(_AFTER, {"id": task_id, "after": after}) as rows:  # closed early: a cursor on PostgreSQL
        for row in rows:
            chunks.append(_to_chunk(row))
            total += len(row.data)
            if total >= max_bytes:
                return chunks, False
    return chunks, True


# Read as rows, not ORM objects (a third of the cost), and built once: every follower of a log runs it at each wake.
_AFTER = (
    select(LogChunkRow.seq, LogChunkRow.stream, LogChunkRow.ts, LogChunkRow.data)
    .where(LogChunkRow.task_id == bindparam("id"), LogChunkRow.seq > bindparam("after"))
    .order_by(LogChunkRow.seq)
    .execution_options(yield_per=64)
)


def tail(session: Session, task_id: str, max_bytes: int) -> str:
    """The last ``max_bytes`` (about) of a task's output, as text."""
    flush_pending(session)
    query = (
        select(LogChunkRow.data)
        .where(LogChunkRow.task_id == task_id)
        .order_by(LogChunkRow.seq.desc())
        .execution_options(yield_per=64)
    )
    parts, total = [], 0
    with session.scalars(query) as rows:
        for data in rows:
            parts.append(data)
            total += len(data)
            if total >= max_bytes:
                break
    data = b"".join(reversed(parts))
    return data[-max_bytes:].decode("utf-8", "replace")


def _to_chunk(row: Row) -> LogChunk:
    return LogChunk(seq=row.seq, stream=row.stream, ts=row.ts, text=row.data.decode("utf-8", "replace"))


def page(session: Session, task: TaskRow, after: int, max_bytes: int = 1 << 20) -> LogPage:
    """The task's chunks after ``after``, and whether its log is done (the task ended, all of it read).

    Nothing is read past the task's last chunk: a follower woken by a change of status finds none."""
    chunks, complete = read(session, task.id, after, max_bytes) if after < task.log_seq else ([], True)
    last = chunks[-1].seq if chunks else after
    if complete:  # every stored chunk was read: the seqs past a log's cap have none, and are passed
        last = max(last, task.log_seq)
    status = TaskStatus(task.status)
    done = status.is_terminal() and last >= task.log_seq
    return LogPage(chunks=chunks, last_seq=last, status=status, worker_name=task.worker_name, done=done)
