"""Privacy attacks medfed runs against itself: membership inference on a released model
(``membership``), gradient inversion against what the coordinator receives (``inversion``), and
the image-quality scores that say how well an inversion worked (``quality``).

They measure leakage empirically, beside the (epsilon, delta) the accountants prove: a consortium's
ethics board asks both what is guaranteed and what an attacker actually gets.
"""
