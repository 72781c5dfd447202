from __future__ import annotations

from rich.console import Console

from medfed.cli.tables import encrypted_eval_table, round_table
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


def test_decrypted_means_of_ratio_metrics_are_labelled_site_means() -> None:
    rows = [(2, 4, {"num_examples": 180.0, "accuracy": 0.8, "auc": 0.82, "personal_auprc": 0.4})]
    console = Console(width=200, record=True)
    console.print(encrypted_eval_table(rows))
    text = console.export_text()
    assert "auc (site mean)" in text and "personal_auprc (site mean)" in text
    assert "accuracy (site mean)" not in text
