"""Local datasets at a hospital node: connectors, the data steward's registry, built-in datasets.

Nothing here leaves the node: the coordinator only ever sees a dataset's *name* in a study spec.
"""
