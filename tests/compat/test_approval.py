from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from medfed.compat.approval import ClientApprovals, default_name, read_approved
from medfed.errors import ConfigError, PolicyError


def test_a_file_is_approved_by_its_sha256_and_found_by_name_and_path(tmp_path: Path) -> None:
    script = tmp_path / "Heart Client.py"
    script.write_text("print('hi')\n")
    approvals = ClientApprovals(tmp_path / "state")
    entry = approvals.approve(script)
    assert entry.name == default_name(script) == "heart_client"
    assert entry.sha256 == hashlib.sha256(script.read_bytes()).hexdigest()  # = sha256sum
    assert approvals.entry("heart_client") == entry == approvals.for_file(script)
    assert read_approved(entry) == script.read_bytes()


def test_an_unapproved_name_or_file_is_refused_with_how_to_approve(tmp_path: Path) -> None:
    approvals = ClientApprovals(tmp_path)
    with pytest.raises(PolicyError, match=r"not approved.*approve-client") as caught:
        approvals.entry("heart")
    assert caught.value.code == "plan_not_approved"
    with pytest.raises(PolicyError, match="not approved"):
        approvals.for_file(tmp_path / "x.py")


def test_a_changed_file_is_refused_until_re_approved(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text("x = 1\n")
    approvals = ClientApprovals(tmp_path / "state")
    entry = approvals.approve(script, "heart")
    script.write_text("x = 2\n")
    with pytest.raises(PolicyError, match="changed since it was approved") as caught:
        read_approved(approvals.entry("heart"))
    assert caught.value.code == "plan_changed"
    assert read_approved(approvals.approve(script, "heart")) == b"x = 2\n"
    assert approvals.entry("heart").sha256 != entry.sha256


def test_a_study_pinning_another_hash_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text("x = 1\n")
    entry = ClientApprovals(tmp_path).approve(script)
    with pytest.raises(PolicyError) as caught:
        read_approved(entry, "0" * 64)
    assert caught.value.code == "plan_hash_mismatch"
    assert read_approved(entry, entry.sha256) == b"x = 1\n"


def test_revoke_and_bad_names(tmp_path: Path) -> None:
    script = tmp_path / "client.py"
    script.write_text("")
    approvals = ClientApprovals(tmp_path)
    approvals.approve(script, "heart")
    approvals.revoke("heart")
    assert approvals.approved() == []
    with pytest.raises(ConfigError, match="must match"):
        approvals.approve(script, "Bad Name")
    with pytest.raises(ConfigError, match="does not exist"):
        approvals.approve(tmp_path / "missing.py")
