"""``medfed demo``: a real federated study on the built-in UCI Heart Disease hospitals.

A throwaway consortium (CA, coordinator certificate, four node certificates) is created, a
coordinator and four node processes start and talk mutual TLS on loopback, and a FedAvg study runs
to the end. The result is compared with two baselines computed here: pooled training (what you
could do if data could be centralised) and each hospital training alone.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from medfed.cli.common import medfed_errors, out
from medfed.cli.study import prepare
from medfed.cli.tables import round_table
from medfed.coordinator.client import AdminClient, wait_for_ready
from medfed.coordinator.config import load_client_config
from medfed.coordinator.spec import StudySpec
from medfed.data.heart_disease import HEART_HOSPITALS, heart_disease_centres
from medfed.demo.anchors import flamby_heart_results
from medfed.demo.consortium import Consortium, create_consortium
from medfed.demo.heart import baseline_config, heart_study, provision_heart_nodes
from medfed.demo.processes import spawn, stop, stop_all, wait_for_nodes
from medfed.demo.report import Baseline, write_report
from medfed.protocol import tensors
from medfed.protocol.v1 import medfed_pb2 as pb
from medfed.training.baselines import (
    evaluate_everywhere,
    pooled_accuracy,
    pooled_auc,
    train_local,
    train_pooled,
)
from medfed.training.registry import get_plan
from medfed.web.report import build_report
from medfed.web.report import write_report as write_study_report

FLAMBY_METHODS = {
    "FedAvg100": "FedAvg, 15 rounds x 100 steps",
    "Pooled Training": "pooled (centralised)",
    "Local 0": "Cleveland alone",
    "Local 1": "Hungary alone",
    "Local 2": "Switzerland alone",
    "Local 3": "VA Long Beach alone",
}


def run_demo(out_dir: Path, rounds: int | None, workdir: Path | None) -> None:
    """Run a FedAvg study across four hospitals over mTLS on loopback and report it."""
    started = time.monotonic()
    with medfed_errors(), ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="medfed-")))
        spec = heart_study()
        if rounds:
            spec = dataclasses.replace(spec, rounds=rounds)
        consortium = create_consortium(root, list(HEART_HOSPITALS))
        provision_heart_nodes(consortium, spec)
        out.print(f"consortium ready in {root} (CA, coordinator, {len(HEART_HOSPITALS)} hospitals)")
        status = run_study(consortium, spec, stack, HEART_HOSPITALS)
        report_study(spec, status, consortium, out_dir, time.monotonic() - started)


def run_study(
    consortium: Consortium, spec: StudySpec, stack: ExitStack, hospitals: Mapping[str, str]
) -> pb.StudyStatus:
    """Start the coordinator and every node as processes, submit ``spec``, follow it to the end."""
    logs = consortium.root / "logs"
    coordinator = spawn(
        ["coordinator", "start", "--config", str(consortium.coordinator_config)],
        logs / "coordinator.log",
    )
    stack.callback(stop, coordinator)
    cfg = load_client_config(consortium.admin_config)
    admin = stack.enter_context(AdminClient(cfg.coordinator, cfg.tls, cfg.server_name))
    wait_for_ready(admin, timeout_s=30)
    nodes = [
        spawn(["node", "start", "--config", str(config)], logs / f"{node}.log")
        for node, config in consortium.node_configs.items()
    ]
    stack.callback(stop_all, nodes)
    wait_for_nodes(admin, list(consortium.node_configs), timeout_s=60)
    out.print(f"coordinator on {consortium.address}; nodes online: {', '.join(hospitals.values())}")
    pinned, weights = prepare(spec)
    study_id = admin.submit(pinned, weights)
    return _follow(admin, study_id, spec.rounds)


def _follow(admin: AdminClient, study_id: str, rounds: int) -> pb.StudyStatus:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[acc]}"), TimeElapsedColumn())  # fmt: skip
    last = admin.status(study_id)
    with Progress(*columns, console=out) as progress:
        bar = progress.add_task(f"study {study_id}", total=rounds, acc="")
        for status in admin.watch(study_id):
            last = status
            progress.update(bar, completed=status.completed_rounds, acc=_latest(status))
    return admin.status(study_id) if last.state != "completed" else last


def _latest(status: pb.StudyStatus) -> str:
    """The last evaluated round's accuracy and pooled AUC, for the progress bar."""
    m = next((r.metrics for r in reversed(status.rounds) if "accuracy" in r.metrics), None)
    if m is None:
        return ""
    auc = f", AUC (pooled) {m['auc_pooled']:.3f}" if "auc_pooled" in m else ""
    return f"accuracy {m['accuracy']:.3f}{auc}"


