"""Installed training plans: one public module per plan; ``_torch`` holds their shared loop."""
