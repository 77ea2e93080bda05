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


# TensorFlow only: benchmarks/gpu_check.py (below) runs the JAX train step.
@pytest.mark.parametrize("backend", ["tensorflow"])
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


GPU_CHECK = ROOT / "benchmarks" / "gpu_check.py"
# A sitecustomize that makes `import tensorflow` fail, as on a JAX+CUDA machine without TensorFlow.
NO_TENSORFLOW = '''
import sys

class _NoTensorFlow:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            raise ImportError(f"No module named {name!r} (blocked by the test)")

sys.meta_path.insert(0, _NoTensorFlow())
'''


def test_gpu_check_runs_tiny_on_a_cpu_with_jax_and_no_tensorflow(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(NO_TENSORFLOW)
    done = subprocess.run(
        [sys.executable, str(GPU_CHECK), "--size", "32", "--width", "4", "--batches", "1", "--steps", "1",
         "--warmup", "1", "--peak-tflops", "1", "--set", '{"encoder_res_blocks": 0, "generator_res_blocks": 0}'],
        env={**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout[-2000:]
    report = json.loads(lines[0])
    assert report["tensorflow_imported"] is False
    assert (report["backend"], report["device"], report["preset"], report["image_size"], report["base_width"]) == (
        "jax", "CPU", "unit", 32, 4)
    assert report["peak_tflops"] == {"float32": 1.0, "mixed_bfloat16": 1.0} and report["peak_source"] == "flag"
    results = report["results"]
    assert [(r["precision"], r["batch"]) for r in results] == [("float32", 1), ("mixed_bfloat16", 1)]
    for r in results:
        assert r["seconds_per_step"] > 0 and r["images_per_s"] == pytest.approx(1 / r["seconds_per_step"], rel=0.01)
        assert r["epoch_900_s"] == pytest.approx(900 * r["seconds_per_step"], rel=0.01)
        # XLA counts a tiny UNIT step (both updates) at tens of MFLOPs; a CPU reaches well under 1 TFLOP/s.
        assert 1e6 < r["flops_per_step"] < 1e10 and 0 < r["mfu"] < 1
        # Both are rounded in the report (4 and 5 decimals): on a slow or busy CPU they are ~1e-3, where
        # the rounding alone is several per cent.
        assert r["mfu"] == pytest.approx(r["tflops_per_s"], rel=0.05, abs=1e-4)
    assert report["fastest"]["images_per_s"] == max(r["images_per_s"] for r in results)
    assert report["bfloat16_speedup"] > 0 and report["peak_rss_mib"] > 100


def test_gpu_check_peak_table_knows_the_data_centre_gpus():
    spec = importlib.util.spec_from_file_location("gpu_check", GPU_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    peaks = {kind: module.peak_tflops(kind)[1] for kind in (
        "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA A100-SXM4-80GB", "NVIDIA A100-PCIE-40GB",
        "cpu")}
    assert peaks == {"NVIDIA H100 80GB HBM3": "H100", "NVIDIA H100 PCIe": "H100 PCIe", "NVIDIA H200": "H200",
                     "NVIDIA A100-SXM4-80GB": "A100", "NVIDIA A100-PCIE-40GB": "A100", "cpu": None}
    assert module.peak_tflops("NVIDIA H200")[0] == {"mixed_bfloat16": 989.4, "float32": 494.7}
    assert module.peak_tflops("cpu", override=2.5) == ({"float32": 2.5, "mixed_bfloat16": 2.5}, "flag")
