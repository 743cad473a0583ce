"""Masks the secret values a task was given wherever its text leaves the worker: logs and messages.

Every value of at least :data:`MIN_LENGTH` characters is replaced by :data:`MASK`. Shorter ones
are left alone: masking ``"a"`` or ``"on"`` everywhere would wreck a log and protect nothing.

Output comes in pieces cut anywhere, so a value may arrive split across two of them. A
:class:`StreamMasker` (one per stream) holds back the end of a piece when it could be the start
of a value, and decides once the next piece comes, or at the end. It holds back nothing that
cannot begin a value, so a task's lines still arrive at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "*****"
MIN_LENGTH = 4


class Masker:
    """The values to mask. Build it with :meth:`of`, which says None when there is nothing to mask."""

    def __init__(self, values: Iterable[str]) -> None:
        self.values = sorted({value for value in values if len(value) >= MIN_LENGTH}, key=len, reverse=True)
        # Longest first: where two values start at the same place, the longer one is masked whole.
        self.pattern = re.compile("|".join(re.escape(value) for value in self.values))
        self.longest = len(self.values[0]) if self.values else 0
        self.firsts = frozenset(value[0] for value in self.values)

    @classmethod
    def of(cls, values: Iterable[str]) -> Masker | None:
        masker = cls(values)
        return masker if masker.values else None

    def mask(self, text: str) -> str:
        """``text`` with every value in it replaced by :data:`MASK`."""
        return self.pattern.sub(MASK, text)

    def stream(self) -> StreamMasker:
        return StreamMasker(self)

    def hold_from(self, text: str, start: int) -> int:
        """Where the tail of ``text`` that could be a value cut short starts (at ``start`` or after).

        ``len(text)`` when there is none."""
        end = len(text)
        for index in range(max(start, end - self.longest + 1), end):
            if text[index] in self.firsts:
                rest = text[index:]
                if any(len(value) > len(rest) and value.startswith(rest) for value in self.values):
                    return index
        return end


class StreamMasker:
    """Masks one stream's pieces in order: ``feed`` each, then ``finish`` for what it held back."""

    def __init__(self, masker: Masker) -> None:
        self.masker = masker
        self.held = ""

    def feed(self, piece: str) -> str:
        """The masked text that can go out now; the possible start of a value waits for the next piece."""
        text = self.held + piece
        end = self.masker.hold_from(text, 0)
        out, done = [], 0
        for match in self.masker.pattern.finditer(text):
            if match.start() >= end:
                break
            out += [text[done : match.start()], MASK]
            done = match.end()
            if done > end:  # the value ran into the held-back tail: hold back only what follows it
                end = self.masker.hold_from(text, done)
        out.append(text[done:end])
        self.held = text[end:]
        return "".join(out)

    def finish(self) -> str:
        """What was held back, masked: the stream has ended."""
        text, self.held = self.held, ""
        return self.masker.mask(text)
