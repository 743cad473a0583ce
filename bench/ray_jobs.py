"""A thin, bounded wrapper over Ray's ``JobSubmissionClient`` for the Ray side of the bench."""

from __future__ import annotations

import asyncio
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

POLL = 0.01
THREADS = 8


class Jobs:
    def __init__(self, address: str, timeout: float = 120.0) -> None:
        self.address = address
        self.client = _connect(address, timeout)

    def submit(self, script: str, folder: Path, client: JobSubmissionClient | None = None) -> str:
        return (client or self.client).submit_job(
            entrypoint=f"{sys.executable} {script}",
            runtime_env={"working_dir": str(folder)},
            entrypoint_num_cpus=1,
        )

    def submit_many(self, script: str, folder: Path, count: int) -> list[str]:
        clients = [JobSubmissionClient(self.address) for _ in range(THREADS)]
        with ThreadPoolExecutor(THREADS) as pool:
            return list(pool.map(lambda i: self.submit(script, folder, clients[i % THREADS]), range(count)))

    def status(self, job: str) -> str:
        return self.client.get_job_status(job).value

    def logs(self, job: str) -> str:
        return self.client.get_job_logs(job)

    def stop(self, job: str) -> None:
        self.client.stop_job(job)

    def expect(self, job: str, wanted: str, timeout: float, terminal: bool = True) -> None:
        """Poll until ``job`` is ``wanted``; fail if it ends otherwise or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.client.get_job_status(job)
            if status.value == wanted:
                return
            if status.is_terminal():
                raise RuntimeError(f"job {job} ended {status.value}, not {wanted}: {self.logs(job)[-500:]!r}")
            time.sleep(POLL)
        raise RuntimeError(f"job {job} was not {wanted} after {timeout:.0f} s (it is {self.status(job)})")

    def reaches(self, job: str, wanted: str, timeout: float) -> bool:
        """Poll until ``job`` is ``wanted`` (True) or ``timeout`` passes or it ends otherwise (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.client.get_job_status(job)
            if status.value == wanted:
                return True
            if status.is_terminal():
                return False
            time.sleep(POLL)
        return False

    def wait_all(self, jobs: list[str], timeout: float) -> dict[str, str]:
        """Poll the job list until every one of ``jobs`` has ended; their final statuses."""
        wanted, ended = set(jobs), {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for details in self.client.list_jobs():
                if details.submission_id in wanted and JobStatus(details.status).is_terminal():
                    ended[details.submission_id] = JobStatus(details.status).value
            if len(ended) == len(wanted):
                return ended
            time.sleep(0.05)
        raise RuntimeError(f"{len(wanted) - len(ended)} of {len(wanted)} jobs still running after {timeout:.0f} s")

    def wait_for_text(self, job: str, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.logs(job):
                return
            if self.client.get_job_status(job).is_terminal():
                break
            time.sleep(0.02)
        raise RuntimeError(f"job {job} did not print {text!r} (status {self.status(job)})")

    def follow_lines(self, job: str, timeout: float) -> list[float]:
        """Follow the job's log with ``tail_job_logs``; for each line that is a time, arrival − that time."""
        return asyncio.run(asyncio.wait_for(self._follow(job), timeout))

    async def _follow(self, job: str) -> list[float]:
        lags, carry = [], ""
        async for chunk in self.client.tail_job_logs(job):
            arrived = time.time()
            *lines, carry = (carry + chunk).split("\n")
            lags += [arrived - stamp for stamp in map(_float, lines) if stamp is not None]
        return lags


def _float(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _connect(address: str, timeout: float) -> JobSubmissionClient:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return JobSubmissionClient(address)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
