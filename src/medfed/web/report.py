"""``medfed study report``: one self-contained HTML file and the same data as JSON.

The HTML holds its CSS and its charts (inline SVG, :mod:`medfed.web.svg`) and no script, link,
font or image reference, so it opens offline, in an e-mail attachment or an ethics board's
archive, exactly as it was written. ``report.json`` is the document the HTML is rendered from
(the dashboard's study view, plus baselines and when it was made), so every number in the page
can be checked by a program.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from medfed.demo.report import METRIC_NAMES, Baseline
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.web import svg
from medfed.web.audit import audit_view
from medfed.web.views import study_view

REPORT_VERSION = 1
HTML_NAME = "report.html"
JSON_NAME = "report.json"


def build_report(
    status: pb.StudyStatus,
    baselines: Sequence[Baseline] = (),
    generated_unix: float | None = None,
    hospital_names: Mapping[str, str] | None = None,
    ledger_head: str | None = None,
    privacy_audit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The report's document. ``hospital_names``: display name per node (the demo's
    "VA Long Beach" for ``va_long_beach``); nodes keep their certificate names otherwise;
    ``ledger_head``: the coordinator's ledger head, printed under provenance;
    ``privacy_audit``: :func:`medfed.web.audit.audit_view` of the study (None: no audit)."""
    view = study_view(status, ledger_head)
    final = next((r for r in reversed(view["rounds"]) if "accuracy" in r["metrics"]), None)
    return {
        "report_version": REPORT_VERSION,
        "generated_unix": time.time() if generated_unix is None else generated_unix,
        "study": view,
        "hospital_names": dict(hospital_names or {}),
        "final": {
            "round": final["round"] if final else None,
            "metrics": final["metrics"] if final else {},
            "per_hospital": final["per_hospital"] if final else {},
        },
        "baselines": [
            {
                "name": b.name,
                "pooled_accuracy": b.pooled_accuracy,
                "pooled_auc": b.pooled_auc,
                "per_hospital": dict(b.per_hospital),
            }
            for b in baselines
        ],
        "metric_names": METRIC_NAMES,
        "privacy_audit": dict(privacy_audit or audit_view(status.study_id, [])),
    }


def write_report(out_dir: Path, document: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.json`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / JSON_NAME
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    html_path = out_dir / HTML_NAME
    html_path.write_text(render_html(document))
    return html_path, json_path


def render_html(document: Mapping[str, Any]) -> str:
    env = Environment(
        loader=PackageLoader("medfed.web", "templates"), autoescape=select_autoescape()
    )
    env.filters.update(template_filters())
    study = document["study"]
    names = document["hospital_names"]
    charts = _charts(study, names)
    return env.get_template("report.html").render(
        doc=document, study=study, charts=charts, name=lambda n: names.get(n, n)
    )


def _charts(study: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Markup]:
    """Every chart as trusted markup: :mod:`medfed.web.svg` escapes each text it writes (a
    hospital's name or a label can never become markup)."""
    return {key: Markup(chart) for key, chart in _svg_charts(study, names).items()}  # noqa: S704


def _svg_charts(study: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str]:
    labels = study["labels"]
    out: dict[str, str] = {}
    fractions = [
        svg.Series(labels["global"][k], points)
        for k, points in study["global"].items()
        if k != "loss"
    ]
    out["global"] = (
        svg.line_chart(fractions, "Global model, all hospitals' test patients", "round",
                       "fraction (0-1)", (0.0, 1.0))
    )  # fmt: skip
    if "loss" in study["global"]:
        loss = [svg.Series("loss", study["global"]["loss"])]
        out["loss"] = svg.line_chart(loss, "Global loss", "round", "loss (cross-entropy)")
    for key, per in study["per_hospital"].items():
        series = [svg.Series(names.get(h, h), pts) for h, pts in sorted(per.items()) if pts]
        label = labels["site"][key]
        fraction = key != "loss"
        out[f"site_{key}"] = (
            svg.line_chart(series, f"{label} of each hospital on its own test split", "round",
                           label + (" (0-1)" if fraction else ""), (0.0, 1.0) if fraction else None)
        )  # fmt: skip
    part = study["participation"]
    if part:
        out["participation"] = svg.bar_chart(
            [str(p["round"]) for p in part],
            [
                svg.Series("selected", [[i, p["selected"]] for i, p in enumerate(part)]),
                svg.Series("accepted", [[i, p["accepted"]] for i, p in enumerate(part)]),
            ],
            "Hospitals selected and replies accepted per round",
            "hospitals",
        )
    eps = study["privacy"]["epsilon"]
    if eps:
        series = [svg.Series(names.get(h, h), pts) for h, pts in sorted(eps.items())]
        out["privacy"] = svg.line_chart(
            series, "Record-level privacy spent", "round", "epsilon spent"
        )
    stages = study["secure_aggregation"]["stages"]
    if stages:
        series = [svg.Series(s.replace("_", "+"), pts) for s, pts in stages.items()]
        out["secagg"] = svg.line_chart(
            series, "Secure aggregation stage durations", "round", "seconds"
        )
    return out


def template_filters() -> dict[str, Callable[..., str]]:
    """``num`` and ``when``, which the report and the dashboard's shared sections use."""
    return {"num": _num, "when": _when}


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e9 else f"{value:.{digits}f}"
    return str(value)


def _when(unix: float | int | None, ms: bool = False) -> str:
    if not unix:
        return "-"
    seconds = unix / 1000 if ms else unix
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))
