"""Query parameters with documented ranges: a value outside one (NaN and infinities too) is a 422 naming it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_SEQ = 2**62  # log sequence numbers are 64-bit integers in the store
MAX_READ = 256 << 20  # the most a log read or tail answers at once (a log keeps 100 MB by default)

Seconds = Annotated[float, Query(ge=0, le=3600, description="seconds to wait, 0 to 3600 (held at most 60)")]
Seq = Annotated[int, Query(ge=0, le=MAX_SEQ, description="a log sequence number, 0 or more")]
MaxBytes = Annotated[int, Query(ge=1, le=MAX_READ, description="bytes, 1 to 256 MiB")]
Limit = Annotated[int, Query(ge=1, le=500, description="how many, 1 to 500")]
