"""The benchmark's report (scripts/bench.sh): the machine, the table of every workload under every
configuration, and each other part's summary, as plain text for the terminal and as Markdown for
BUILD/bench/results.md."""

import re


def read_tsv(path):
    if not path.is_file() or not path.stat().st_size:
        return []
    return [line.split("\t") for line in path.read_text().splitlines()]


class Report:
    def __init__(self, bench):
        self.bench = bench

    def table(self, style):
        """The table part's summary, one row per workload and configuration."""
        bench = self.bench
        describe_workload = {name: w["description"] for name, w in bench.workloads.items()}
        lines = []
        text_row = "{:<34} {:<28} {:>8} {:>8} {:>8} {:>10} {:>8} {:>8}  {}"
        if style == "markdown":
            lines.append("| workload | configuration | wall s | × glibc | CPU × glibc | peak RSS MiB | × glibc | runs ok | status |")
            lines.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        else:
            lines.append(text_row.format("workload", "configuration", "wall s", "x glibc", "CPU x", "RSS MiB", "x glibc",
                                         "runs ok", "status"))
        last = None
        for number, row in enumerate(read_tsv(bench.summary)):
            w, c, wall, rw, rss, rr, runs_ok, status, detail, rc = row
            if detail:
                status += f" ({detail})"
            cells = (describe_workload[w], bench.describe[c], wall, rw, rc, rss, rr, runs_ok, status)
            if style == "markdown":
                lines.append("| " + " | ".join(cells) + " |")
            else:
                if w != last and number > 0:
                    lines.append("")
                lines.append(text_row.format(*cells))
            last = w
        return lines

    @staticmethod
    def tsv(style, path):
        """A TSV with a header line; columns of numbers are right-aligned."""
        rows = read_tsv(path)
        cols = max(len(r) for r in rows)
        width = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(cols)]
        number = re.compile(r"^[-+]?[0-9./]+( \(.*\))?$|^-$")
        text = [any(i < len(r) and not number.search(r[i]) for r in rows[1:]) for i in range(cols)]
        lines = []
        for n, row in enumerate(rows):
            cells = [row[i] if i < len(row) else "" for i in range(cols)]
            if style == "markdown":
                lines.append("".join(f"| {v} " for v in cells) + "|")
                if n == 0:
                    lines.append("".join("|---" if text[i] else "|---:" for i in range(cols)) + "|")
                continue
            line = ""
            for i, v in enumerate(cells):
                if text[i] and i == cols - 1:
                    line += "  " + v  # no trailing blanks
                else:
                    line += ("  " if i > 0 else "") + (v.ljust(width[i]) if text[i] else v.rjust(width[i]))
            lines.append(line)
        return lines

    def text(self, style):
        bench = self.bench
        bullet = "- " if style == "markdown" else ""
        markdown = style == "markdown"
        out = [""] + [bullet + line for line in bench.machine_lines()]
        if read_tsv(bench.summary):
            out.append("")
            if markdown:
                out += ["## Wall time and peak RSS", ""]
            out += self.table(style)
        if read_tsv(bench.overhead_summary):
            out.append("")
            if markdown:
                out += ["## Periodic-scan overhead", ""]
            else:
                out.append(f"periodic-scan overhead (python3 churn, PYTHONMALLOC=malloc, {bench.overhead_iterations} iterations):")
            out += self.tsv(style, bench.overhead_summary) + ["", bench.overhead_verdict]
        if read_tsv(bench.first_summary):
            out.append("")
            if markdown:
                out += ["## Time to first leak report", ""]
            else:
                out.append(f"time to first leak report (late_leak: 12,345 bytes lost {bench.late_leak_at} s into a "
                           f"{bench.late_duration} s run; seconds after the leak):")
            out += self.tsv(style, bench.first_summary)
        if read_tsv(bench.corpus_summary):
            out.append("")
            if markdown:
                out += ["## Leak-report quality (leak corpus)", ""]
            else:
                out.append("leak-report quality (tests/leak_corpus: exact expected leaks; a match: leaked blocks and "
                           "bytes as expected):")
            out += self.tsv(style, bench.corpus_summary)
            out.append("")
            text = (bench.out_dir / "leak_corpus.txt").read_text(errors="replace")
            out += [line for line in text.splitlines() if re.match(r"(exact|classified):", line)]
        out.append("")
        out += [(bullet or "note: ") + line for line in bench.notes()]
        return "\n".join(out) + "\n"
