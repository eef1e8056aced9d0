"""`blazedit edit`'s progress bar on stderr: output chars against the input's, tok/s,
acceptance. Drawn only on a terminal; no torch here (it also shows a daemon's progress)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from engine.client.attempts import tokens_per_second
from engine.client.protocol import Stats


def describe(stats: Stats) -> str:
    """One line of decoding statistics, for the bar."""
    rate = tokens_per_second(stats)
    accepted = f" · {stats.accepted / stats.drafted:.0%} of {stats.drafted} drafted accepted" if stats.drafted else ""
    return f"{stats.tokens} tokens · {rate:.1f} tok/s · {stats.target_forward_passes} target passes{accepted}"


class EditProgress:
    def __init__(self, input_chars: int, enabled: bool = True):
        console = Console(stderr=True)
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(), console=console, transient=True, disable=not (enabled and console.is_terminal),
        )
        self._task = self._bar.add_task("starting", total=max(input_chars, 1), detail="")

    def __enter__(self) -> "EditProgress":
        self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bar.__exit__(*exc)

    def status(self, description: str) -> None:
        self._bar.update(self._task, description=description)

    def update(self, chars: int, stats: Stats, attempt: int = 1) -> None:
        """``chars``: the file text streamed so far (by this attempt)."""
        total = self._bar.tasks[0].total
        description = "generating" if attempt == 1 else "unchanged: asking again"
        # An estimate: the output is about as long as the input; never show 100% before the end.
        self._bar.update(self._task, description=description, completed=min(chars, total * 0.99),
                         detail=describe(stats))
