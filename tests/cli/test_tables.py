from __future__ import annotations

from rich.console import Console

from medfed.cli.tables import round_table
from medfed.protocol.v1 import medfed_pb2 as pb


def test_round_table_labels_pooled_and_site_mean_auc_apart() -> None:
    status = pb.StudyStatus(study_id="s-1", state="completed")
    status.rounds.add(
        round=1, accepted=4, selected=4,
        metrics={"accuracy": 0.856, "auc_pooled": 0.847, "auc_site_mean": 0.819,
                 "balanced_accuracy_pooled": 0.5, "auprc_pooled": 0.31},
    )  # fmt: skip
    console = Console(width=200, record=True)
    console.print(round_table(status))
    text = console.export_text()
    assert "site mean" in text and "pooled" in text
    row = next(line for line in text.splitlines() if "0.847" in line)
    cells = row.replace("│", " ").split()
    assert cells[:6] == ["1", "0.856", "0.500", "0.847", "0.819", "0.310"]
