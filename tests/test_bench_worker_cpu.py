"""The worker CPU benchmark runs end to end, small (its figures are reported, never asserted)."""

from __future__ import annotations

from pathlib import Path

from bench.worker_cpu import drain


def test_worker_cpu_benchmark_drains_every_receipt_job(tmp_path: Path) -> None:
    jobs, cpu, wall = drain(f"sqlite:///{tmp_path / 'bench.db'}", tmp_path, 4, None)
    assert jobs >= 8  # each receipt job queues at least its webhook fan-out
    assert cpu > 0 and wall > 0
