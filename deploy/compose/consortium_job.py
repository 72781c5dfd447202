"""The one-shot jobs of the compose consortium (deploy/compose.yaml), run with the images' Python:

    consortium_job.py pki                  the consortium CA: CA, coordinator and researcher
                                           certificates, each hospital's certificate staged for
                                           it, the coordinator's and researcher's configs
    consortium_job.py enroll <hospital>    what that hospital's data steward does: install its
                                           certificate, write node.toml, put its own rows of the
                                           UCI Heart Disease data in /data, register them,
                                           approve the study's training plan
    consortium_job.py study                the researcher: wait for the hospitals, submit the
                                           heart study, follow it; exit 0 only when it completed

Volumes, as each job sees them (owner uid 10001, the images' user):
    pki     /var/lib/medfed = consortium (CA, researcher, staged hospital certificates),
            /etc/medfed = the coordinator's config and certificates
    enroll  /consortium (read-only), /etc/medfed, /var/lib/medfed, /data of that hospital
    study   /consortium (read-only)

The demo's CA issues the hospitals' keys itself so that one ``up`` runs everything; in a real
consortium each hospital makes its key and a CSR (``medfed pki csr``) and only the certificate
travels (README, "Deploying"). Configs are written with the same code as ``medfed … init``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from medfed.cli.config_files import write_config
from medfed.coordinator.config import ADMIN_KEYS, COORDINATOR_KEYS
from medfed.node.config import NODE_KEYS
from medfed.pki.ca import CertificateAuthority
from medfed.pki.identity import Role

CONSORTIUM = Path(os.environ.get("MEDFED_CONSORTIUM_DIR", "/consortium"))
ETC = Path("/etc/medfed")
STATE = Path("/var/lib/medfed")
DATA = Path("/data")
COORDINATOR_HOST = os.environ.get("MEDFED_COORDINATOR_HOST", "coordinator")
PORT = int(os.environ.get("MEDFED_COORDINATOR_PORT", "7443"))
HOSPITALS = os.environ.get("MEDFED_HOSPITALS", "cleveland,hungary,switzerland").split(",")
RESEARCHER = "researcher"
STUDY_TIMEOUT_S = float(os.environ.get("MEDFED_STUDY_TIMEOUT_S", "900"))


def pki(root: Path = STATE, etc: Path = ETC) -> None:
    """The CA's one sitting: every certificate, the coordinator's and researcher's configs."""
    if (root / "ca" / "ca.crt").exists():
        print(f"consortium CA exists in {root}: nothing to do")
        return
    ca = CertificateAuthority.init(root / "ca", os.environ.get("MEDFED_CONSORTIUM", "compose-demo"))
    ca.issue("coordinator", Role.COORDINATOR, etc / "certs", sans=[f"DNS:{COORDINATOR_HOST}"])
    shutil.copy(ca.crl_path, etc / "certs" / "crl.pem")
    coordinator_values: dict[str, str | int | float | Path] = {
        "listen": f"0.0.0.0:{PORT}",
        "data_dir": STATE,
        "state_url": os.environ.get("MEDFED_STATE_URL", ""),
        "heartbeat_interval_s": 1,
        "node_offline_after_s": 10.0,
        "tls.cert": Path("certs/coordinator.crt"),
        "tls.key": Path("certs/coordinator.key"),
        "tls.ca": Path("certs/ca.crt"),
        "tls.crl": Path("certs/crl.pem"),
    }
    write_config(etc / "coordinator.toml", "coordinator", COORDINATOR_KEYS, coordinator_values,
                 force=True)  # fmt: skip
    ca.issue(RESEARCHER, Role.ADMIN, root / RESEARCHER / "certs")
    admin_values = {"coordinator": f"{COORDINATOR_HOST}:{PORT}", **_tls(RESEARCHER)}
    write_config(root / RESEARCHER / "admin.toml", "admin", ADMIN_KEYS, admin_values, force=True)
    for hospital in HOSPITALS:
        ca.issue(hospital, Role.NODE, root / "issued" / hospital)
    print(f"consortium {ca.consortium}: coordinator, {RESEARCHER}, {', '.join(HOSPITALS)}")


