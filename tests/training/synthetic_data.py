import numpy as np

from medfed.data.tabular import TabularDataset


def synthetic(seed: int, n: int = 200, d: int = 5, shift: float = 0.0, scale: float = 1.0):
    """A linearly separable-ish task; ``shift``/``scale`` change units the way hospitals do."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    true_w = np.linspace(-2, 2, d)
    y = (x @ true_w + 0.5 * rng.normal(size=n) > 0).astype(np.float32)
    x = (x * scale + shift).astype(np.float32)
    cut = int(n * 0.7)
    names = tuple(f"f{i}" for i in range(d))
    return TabularDataset(names, "y", x[:cut], y[:cut], x[cut:], y[cut:])
