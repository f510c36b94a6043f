"""Aims: what a benchmark promises, measured round by round, printed with its spread.

    from aims import Aim, report
    report([Aim("supervisor over HTTP / no-op ceiling", per_round_ratios, at_least=0.5)])

An aim is one number per round (a ratio to a peer measured in the same run, or
a count such as Redis commands per job) and the bound it should meet. A bench
prints its aims as a table (median, min–max over the rounds, the bound, met or
not) and, when ZERONODE_BENCH_AIMS names a file, appends them to it as JSON
lines; `make bench` sets that variable for every bench and ends with
`python bench/aims.py FILE`, which prints every aim of the run in one table.

The verdict is the median's: one slow round on a shared machine is spread,
not failure. Nothing asserts on it (the tests run the benches at toy sizes,
where the numbers mean nothing): it is for the people reading.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

AIMS_FILE = "ZERONODE_BENCH_AIMS"


@dataclass(frozen=True)
class Aim:
    name: str
    rounds: list[float]  # the measured value in each round
    at_least: float | None = None
    at_most: float | None = None
    unit: str = "×"  # "×" for ratios; otherwise what the value counts ("/s", "commands/job", "µs")
    bench: str = ""  # which bench measured it: filled in by report()

    def __post_init__(self) -> None:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError(f"aim {self.name!r}: give exactly one of at_least and at_most")
        if not self.rounds:
            raise ValueError(f"aim {self.name!r}: no rounds measured")

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def met(self) -> bool:
        return self.median >= self.at_least if self.at_least is not None else self.median <= self.at_most

    def bound(self) -> str:
        return f"≥ {_number(self.at_least, self.unit)}" if self.at_least is not None else f"≤ {_number(self.at_most, self.unit)}"

    def spread(self) -> str:
        return f"{_number(min(self.rounds), self.unit)}–{_number(max(self.rounds), self.unit)}"


def _number(value: float, unit: str) -> str:
    if unit == "×":
        return f"{value:.2f}×"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return f"{text} {unit}" if unit else text


def table(aims: list[Aim], title: str) -> Table:
    grid = Table(title=title)
    for column, justify in (("aim", "left"), ("median", "right"), ("spread (min–max)", "right"),
                            ("rounds", "right"), ("bound", "right"), ("", "left")):
        grid.add_column(column, justify=justify)  # type: ignore[arg-type]
    for aim in aims:
        name = f"{aim.bench}: {aim.name}" if aim.bench and title.startswith("every") else aim.name
        grid.add_row(name, _number(aim.median, aim.unit), aim.spread(), str(len(aim.rounds)), aim.bound(),
                     "[green]met[/]" if aim.met else "[red]not met[/]")
    return grid


def report(aims: list[Aim], console: Console | None = None) -> None:
    """Print `aims` and append them to the run's aims file (ZERONODE_BENCH_AIMS), if there is one."""
    bench = Path(sys.argv[0]).stem
    aims = [Aim(**{**asdict(aim), "bench": aim.bench or bench}) for aim in aims]
    (console or Console()).print(table(aims, f"aims of {bench}"))
    path = os.environ.get(AIMS_FILE)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            for aim in aims:
                out.write(json.dumps(asdict(aim)) + "\n")


def main() -> None:
    """Print every aim a `make bench` run wrote to the file named on the command line."""
    lines = Path(sys.argv[1]).read_text(encoding="utf-8").splitlines()
    aims = [Aim(**json.loads(line)) for line in lines if line.strip()]
    met = sum(aim.met for aim in aims)
    Console().print(table(aims, f"every aim of this run: {met} of {len(aims)} met, {os.cpu_count()} cores"))


if __name__ == "__main__":
    main()
