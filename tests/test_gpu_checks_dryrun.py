"""Dry run of scripts/gpu_checks.sh in an environment built like the device machine's (issue #20).

The device's python3 has torch and CuPy but no SpikingJelly (nor loguru), and no network: the script
must install the carried wheels (pip --target, no index) and then collect and run the GPU tests. Here:

* the interpreter is this one, with an import hook (a ``sitecustomize`` on PYTHONPATH) that hides the
  packages the device lacks from this environment's site-packages; a folder added later to PYTHONPATH
  (the script's ``--target`` folder) is still searched, as on the device;
* the "carried" wheels are built in a temporary folder from the installed distributions (their real
  files: no network, no download), and pip runs with no index, no configuration and a dead proxy;
* ``CUDA_VISIBLE_DEVICES=""``: the script's no-CUDA path, the one CI can see: every selected GPU test
  must skip "needs CUDA" and the script exit 2.

Proves: the set-up installs the wheels and the imports then succeed from the install folder; pytest
collects the GPU test files; the ``gpu`` selection is non-empty, holds both kernel test files and only
tests gated by the CUDA marks; the results file carries the header (commit, device, versions). And, without
the wheels, the script stops before pytest with a message naming SpikingJelly and scripts/gpu_wheels.sh.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_checks.sh"
# in this environment but not on the device (/work/.library/device/KINDS.md's package list)
HIDDEN = ("spikingjelly", "loguru", "norse", "snntorch", "nir", "nirtorch")
CARRIED = ("spikingjelly", "loguru")  # what scripts/gpu_wheels.sh downloads

SITECUSTOMIZE = '''
import importlib.machinery, os, sys

_HIDDEN = frozenset(os.environ["DRYRUN_HIDDEN"].split(","))
_FROM = tuple(os.path.realpath(p) for p in os.environ["DRYRUN_HIDDEN_FROM"].split(os.pathsep))


class _DeviceLike:
    """Top-level imports of the hidden packages search sys.path without this environment's site-packages."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if path is not None or name not in _HIDDEN:
            return None
        dirs = [p for p in sys.path if not os.path.realpath(p or ".").startswith(_FROM)]
        spec = importlib.machinery.PathFinder.find_spec(name, dirs)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r} (hidden: the device machine has none)", name=name)
        return spec


