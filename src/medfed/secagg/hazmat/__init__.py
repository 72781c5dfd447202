"""Dangerous primitives of secure aggregation: Shamir sharing, the mask PRG, key agreement.

Use them through :mod:`medfed.secagg.protocol`; each module here says what misuse breaks.
"""
