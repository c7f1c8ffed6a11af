"""Progress on stderr: a bar per generation with the denoising step, the rate and the time left.

Model loading gets its own row (a spinner with the time spent) until the first step
arrives. With --quiet nothing is drawn. When stderr is not a terminal (CI logs), rich
draws the final state once, at the end.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.text import Text

from pico.cli.app import err_console
from pico.cli.output import result_line

if TYPE_CHECKING:
    from rich.progress import Task

StepCallback = Callable[[int, int], None]


def _columns() -> list[Any]:
    from rich.progress import (
        BarColumn,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class Counted(ProgressColumn):
        """Shows the wrapped column for bars that count a unit (not for spinner rows)."""

        def __init__(self, inner: ProgressColumn, unit: str | None = None):
            super().__init__()
            self.inner = inner
            self.unit = unit

        def render(self, task: Task) -> Any:
            unit = task.fields.get("unit")
            return self.inner.render(task) if unit and self.unit in (None, unit) else Text("")

    class Count(ProgressColumn):
        """``12/50 steps``, ``3/10 jobs`` (the unit is left out for steps, the rate says it)."""

        def render(self, task: Task) -> Text:
            total = int(task.total) if task.total is not None else "?"
            unit = "" if task.fields["unit"] == "steps" else f" {task.fields['unit']}"
            return Text(f"{int(task.completed)}/{total}{unit}", style="progress.download")

    class Rate(ProgressColumn):
        """Denoising steps per second."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            if speed is None:
                return Text("? steps/s", style="progress.data.speed")
            shown = f"{speed:.2f}" if speed < 10 else f"{speed:.0f}"
            return Text(f"{shown} steps/s", style="progress.data.speed")

    return [
        SpinnerColumn(finished_text="[green]✓[/]"),
        TextColumn("{task.description}"),
        Counted(BarColumn(bar_width=24)),
        Counted(Count()),
        Counted(Rate(), unit="steps"),
        Counted(TimeRemainingColumn(compact=True)),
        TimeElapsedColumn(),
    ]


class ProgressView:
    """The progress display of one command; ``keep`` leaves finished bars on screen."""

    def __init__(self, enabled: bool = True, keep: bool = True):
        from rich.progress import Progress

        self.keep = keep
        # No redirection of stdout into the display: results must stay on stdout for scripts.
        self.progress = Progress(*_columns(), console=err_console, disable=not enabled,
                                 redirect_stdout=False, redirect_stderr=False)

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def result(self, line: str | Text) -> None:
        """A result line for stdout; drawn above the bars instead while they show on the same terminal."""
        if self.progress.live.is_started and err_console.is_terminal and sys.stdout.isatty():
            self.progress.console.print(line, soft_wrap=True, highlight=False, markup=False)
        else:
            result_line(line)

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner row while something without steps runs (starting PyTorch)."""
        task = self.progress.add_task(escape(text), total=None)
        try:
            yield
        finally:
            self.progress.remove_task(task)

    def counter(self, text: str, total: int) -> Counter:
        """A bar counting units of work (the jobs of a batch)."""
        return Counter(self, self.progress.add_task(escape(text), total=total, unit="jobs"))

    @contextmanager
    def generation(self, label: str, loading: str | None) -> Iterator[StepCallback]:
        """A step bar for one generation call, after a ``loading`` row when a model has to load first."""
        progress = self.progress
        load_task = progress.add_task(f"[dim]{escape(loading)}[/]", total=1) if loading else None
        step_task = None

        def on_step(done: int, total: int) -> None:
            nonlocal load_task, step_task
            if load_task is not None:
                self._finish_loading(load_task, loading or "")
                load_task = None
            if step_task is None:
                step_task = progress.add_task(escape(label), total=total, unit="steps")
            progress.update(step_task, completed=done, total=total)

        try:
            yield on_step
        finally:
            for task in (load_task, step_task):
                if task is not None and not self.keep:
                    progress.remove_task(task)
            if load_task is not None and self.keep:
                progress.remove_task(load_task)  # failed before the first step: the error says why

    def _finish_loading(self, task: Any, loading: str) -> None:
        if self.keep:
            done = loading.replace("loading", "loaded", 1)
            self.progress.update(task, completed=1, description=f"[dim]{escape(done)}[/]")
        else:
            self.progress.remove_task(task)


class Counter:
    """A counting bar: advance it as units finish."""

    def __init__(self, view: ProgressView, task: Any):
        self.view = view
        self.task = task

    def show(self, description: str) -> None:
        """Say what is being worked on now."""
        self.view.progress.update(self.task, description=escape(description))

    def advance(self) -> None:
        """One more unit done."""
        self.view.progress.update(self.task, advance=1)
