"""CARE training: datasets, reasoning-chain enrichment, SFT, GRPO, rewards and metrics.

Never imports Django: the site imports from here, never the other way round.
"""
