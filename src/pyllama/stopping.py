"""Stop strings: text is held back while it could still be the start of a stop string."""
from __future__ import annotations

from typing import Sequence, Tuple, Union


class StopStrings:
    """Filters streamed text so that no stop string (nor anything after it) is ever returned."""

    def __init__(self, stop: Union[str, Sequence[str]]) -> None:
        stops = (stop,) if isinstance(stop, str) else tuple(stop)
        for s in stops:
            if not isinstance(s, str) or not s:
                raise ValueError(f"stop must be a string or a sequence of non-empty strings, got {s!r}")
        self._stops = stops
        self._held = ""

    def push(self, text: str) -> Tuple[str, bool]:
        """Returns (text safe to emit, stopped). Once stopped, the text up to the stop is returned."""
        self._held += text
        if not self._stops:
            out, self._held = self._held, ""
            return out, False
        first = min((i for i in (self._held.find(s) for s in self._stops) if i >= 0), default=-1)
        if first >= 0:
            out, self._held = self._held[:first], ""
            return out, True
        keep = self._longest_partial_stop()
        out = self._held[: len(self._held) - keep]
        self._held = self._held[len(self._held) - keep:]
        return out, False

    def flush(self) -> str:
        """Text held back when the generation ends for another reason."""
        out, self._held = self._held, ""
        return out

    def _longest_partial_stop(self) -> int:
        """Length of the longest suffix of the held text that begins some stop string."""
        best = 0
        for s in self._stops:
            for n in range(min(len(s) - 1, len(self._held)), best, -1):
                if self._held.endswith(s[:n]):
                    best = n
                    break
        return best