def enroll(hospital: str, consortium: Path = CONSORTIUM) -> None:
    """One hospital's steward: certificate, node config, local data, registration, approval."""
    from medfed.data.heart_disease import HEART_LABEL, export_heart_csvs
    from medfed.data.registry import DatasetRegistry
    from medfed.demo.heart import heart_study
    from medfed.node.policy import LocalPolicy

    spec = heart_study()
    registry = DatasetRegistry(STATE)
    if (ETC / "node.toml").exists() and any(e.name == spec.dataset for e in registry.list()):
        print(f"{hospital} is enrolled: nothing to do")  # compose may start a finished job again
        return
    issued = consortium / "issued" / hospital
    if not issued.is_dir():
        raise SystemExit(f"no certificate staged for {hospital!r} in {issued} (run the pki job)")
    shutil.copytree(issued, ETC / "certs", dirs_exist_ok=True)
    values = {"coordinator": f"{COORDINATOR_HOST}:{PORT}", "state_dir": STATE,
              "heartbeat_interval_s": 1.0, "poll_wait_s": 5.0, "max_backoff_s": 2.0,
              **_tls(hospital)}  # fmt: skip
    write_config(ETC / "node.toml", "node", NODE_KEYS, values, force=True)
    exported = export_heart_csvs(Path(tempfile.mkdtemp(prefix="heart-")))
    local_csv = DATA / f"{hospital}.csv"
    local_csv.write_bytes(exported[hospital].read_bytes())
    features = list(spec.features)
    registry.add(
        spec.dataset, local_csv, label=HEART_LABEL, features=features, split_column="split",
        now=time.time(),
    )  # fmt: skip
    LocalPolicy(STATE).approve(spec.plan, spec.plan_version)
    print(f"{hospital}: {local_csv} registered as {spec.dataset!r}, plan {spec.plan} approved")


def study(consortium: Path = CONSORTIUM) -> int:
    """Submit the heart study once every hospital is online; follow it to its end."""
    import dataclasses

    from medfed.cli.common import out
    from medfed.cli.study import prepare
    from medfed.cli.tables import round_table
    from medfed.coordinator.client import AdminClient
    from medfed.coordinator.config import load_client_config
    from medfed.demo.heart import heart_study
    from medfed.demo.processes import wait_for_nodes

    cfg = load_client_config(consortium / RESEARCHER / "admin.toml")
    rounds = int(os.environ.get("MEDFED_ROUNDS", "0"))
    spec = heart_study()
    if rounds:
        spec = dataclasses.replace(spec, rounds=rounds)
    pinned, weights = prepare(dataclasses.replace(spec, nodes=tuple(HOSPITALS)))
    with AdminClient(cfg.coordinator, cfg.tls, cfg.server_name) as client:
        wait_for_nodes(client, HOSPITALS, timeout_s=STUDY_TIMEOUT_S)
        study_id = client.submit(pinned, weights)
        print(f"submitted {study_id}: {pinned.name}, {pinned.rounds} rounds, {HOSPITALS}")
        deadline = time.monotonic() + STUDY_TIMEOUT_S
        status = client.status(study_id)
        while status.state not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(1.0)
            status = client.status(study_id)
    out.print(round_table(status))
    print(f"study {study_id} {status.state}: {status.message}")
    return 0 if status.state == "completed" else 1


def _tls(name: str) -> dict[str, str | int | float | Path]:
    return {
        "tls.cert": Path(f"certs/{name}.crt"),
        "tls.key": Path(f"certs/{name}.key"),
        "tls.ca": Path("certs/ca.crt"),
    }


def main(argv: list[str]) -> int:
    match argv[1:]:
        case ["pki"]:
            pki()
        case ["enroll", hospital]:
            enroll(hospital)
        case ["study"]:
            return study()
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