def _baselines(spec: StudySpec, final: tensors.Weights) -> list[Baseline]:
    """Federated model, pooled training and each hospital alone, all on the same test splits."""
    plan = get_plan(spec.plan, spec.plan_version)
    centres = heart_disease_centres()
    init = plan.init_weights(len(spec.features), spec.seed, spec.plan_options)
    config = baseline_config(spec)

    def baseline(name: str, weights: tensors.Weights) -> Baseline:
        results = evaluate_everywhere(plan, weights, centres)
        per = {k: r.metrics["accuracy"] for k, r in results.items()}
        return Baseline(name, pooled_accuracy(results), per, pooled_auc(plan, weights, centres))

    out_list = [baseline("federated (this run)", final)]
    out_list.append(baseline("pooled (centralised)", train_pooled(centres, plan, config, init)))
    for key, label in HEART_HOSPITALS.items():
        out_list.append(baseline(f"{label} alone", train_local(centres[key], plan, config, init)))
    return out_list


def verified_ledger(lines: list[bytes], ca: Path) -> str:
    """What an auditor with the CA certificate alone can check of the study's ledger."""
    from medfed.ledger.chain import verify_entries
    from medfed.ledger.entry import parse_line
    from medfed.ledger.keys import load_ca

    entries = [parse_line(line) for line in lines]
    verifier = verify_entries(entries, load_ca(ca))
    updates = sum(len(e.payload.get("updates", [])) for e in entries)
    head = verifier.head
    where = f"head #{head.seq} {head.hash[:16]}…" if head else "empty"
    return (
        f"ledger verified with the CA certificate alone: {len(entries)} entries, {updates} "
        f"signed updates, {where} (medfed audit export / verify)"
    )


def report_study(
    spec: StudySpec,
    status: pb.StudyStatus,
    consortium: Consortium,
    out_dir: Path,
    elapsed: float,
    notes: Mapping[str, object] | None = None,
) -> None:
    """The rounds, the final model against the baselines and FLamby's table; ``notes`` go into
    metrics.json beside them."""
    out.print(round_table(status))
    cfg = load_client_config(consortium.admin_config)
    with AdminClient(cfg.coordinator, cfg.tls, cfg.server_name) as admin:
        final = admin.download(status.model_sha256)
        head = admin.ledger_head()
        out.print(verified_ledger(admin.ledger(), consortium.ca_dir / "ca.crt"))
    baselines = _baselines(spec, final)
    table = Table(
        title="final model vs baselines on the held-out test splits",
        caption="pooled: all hospitals' test patients at once; the rest: accuracy per hospital",
    )
    table.add_column("model")
    table.add_column("pooled test", justify="right")
    table.add_column("pooled AUC", justify="right")
    table.add_column("mean of local tests", justify="right")
    for label in HEART_HOSPITALS.values():
        table.add_column(label, justify="right")
    for b in baselines:
        local = [b.per_hospital[k] for k in HEART_HOSPITALS]
        table.add_row(
            b.name,
            f"{b.pooled_accuracy:.3f}",
            f"{b.pooled_auc:.3f}" if b.pooled_auc is not None else "-",
            f"{sum(local) / len(local):.3f}",
            *(f"{v:.3f}" for v in local),
        )
    out.print(table)
    published = flamby_heart_results(tuple(FLAMBY_METHODS))
    anchor = Table(
        title="published: FLamby Fed-Heart-Disease, mean of 5 seeds (15 rounds x 100 local steps)"
    )
    anchor.add_column("method")
    anchor.add_column("pooled test", justify="right")
    anchor.add_column("mean of local tests", justify="right")
    for p in published:
        label = FLAMBY_METHODS[p.method]
        anchor.add_row(label, f"{p.pooled_test:.3f}", f"{p.mean_over_local_tests:.3f}")
    out.print(anchor)
    extra = {
        "elapsed_s": elapsed,
        "flamby_published": [dataclasses.asdict(p) for p in published],
        **(notes or {}),
    }
    json_path, png_path = write_report(out_dir, status, baselines, HEART_HOSPITALS, extra)
    study = build_report(status, baselines, hospital_names=HEART_HOSPITALS, ledger_head=head)
    html_path, _ = write_study_report(out_dir, study)
    out.print(f"report: {html_path}, {json_path} and {png_path}  ({elapsed:.0f} s)")
