"""benchmarks/train_step.py: one JSON object with speed, memory and the CPU's precision flags, on both
backends, at a tiny size (real subprocesses, as a user runs it)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "train_step.py"


def _module():
    spec = importlib.util.spec_from_file_location("train_step_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_info_reads_the_precision_flags():
    cpuinfo = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\n"
               "flags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n\n"
               "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480C\nflags\t\t: fpu\n")
    info = _module().cpu_info(cpuinfo)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480C"
    assert info["flags"] == ["amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2"]
    assert _module().cpu_info("processor\t: 0\nflags\t: fpu sse2 avx2\n")["flags"] == ["avx2"]


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_train_step_benchmark_prints_speed_memory_and_cpu(backend):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", backend, "--preset", "sa-enc-cl-sn", "--size", "32", "--width", "4",
         "--batch", "2", "--steps", "2", "--warmup", "1", "--precision", "float32",
         "--set", '{"encoder_res_blocks": 1, "generator_res_blocks": 1}'],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["backend"] == backend and result["device"] == "CPU" and result["precision"] == "float32"
    assert (result["image_size"], result["batch"], result["base_width"], result["timed_steps"]) == (32, 2, 4, 2)
    assert result["seconds_per_step"] > 0
    assert result["images_per_s"] == pytest.approx(2 / result["seconds_per_step"], rel=0.01)
    # A TensorFlow or JAX process with a model in it holds more than 100 MiB; a CPU has no device memory.
    assert 100 < result["peak_rss_mib"] < 24 * 1024 and result["peak_device_mib"] is None
    assert result["cpu"]["cores"] == os.cpu_count() and result["cpu"]["model"]
    assert set(result["cpu"]["flags"]) <= {"amx_bf16", "amx_tile", "avx512_bf16", "avx512_fp16", "avx512f", "avx2"}
    assert {"g_loss", "d_loss"} <= set(result["losses"])
