"""The results table: per entry and seed, mean ± std, the GLUE average; written as results.json and results.md."""

from __future__ import annotations

import json
import os

from bertforge.glue.tasks import ENTRIES, TASKS, entry_score, glue_average, mean_std


def _entries(task: str) -> list[str]:
    return [e.entry for e in TASKS[task].evals]


def summarize(tasks: list[str], records: list[dict]) -> dict:
    """Per entry: per-seed metrics and scores, mean and std of the score; plus the GLUE average."""
    rows = {}
    for task in tasks:
        ok = [r for r in records if r["task"] == task and r["status"] == "ok"]
        for entry in _entries(task):
            scores = {r["seed"]: entry_score(r["metrics"], task, entry) for r in ok}
            metrics = {m: {r["seed"]: r["metrics"][f"{entry}/{m}"] for r in ok} for m in TASKS[task].metrics}
            mean, std = mean_std(list(scores.values())) if scores else (None, None)
            rows[entry] = {"task": task, "metrics": metrics, "scores": scores, "mean": mean, "std": std}
    means = {e: row["mean"] for e, row in rows.items() if row["mean"] is not None}
    used = [e for e in ENTRIES if e in means]
    return {"entries": rows, "glue_average": glue_average(means), "average_over": used,
            "failed": [r for r in records if r["status"] != "ok"]}


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def to_markdown(summary: dict, seeds: list[int]) -> str:
    """One table: a row per entry and metric, a column per seed, mean ± std, and the GLUE average."""
    head = "| task | metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |"
    lines = [head, "|" + "---|" * (len(seeds) + 3)]
    for entry, row in summary["entries"].items():
        metric_rows = [(m, vals) for m, vals in row["metrics"].items()]
        if len(metric_rows) > 1:
            metric_rows.append(("score", row["scores"]))
        for metric, vals in metric_rows:
            cells = [_fmt(vals.get(s)) for s in seeds]
            spread = "{:.2f} ± {:.2f}".format(*mean_std(list(vals.values()))) if vals else "–"
            lines.append(f"| {entry} | {metric} | " + " | ".join(cells) + f" | {spread} |")
    avg = summary["glue_average"]
    lines.append(f"| **GLUE average** | {len(summary['average_over'])} entries | " + " | ".join("" for _ in seeds)
                 + f" | **{_fmt(avg)}** |")
    out = ["# GLUE results", "", *lines, "",
           "Scores in percent. Task score = mean of its metrics (MRPC, QQP: F1 and accuracy; STS-B: Pearson and "
           "Spearman; CoLA: Matthews correlation). The GLUE average counts MNLI matched and mismatched as two "
           f"entries (as BERT's 79.6 does), WNLI excluded; averaged here over: {', '.join(summary['average_over'])}."]
    if summary["failed"]:
        out += ["", "## Failed jobs", ""]
        out += [f"- {r['task']}/seed{r['seed']}: {r['error']}" for r in summary["failed"]]
    return "\n".join(out) + "\n"


def write_results(output_dir: str, config: dict, tasks: list[str], seeds: list[int], records: list[dict]) -> dict:
    """Write results.json and results.md into ``output_dir``; return the summary."""
    summary = summarize(tasks, records)
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump({"config": config, "jobs": records, **summary}, f, indent=1, default=str)
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(to_markdown(summary, seeds))
    return summary
