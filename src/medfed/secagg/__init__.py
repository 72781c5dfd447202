"""Secure aggregation: the coordinator learns the sum of the hospitals' updates, never one."""
