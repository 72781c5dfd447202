"""Update compression: a node sends its model delta quantized (``q8``) or sparsified (``topk``).

``codec`` is the face the node and the coordinator use; ``quantize`` and ``topk`` are the
mechanisms below it. Only ``medfed.protocol`` and ``medfed.errors`` are imported from here.
"""
