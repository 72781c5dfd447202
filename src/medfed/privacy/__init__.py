"""Differential privacy at the hospital: accounting, record-level DP-SGD, the budget ledger."""
