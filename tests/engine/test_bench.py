"""``python -m engine bench`` runs end to end at small sizes and reports consistent figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_throughput_ratio_onnx_and_peak_rss(tmp_path):
    env = dict(os.environ, SGCAD_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    options = "--json --quiet --size 256 --rss-sizes 256,512 --model-size tiny --tile-size 256 --overlap 32"
    options += " --repeats 1 --threads 1 --peer-size 256"
    cmd = [sys.executable, "-m", "engine", "bench", *options.split(), "--work", str(tmp_path / "work"),
           "--deepness-path", str(tmp_path / "no-deepness-here")]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["machine"]["device"] == "cpu" and r["machine"]["torch_threads"] >= 1
    t = r["throughput"]
    assert t["tiles"] == 1 and t["backend"] == "onnx"  # ONNX Runtime is the CPU default
    assert t["model_only_px_s"] > 0 and t["pipeline_px_s"] > 0
    assert abs(t["ratio"] - t["pipeline_px_s"] / t["model_only_px_s"]) < 0.01
    assert t["onnx_px_s"] > 0 and t["torch_px_s"] > 0
    # teacher on and off, each against the network alone on the same threads
    assert t["threads"] == 1 and t["precision"] == "fp32"
    assert 0 < t["network_teacher"]["px_s"] < t["network"]["px_s"]
    ratio_t = t["pipeline_teacher"]["px_s"] / t["network_teacher"]["px_s"]
    assert abs(t["pipeline_over_network_teacher"]["median"] - ratio_t) < 0.01
    assert abs(t["teacher_on_over_off"]["median"] - t["pipeline_teacher"]["px_s"] / t["pipeline"]["px_s"]) < 0.01
    # peers on our network: GeoDeep when installed, Deepness skipped without its source
    p = r["peers"]
    assert "no Deepness source" in p["deepness"]["skipped"] and p["ours"]["px_s"] > 0
    try:
        import geodeep  # noqa: F401

        ratio_g = p["ours"]["px_s"] / p["geodeep"]["px_s"]
        assert abs(p["geodeep"]["ours_over_peer"]["median"] - ratio_g) < 0.01
    except ImportError:
        assert "not installed" in p["geodeep"]["skipped"]
    assert set(t["pipeline_timings"]) >= {"read_s", "network_s", "blend_write_s", "stream_s", "commit_s"}
    rss = r["peak_rss"]
    assert rss["256"]["tiles"] == 1 and rss["512"]["tiles"] == 9
    assert 100 < rss["256"]["peak_rss_mb"] < 4000
    assert abs(rss["ratio"] - rss["512"]["peak_rss_mb"] / rss["256"]["peak_rss_mb"]) < 0.01
    assert (tmp_path / "work" / "out256" / "classes.tif").exists()
