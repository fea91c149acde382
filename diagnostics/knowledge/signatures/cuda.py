"""CUDA and numerics: drivers, kernels, memory, NaNs."""

from __future__ import annotations

from typing import List

from .base import Cause, Need, Pattern, Signature

SIGNATURES: List[Signature] = [
    Signature(
        "K12", "cuda-no-kernel", "torch has no kernels for this GPU architecture",
        patterns=(
            Pattern(r"no kernel image is available for execution on the device", scope="any"),
            Pattern(r"with CUDA capability sm_(?P<sm>\d+) is not compatible with the current PyTorch installation",
                    scope="any", label="torch warning at CUDA init"),
        ),
        cause="The installed torch (or a CUDA extension) was compiled without code for this GPU's compute "
              "capability, e.g. an old cu10x build on an sm_86 card, or a pre-12.8 build on Blackwell (sm_120).",
        fix="Install a torch build whose arch list covers the GPU (`torch.cuda.get_arch_list()`), e.g. a newer "
            "CUDA wheel from https://download.pytorch.org/whl/.",
        causes=(
            Cause("K12.a", "torch's arch list lacks this GPU",
                  (Need("torch has no kernels for a visible GPU", ("cuda.arch",)),),
                  "Install a torch build for this GPU's compute capability."),
        ),
        links=("https://github.com/pytorch/pytorch/issues/31285",),
    ),
    Signature(
        "K13", "cuda-unavailable", "torch cannot use CUDA",
        patterns=(
            Pattern(r"Torch not compiled with CUDA enabled", label="CPU-only torch build"),
            Pattern(r"The NVIDIA driver on your system is too old \(found version (?P<found>\d+)\)", scope="any",
                    label="driver older than torch's CUDA runtime"),
            Pattern(r"Found no NVIDIA driver on your system", label="CUDA torch, no driver visible"),
            Pattern(r"Torch is not able to use GPU", scope="any", label="AUTOMATIC1111 launch check"),
            Pattern(operation="cuda", exception=r"RuntimeError|AssertionError|AcceleratorError|CudaError|"
                    r"DeferredCudaCallError", label="an error while initialising or using CUDA"),
            Pattern(r"CUDA driver initialization failed|no CUDA-capable device is detected", scope="any"),
        ),
        cause="torch.cuda.is_available() is False: a CPU-only torch build, a driver older than torch's CUDA "
              "runtime needs, CUDA_VISIBLE_DEVICES hiding the GPUs, or a container started without GPU access.",
        fix="Install the torch build matching the driver (e.g. `pip install torch --index-url "
            "https://download.pytorch.org/whl/cu121`), upgrade the driver, or run the container with --gpus all.",
        causes=(
            Cause("K13.a", "torch build, driver or device visibility prevents CUDA",
                  (Need("CUDA is not usable by this torch", ("cuda.available",)),),
                  "See the cuda.available finding's fix."),
            Cause("K13.b", "The NVIDIA driver is too old for torch's CUDA runtime",
                  (Need("the driver is older than the CUDA runtime needs", ("cuda.driver",)),),
                  "Upgrade the driver or install a torch build for an older CUDA."),
        ),
        links=("https://github.com/pytorch/pytorch/issues/30664",
               "https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html"),
    ),
    Signature(
        "K14", "cuda-oom", "CUDA out of memory",
        patterns=(
            Pattern(r"CUDA out of memory\. Tried to allocate (?P<size>[\d.]+ [GMK]iB)", scope="any"),
            Pattern(r"torch\.(?:cuda\.)?OutOfMemoryError"),
        ),
        cause="The model (about 4 GB of fp32 weights for SD 1.x, plus activations) does not fit in the free GPU "
              "memory; ldm's load_model_from_config moves the fp32 model with model.cuda(), and other processes "
              "may hold memory.",
        fix="Load in half precision (`model.half()`, --precision autocast), lower batch size/resolution, free the "
            "GPU from other processes, or set PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True.",
        causes=(
            Cause("K14.a", "Not enough free GPU memory for the model",
                  (Need("free GPU memory is below what the model needs", ("cuda.memory",)),),
                  "Use fp16 weights or a GPU with more free memory."),
        ),
        links=("https://github.com/CompVis/stable-diffusion/issues/760",),
    ),
    Signature(
        "K25", "fp16-nans", "NaNs in half precision (black images)",
        patterns=(
            Pattern(r"(?:NansException: )?A tensor with (?:all )?NaNs was produced in (?P<where>Unet|VAE)", scope="any"),
        ),
        cause="fp16 overflow, typically in the VAE, or on GPUs without proper fp16 (GTX 16xx); bare ldm shows no "
              "error, only black images.",
        fix="Run the VAE in fp32 (--no-half-vae), or everything (--no-half); use an fp16-fixed VAE; upcast "
            "attention.",
        causes=(
            Cause("K25.a", "The checkpoint itself holds non-finite or half-precision weights",
                  (Need("the checkpoint has NaN/Inf tensors", ("ckpt.nonfinite",)),
                   Need("the checkpoint's dtype", ("ckpt.dtype",), confirms=(), refutes=(), required=False)),
                  "Use another copy of the checkpoint; load it in fp32."),
        ),
        links=("https://github.com/carson-katri/dream-textures/issues/691",),
    ),
]
