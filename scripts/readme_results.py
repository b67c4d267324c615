"""Copy the result tables and figure of bench/report.md into README.md (between the results markers).

Run by `make bench` after the benchmark, so the README's numbers are always those of the last full run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def results_block(report: str, figure: str) -> str:
    """The report from its first results section up to the protocol, headings one level down."""
    lines = report.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("## "))
    stop = next((i for i, ln in enumerate(lines) if ln.startswith("## Protocol")), len(lines))
    header = [ln for ln in lines[:first] if ln.startswith(("Command:", "Machine:"))]
    body = [("#" + ln if ln.startswith("## ") else ln) for ln in lines[first:stop]]
    text = "\n".join(header + ["", f"![noisy / best classical / ours]({figure})", ""] + body).strip()
    return re.sub(r"\n{3,}", "\n\n", text)


def main(report_path: str = "bench/report.md", readme_path: str = "README.md") -> None:
    report = Path(report_path).read_text()
    readme = Path(readme_path).read_text()
    if START not in readme or END not in readme:
        sys.exit(f"{readme_path}: add the markers {START} and {END} where the results go")
    figure = str(Path(report_path).parent / "figure.png")
    before, rest = readme.split(START, 1)
    _, after = rest.split(END, 1)
    Path(readme_path).write_text(before + START + "\n" + results_block(report, figure) + "\n" + END + after)
    print(f"{readme_path}: results from {report_path}", file=sys.stderr)


if __name__ == "__main__":
    main(*sys.argv[1:])
