"""GPU probes with a faked nvidia-smi / torch child, and the CUDA rules on hand-made facts."""

import json
from dataclasses import replace

import pytest

from diagnostics.context import CommandResult, Context, Options
from diagnostics.findings import Status
from diagnostics.probes import gpu
from diagnostics.probes.environment import TorchBuild
from diagnostics.probes.gpu import CudaDevice, DriverFacts, GpuInfo, TorchCudaFacts
from diagnostics.rules import cuda

from .rules_helpers import evaluate

SMI_QUERY = "NVIDIA GeForce RTX 3090, 470.82.01, 24576, 8.6\n"
SMI_HEADER = "| NVIDIA-SMI 470.82.01    Driver Version: 470.82.01    CUDA Version: 11.4     |\n"
CUDA_TORCH = TorchBuild(installed=True, version="2.1.2+cu121", kind="cuda", cuda="12.1", source="version suffix")
CPU_TORCH = TorchBuild(installed=True, version="2.13.0+cpu", kind="cpu", source="version suffix")
DRIVER_470 = DriverFacts("ok", driver_version="470.82.01", driver_cuda="11.4",
                         gpus=(GpuInfo("NVIDIA GeForce RTX 3090", "470.82.01", "24576", "8.6"),))
NO_DRIVER = DriverFacts("not found", nvidia_smi_error="FileNotFoundError: not found")
DEVICE = CudaDevice(index=0, name="NVIDIA GeForce RTX 3090", capability="8.6", total_memory=25447170048)


def fake_runner(table):
    calls = []

    def run(argv, timeout, env=None):
        calls.append(list(argv))
        key = argv[0] if argv[0] != "nvidia-smi" or len(argv) == 1 else "nvidia-smi-query"
        value = table.get(key)
        if value is None:
            return CommandResult(None, error="FileNotFoundError: not found")
        return value
    run.calls = calls
    return run


def test_probe_driver_parses_nvidia_smi():
    runner = fake_runner({"nvidia-smi-query": CommandResult(0, SMI_QUERY), "nvidia-smi": CommandResult(0, SMI_HEADER)})
    facts = gpu.probe_driver(Context(Options(), environ={}, runner=runner))
    assert facts.present and facts.driver_version == "470.82.01" and facts.driver_cuda == "11.4"
    assert facts.gpus[0].compute_cap == "8.6"
    assert facts.to_dict()["gpus"] == [{"name": "NVIDIA GeForce RTX 3090", "driver_version": "470.82.01",
                                        "memory_mib": "24576", "compute_cap": "8.6"}]


def test_probe_driver_without_nvidia_smi_reports_not_found():
    facts = gpu.probe_driver(Context(Options(), environ={}, runner=fake_runner({})))
    assert facts.nvidia_smi == "not found" and facts.gpus == ()
    data = facts.to_dict()
    assert list(data) == ["nvidia_smi", "driver_version", "driver_cuda", "gpus", "proc_driver", "device_nodes",
                          "nvidia_smi_error", "present"]
    assert data["gpus"] == [] and data["nvidia_smi_error"] == "FileNotFoundError: not found"


def test_probe_torch_cuda_reads_the_child_json_and_survives_a_timeout():
    payload = {"imported": True, "version": "2.1.2+cu121", "available": True, "devices": [DEVICE.to_dict()],
               "arch_list": ["sm_86"]}
    ctx = Context(Options(), environ={}, python="py",
                  runner=fake_runner({"py": CommandResult(0, "noise\n" + json.dumps(payload) + "\n")}))
    facts = gpu.probe_torch_cuda(ctx, True)
    assert facts.devices == (DEVICE,)
    assert facts.to_dict() == dict(payload, stderr_tail="")  # the child's JSON, as the report writes it
    assert gpu.probe_torch_cuda(ctx, False) is None
    hung = Context(Options(timeout=0.1), environ={}, python="py",
                   runner=fake_runner({"py": CommandResult(None, timed_out=True, error="timed out after 0.1 s")}))
    data = gpu.probe_torch_cuda(hung, True)
    assert data.imported is False and data.timed_out is True
    assert data.to_dict() == {"imported": False, "probe_error": "timed out after 0.1 s", "timed_out": True}


def test_torch_cuda_facts_keep_a_reported_none_and_the_child_key_order():
    child = {"imported": True, "version": "2.13.0+cpu", "cuda_runtime": None, "compiled_with_cuda": False,
             "arch_list": [], "available": False, "devices": []}
    facts = TorchCudaFacts.from_child(child, stderr_tail="")
    assert facts.cuda_runtime is None and facts.devices == ()
    assert list(facts.to_dict().items()) == list(dict(child, stderr_tail="").items())
    failed = TorchCudaFacts.from_child({"imported": False, "import_error": "ImportError: libcudnn"}, stderr_tail="x")
    assert failed.to_dict() == {"imported": False, "import_error": "ImportError: libcudnn", "stderr_tail": "x"}


