"""Hard-negative mining: mine_hard_negatives' filters over an exact or approximate search of the whole pool, the
data's own negatives, the mined rows on disk and what the mining did (``mining.json``).
"""
