"""Benchmarks: notebook wall times and headline metrics per profile, and peer comparisons."""
