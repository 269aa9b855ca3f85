"""The tests, one folder per package they test; system tests (crashes, concurrency,
scale-out, hostile input) in ``system/``; helpers shared by them at this level."""

from pathlib import Path

#: The repository's root.
ROOT = Path(__file__).resolve().parents[1]
