"""Training plans: the only model code a hospital node runs, installed locally and approved by hash.

torch is imported only inside this package, and only when a plan actually trains or initialises
weights, so the coordinator can look plans up (and hash them) without importing torch.
"""
