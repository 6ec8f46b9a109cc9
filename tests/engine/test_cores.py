"""Thread counts follow the process's CPU affinity (one decision for torch and ONNX Runtime)."""

import os
import sys

import pytest
import torch

from engine.cores import apply_threads, available_cores, threads_for

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux CPU affinity")


def test_default_threads_follow_the_affinity_mask_not_the_machine():
    before, threads = os.sched_getaffinity(0), torch.get_num_threads()
    try:
        os.sched_setaffinity(0, {min(before)})  # pinned to one core, as taskset -c 0 does
        assert available_cores() == 1 and threads_for(0) == 1 and threads_for(3) == 3
        assert apply_threads(0) == 1 and torch.get_num_threads() == 1
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)
    assert available_cores() == len(before)


def test_onnx_runtime_gets_the_process_cores(tmp_path, monkeypatch):
    """ORT's default pins a worker to every core of the machine; the engine passes the process's."""
    from engine.inference import backends

    seen = {}

    class Options:
        intra_op_num_threads = 0

        def add_session_config_entry(self, *args):
            pass

    class RecordingOrt:  # records the options a session is built with; no model file needed
        GraphOptimizationLevel = type("Level", (), {"ORT_ENABLE_ALL": 99})
        SessionOptions = Options

        @staticmethod
        def InferenceSession(path, sess_options, providers):
            seen["threads"] = sess_options.intra_op_num_threads
            return type("Session", (), {"get_inputs": lambda self: []})()

    monkeypatch.setitem(sys.modules, "onnxruntime", RecordingOrt)
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        backends.OnnxBackend(tmp_path / "student.onnx", None, 6, threads=0)
        assert seen["threads"] == 1
        backends.OnnxBackend(tmp_path / "student.onnx", None, 6, threads=2)
        assert seen["threads"] == 2
    finally:
        os.sched_setaffinity(0, before)
