"""Pieces of ``benchmarks.strategies``: the synthetic landscapes and the strategies."""
