"""The sweep bench's efficiency figures from a sweep's records and invocations.json (no Ray)."""

from __future__ import annotations

import json

import pytest
from bench.sweep_bench import bench_sweep, sweep_efficiency


def write_sweep(exp, setups) -> None:
    exp.mkdir()
    (exp / "invocations.json").write_text(json.dumps([{"wall_seconds": 100.0, "slots": 2}]))
    for i, setup in enumerate(setups):
        record = {
            "status": "finished",
            "wall_seconds": 60.0,
            "epochs": [{"seconds": 20.0}, {"seconds": 20.0}],
        }
        if setup is not None:
            record["setup_seconds"] = setup
        (exp / "runs" / f"t{i}").mkdir(parents=True)
        (exp / "runs" / f"t{i}" / "record.json").write_text(json.dumps(record))


def test_start_up_is_split_into_the_workers_set_up_and_the_rest(tmp_path, capsys):
    exp = tmp_path / "exp"
    first = {"model staging": 1.0, "model": 2.0, "data": 3.0, "DeepSpeed": 4.0}
    write_sweep(exp, [[first], [{**first, "data": 5.0}, {"model staging": 0.0}]])
    e = sweep_efficiency(exp)
    assert e["occupancy"] == pytest.approx(120 / 200) and e["useful"] == pytest.approx(80 / 200)
    assert e["startup_mean"] == pytest.approx(20.0)
    # the first start of each trial only: a restart's set-up is not part of the start-up
    assert e["setup"] == pytest.approx({"model staging": 1.0, "model": 2.0, "data": 4.0, "DeepSpeed": 4.0})
    bench_sweep(exp)
    out = capsys.readouterr().out
    assert "of which the workers' set-up (mean of 2 trials): model staging 1.0 s, model 2.0 s" in out
    assert "the rest 9.0 s (Ray's actors" in out


def test_records_without_setup_seconds_say_so(tmp_path, capsys):
    exp = tmp_path / "exp"
    write_sweep(exp, [None])
    bench_sweep(exp)
    assert "these records predate setup_seconds" in capsys.readouterr().out