def test_torch_cuda_script_runs_in_a_real_child():
    """The child script itself, on this machine's torch (CPU machines: available False, no devices)."""
    pytest.importorskip("torch")
    ctx = Context(Options(timeout=120))
    data = gpu.probe_torch_cuda(ctx, True)
    assert data.imported is True and isinstance(data.available, bool)
    assert data.devices == () or data.available


def test_without_gpu_every_cuda_check_skips_with_the_reason():
    facts = dict(torch_build=CUDA_TORCH, gpu_driver=NO_DRIVER, torch_cuda=None, environ={}, options=Options())
    for f in (evaluate("cuda.available", **facts), evaluate("cuda.driver", **facts), evaluate("cuda.arch", **facts)):
        assert f.status is Status.SKIP and "CUDA checks did not run" in f.summary


def test_cpu_torch_on_a_gpu_machine_fails_with_the_reinstall_command():
    f = evaluate("cuda.available", torch_build=CPU_TORCH, gpu_driver=DRIVER_470, torch_cuda=None, environ={},
                 options=Options())
    assert f.status is Status.FAIL and f.blocking
    [step] = f.fix_steps
    assert step.lang == "shell" and step.code == ("pip install --force-reinstall torch==2.13.0 "
                                                  "--index-url https://download.pytorch.org/whl/cu118")


def test_cuda_visible_devices_empty_hides_the_gpu():
    torch_cuda = TorchCudaFacts(imported=True, available=False, devices=())
    f = evaluate("cuda.available", torch_build=CUDA_TORCH, gpu_driver=DRIVER_470, torch_cuda=torch_cuda,
                 environ={"CUDA_VISIBLE_DEVICES": ""}, options=Options())
    assert f.status is Status.FAIL and "CUDA_VISIBLE_DEVICES" in f.summary


def test_cuda_available_ok_lists_devices():
    torch_cuda = TorchCudaFacts(imported=True, available=True, devices=(DEVICE,), version="2.1.2+cu121",
                                cuda_runtime="12.1")
    f = evaluate("cuda.available", torch_build=CUDA_TORCH, gpu_driver=DRIVER_470, torch_cuda=torch_cuda, environ={},
                 options=Options())
    assert f.status is Status.OK and "RTX 3090 (sm_86, 23.7 GiB)" in f.summary


@pytest.mark.parametrize("driver_version, driver_cuda, runtime, status", [
    ("470.82.01", "11.4", "12.1", Status.FAIL),   # 12.x needs >= 525.60.13
    ("525.60.13", "12.0", "12.1", Status.WARN),   # minor-version compatibility
    ("550.54.14", "12.4", "12.1", Status.OK),
    ("450.80.02", "11.0", "11.8", Status.WARN),
    ("440.33.01", "10.2", "11.3", Status.FAIL),
])
def test_driver_vs_torch_cuda_runtime(driver_version, driver_cuda, runtime, status):
    driver = replace(DRIVER_470, driver_version=driver_version, driver_cuda=driver_cuda)
    torch = replace(CUDA_TORCH, cuda=runtime, version=f"2.1.2+cu{runtime.replace('.', '')}")
    f = evaluate("cuda.driver", torch_build=torch, gpu_driver=driver)
    assert f.status is status
    if status is Status.FAIL:
        assert "too old" in f.summary and "download.pytorch.org" in f.fix


@pytest.mark.parametrize("arch_list, capability, status", [
    (["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], "8.6", Status.OK),
    (["sm_37", "sm_50", "sm_60", "sm_70", "sm_75"], "8.6", Status.FAIL),
    (["sm_70", "sm_80", "compute_80"], "8.9", Status.OK),  # PTX JIT covers newer
    (["sm_80", "sm_86", "sm_90"], "12.0", Status.FAIL),
])
def test_arch_list_must_cover_the_gpu(arch_list, capability, status):
    torch_cuda = TorchCudaFacts(imported=True, devices=(replace(DEVICE, capability=capability),),
                                arch_list=tuple(arch_list), kernel_ok=True)
    f = evaluate("cuda.arch", torch_cuda=torch_cuda, gpu_driver=DRIVER_470)
    assert f.status is status
    if status is Status.FAIL:
        assert "no kernel image" in f.summary


def test_torch_index_for_driver_cuda():
    assert cuda.torch_index_for("11.4") == "cu118"
    assert cuda.torch_index_for("12.2") == "cu121"
    assert cuda.torch_index_for("12.8") == "cu128"
    assert cuda.torch_index_for(None) == "cu130"
