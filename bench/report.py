"""Turn bench/results/*.json into docs/benchmarks.md, PNG plots and the README's table."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt

from bench._common import RESULTS_DIR

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PLOTS = DOCS / "bench"
README = ROOT / "README.md"
MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")

TITLES = {
    "audit_verify": "Audit verification (1,000,000 entries)",
    "audit_proof": "Audit proofs (10,000,000 entries)",
    "gate_throughput": "Gate open + decide with audit chaining (core)",
    "service_http": "Gate service over HTTP",
    "lineage_capture": "Lineage: DataFrame metadata capture",
    "lineage_ingest_query": "Lineage: ingest and governance queries",
    "openlineage_receiver": "Lineage: OpenLineage receiver and approval scope check",
    "airflow_real_stack": "Airflow, real deployment: decision → the approved step running",
    "airflow_resume": "Airflow under dag.test(): decision → the approved step running",
    "airflow_triggerer_scale@10000": "Airflow: 10,000 gates waiting in one triggerer",
    "prefect_resume": "Prefect: decision → flow running again",
    "dagster_resume": "Dagster: decision → op continues; sensor tick",
}


def load() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(RESULTS_DIR.glob("*.json"))}


def _value(fig: dict[str, Any]) -> str:
    value = float(fig["value"])
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"
    return f"{text} {fig['unit']}".strip()


def _target(fig: dict[str, Any]) -> str:
    if fig.get("target") is None:
        return ""
    sign = "≤" if fig.get("target_kind") == "at_most" else "≥"
    return f"{sign} {fig['target']:g} {fig['unit']}".strip()


def _verdict(fig: dict[str, Any]) -> str:
    met = fig.get("meets_target")
    return "" if met is None else ("met" if met else "**missed**")


def headline_rows(results: dict[str, dict[str, Any]]) -> list[str]:
    """Every figure with a target, plus every anchor and ratio figure: the README's table."""
    rows = ["| benchmark | figure | value | target | |", "|---|---|---|---|---|"]
    for name, title in TITLES.items():
        result = results.get(name)
        if result is None:
            continue
        for fig in result["figures"]:
            label = fig["figure"]
            if fig.get("target") is not None or re.search(
                r"ratio|anchor|native|ApprovalOperator|scheduler", label, re.I
            ):
                rows.append(f"| {title} | {label} | {_value(fig)} | {_target(fig)} | {_verdict(fig)} |")
    return rows


def machine_line(results: dict[str, dict[str, Any]]) -> str:
    any_result = next(iter(results.values()), None)
    if any_result is None:
        return "No results yet: run `make bench`."
    machine = any_result["machine"]
    dates = sorted(r["date"] for r in results.values())
    loads = [r["machine"].get("load_average_at_start", [0])[0] for r in results.values()]
    return (
        f"Measured {dates[0][:16].replace('T', ' ')} – {dates[-1][:16].replace('T', ' ')} UTC on "
        f"{machine['cpu_model']}, {machine['cores']} cores, {machine['implementation']} {machine['python']}; "
        f"load average at the start of each run {min(loads):.1f}–{max(loads):.1f}."
    )


# ------------------------------------------------------------------ plots


def plot_latencies(results: dict[str, dict[str, Any]]) -> list[Path]:
    written = []
    for name, result in results.items():
        samples: dict[str, list[float]] = result.get("samples_s") or {}
        series = {label: values for label, values in samples.items() if values}
        if not series:
            continue
        figure, axes = plt.subplots(figsize=(8, 0.8 + 0.6 * len(series)))
        labels = list(series)
        axes.boxplot(
            [[v * 1000 for v in series[k]] for k in labels],
            vert=False,
            tick_labels=labels,
            showfliers=True,
            whis=(1, 99),
        )
        axes.set_xscale("log")
        axes.set_xlabel("milliseconds (log scale; whiskers p1–p99)")
        axes.set_title(TITLES.get(name, name))
        figure.tight_layout()
        path = PLOTS / f"{name}-latency.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path)
    return written


def _figure(result: dict[str, Any], pattern: str) -> float | None:
    for fig in result["figures"]:
        if re.search(pattern, fig["figure"], re.I):
            return float(fig["value"])
    return None


def plot_triggerer_scale(results: dict[str, dict[str, Any]]) -> list[Path]:
    runs = sorted(
        (int(n.split("@")[1]), r) for n, r in results.items() if n.startswith("airflow_triggerer_scale@")
    )
    if len(runs) < 2:
        return []
    gates = [n for n, _ in runs]
    panels = [
        ("store queries per cycle", r"queries per cycle"),
        ("triggerer CPU (cores)", r"CPU, idle"),
        ("peak RSS (MB)", r"RSS"),
        ("decision → event p99 (s)", r"p99"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(13, 3.2))
    for ax, (title, pattern) in zip(axes, panels, strict=True):
        ax.plot(gates, [_figure(r, pattern) or 0 for _, r in runs], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("waiting gates")
        ax.set_title(title, fontsize=10)
    figure.suptitle("Cost of waiting gates in one Airflow triggerer")
    figure.tight_layout()
    path = PLOTS / "triggerer-scale.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]


def plot_lineage_queries(results: dict[str, dict[str, Any]]) -> list[Path]:
    series = (results.get("lineage_ingest_query") or {}).get("query_vs_events")
    if not series:
        return []
    figure, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95")):
        ax.plot(series["events"], series[key], marker="o", label=label)
    ax.axhline(50, linestyle="--", color="grey", label="target p95 ≤ 50 ms")
    ax.set_xscale("log")
    ax.set_xlabel("access events stored")
    ax.set_ylabel("'who accessed X' (ms)")
    ax.legend()
    ax.set_title("Lineage query time against event count")
    figure.tight_layout()
    path = PLOTS / "lineage-query-vs-events.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return [path]


# ------------------------------------------------------------------ documents


def full_report(results: dict[str, dict[str, Any]], plots: Iterable[Path]) -> str:
    lines = [
        "# Benchmarks",
        "",
        machine_line(results),
        "",
        "Run `make bench` (or `python -m bench`) to reproduce.",
        "",
    ]
    for name, result in results.items():
        lines += [
            f"## {TITLES.get(name, name)}",
            "",
            f"`bench/{name.split('@')[0]}.py` · {result['date']}",
            "",
            "| figure | value | target | |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {f['figure']} | {_value(f)} | {_target(f)} | {_verdict(f)} |" for f in result["figures"]
        ]
        lines.append("")
    lines += ["## Plots", ""] + [f"![{p.stem}](bench/{p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def readme_block(results: dict[str, dict[str, Any]], plots: list[Path]) -> str:
    images = [f"![{p.stem}](docs/bench/{p.name})" for p in plots]
    return "\n".join(
        [
            MARKERS[0],
            machine_line(results),
            "",
            *headline_rows(results),
            "",
            "All figures, per benchmark: [docs/benchmarks.md](docs/benchmarks.md).",
            "",
            *images,
            MARKERS[1],
        ]
    )


def write_all() -> list[Path]:
    results = load()
    PLOTS.mkdir(parents=True, exist_ok=True)
    plots = plot_latencies(results) + plot_triggerer_scale(results) + plot_lineage_queries(results)
    doc = DOCS / "benchmarks.md"
    doc.write_text(full_report(results, plots), encoding="utf-8")
    text = README.read_text(encoding="utf-8")
    start, end = text.index(MARKERS[0]), text.index(MARKERS[1]) + len(MARKERS[1])
    README.write_text(text[:start] + readme_block(results, plots) + text[end:], encoding="utf-8")
    return [doc, README, *plots]
