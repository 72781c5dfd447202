"""Bring your Flower client: a hospital's own ``NumPyClient`` trains in a medfed study.

``numpy_client``: the Flower method signatures, for clients written without ``flwr``;
``flwr_shim``: a stand-in ``flwr`` package for scripts when the real one is absent;
``approval`` and ``loader``: a client file is run only after its SHA-256 matches the data
steward's approval; ``plan``: the adapter that makes an approved client a training plan of the
node's executor; ``runner``: ``medfed flower run client.py``, the drop-in for Flower scripts.
"""