sys.meta_path.insert(0, _DeviceLike)
'''


def _wheel_from_installed(name: str, dest: Path) -> Path:
    """A wheel of the installed distribution ``name`` (its recorded files; fresh RECORD), like a downloaded one."""
    dist = metadata.distribution(name)
    version = dist.version
    base = Path(dist.locate_file(""))
    skip = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}
    files = [f for f in dist.files or () if "__pycache__" not in f.parts and not (
        f.parts[0].endswith(".dist-info") and f.name in skip) and not str(f).startswith("..")]
    dist_info = next(f.parts[0] for f in dist.files or () if f.parts[0].endswith(".dist-info"))
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as zf:
        for f in files:
            data = (base / f).read_bytes()
            zf.writestr(str(f), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{f},sha256={digest},{len(data)}")
        record.append(f"{dist_info}/RECORD,,")
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture(scope="module")
def device_like(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("device")
    hide = tmp / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(SITECUSTOMIZE)
    wheels = tmp / "wheels"
    wheels.mkdir()
    for name in CARRIED:
        _wheel_from_installed(name, wheels)
    (wheels / "COMMIT").write_text("0123456789abcdef (dry run)\n")
    site_packages = {str(Path(metadata.distribution(n).locate_file("")).resolve()) for n in HIDDEN
                     if _installed(n)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "GPU_CHECKS_"))}
    env.update(PY=sys.executable, PYTHONPATH=str(hide), DRYRUN_HIDDEN=",".join(HIDDEN),
               DRYRUN_HIDDEN_FROM=os.pathsep.join(sorted(site_packages)), CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1", PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", no_proxy="",
               GPU_CHECKS_SITE=str(tmp / "site"))
    return {"tmp": tmp, "wheels": wheels, "env": env}


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def _run(args: list[str], env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_hook_hides_spikingjelly_as_on_the_device(device_like: dict) -> None:
    probe = [sys.executable, "-c", "import spikingjelly"]
    done = _run(probe, device_like["env"], 60)
    assert done.returncode != 0 and "hidden: the device machine has none" in done.stderr


def test_without_the_wheels_the_script_stops_before_pytest(device_like: dict, tmp_path: Path) -> None:
    env = dict(device_like["env"], GPU_CHECKS_WHEELS=str(tmp_path / "none"), OUT=str(tmp_path / "out"))
    done = _run(["bash", str(SCRIPT), "tests"], env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no wheels in" in done.stderr and "spikingjelly" in done.stderr and "gpu_wheels.sh" in done.stderr
    assert not list((tmp_path / "out").glob("*junit*"))  # pytest never ran


@pytest.mark.slow
def test_dry_run_installs_the_wheels_collects_and_skips_every_gpu_test(device_like: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(device_like["env"], GPU_CHECKS_WHEELS=str(device_like["wheels"]), OUT=str(out))
    done = _run(["bash", str(SCRIPT), "tests"], env, 240)
    log = done.stdout + done.stderr
    assert done.returncode == 2, log  # no CUDA: nothing was checked, and the script says so
    m = re.search(r"no CUDA here: (\d+) GPU tests selected, all skipped 'needs CUDA'", log)
    assert m and int(m.group(1)) > 700, log

    # the JUnit file: every selected test skipped for want of CUDA, both kernel files among them
    import xml.etree.ElementTree as ET

    cases = list(ET.parse(out / "gpu-tests-junit.xml").getroot().iter("testcase"))
    assert len(cases) == int(m.group(1))
    reasons = {c.find("skipped").get("message", "") for c in cases if c.find("skipped") is not None}
    assert len([c for c in cases if c.find("skipped") is not None]) == len(cases)
    assert reasons and all(r.startswith("needs CUDA") for r in reasons), reasons
    classes = {c.get("classname", "") for c in cases}
    for module in ("tests.test_kernels_gpu", "tests.test_kernels_localzo_gpu", "tests.test_engine"):
        assert any(c.startswith(module) for c in classes), module

    # the results file: header with commit, device, versions, the estimate, then the log and the summary
    (results,) = out.glob("gpu-tests-*-no-CUDA.txt")
    text = results.read_text()
    assert "commit: 0123456789abcdef (dry run)" in text and "device: none" in text
    assert "spikingjelly 2.0.0" in text and "estimated time of this step" in text and "## summary" in text

    # the wheels went into the --target folder, and the hidden packages come from there
    site = Path(env["GPU_CHECKS_SITE"])
    probe = _run([sys.executable, "-c", "import loguru, spikingjelly; print(spikingjelly.__file__)"],
                 dict(env, PYTHONPATH=f"{site}{os.pathsep}{env['PYTHONPATH']}"), 60)
    assert probe.returncode == 0 and Path(probe.stdout.strip()).is_relative_to(site), probe.stderr


def test_the_printed_run_calls_fit_the_device_tool() -> None:
    """The header's device `run` calls: commands of <= 2000 characters that carry .whl, timeouts <= 600 s;
    the README gives the same calls."""
    calls = re.findall(r'run\(command="([^"]+)", carry=\[([^\]]*)\], timeout_s=(\d+)\)', SCRIPT.read_text())
    assert [c[0] for c in calls] == ["bash scripts/gpu_checks.sh tests", "bash scripts/gpu_checks.sh bench"]
    for command, carry, timeout in calls:
        assert len(command) <= 2000 and carry == '".whl"' and int(timeout) <= 600
    readme = (ROOT / "README.md").read_text()
    for command, carry, timeout in calls:
        assert f'run(command="{command}", carry=[{carry}], timeout_s={timeout})' in readme


def test_gpu_test_files_and_sticky_fault_detection() -> None:
    """The script's file selection holds the GPU files (not the CPU twins); conftest knows the sticky faults."""
    import importlib.util

    from tests.conftest import is_sticky_cuda_error

    spec = importlib.util.spec_from_file_location("gpu_checks_driver", ROOT / "scripts" / "gpu_checks.py")
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    files = driver.gpu_test_files()
    for name in ("test_kernels_gpu.py", "test_kernels_localzo_gpu.py", "test_engine.py", "test_gradients_sparse.py"):
        assert f"tests/{name}" in files
    assert "tests/test_kernels_cpu.py" not in files and "tests/test_kernels_localzo.py" not in files

    assert is_sticky_cuda_error("torch.AcceleratorError: CUDA error: an illegal memory access was encountered")
    assert is_sticky_cuda_error("CUDARuntimeError: cudaErrorIllegalAddress: an illegal memory access was encountered")
    assert is_sticky_cuda_error("CUDADriverError: CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure")
    assert not is_sticky_cuda_error("AssertionError: Tensor-likes are not close!")
