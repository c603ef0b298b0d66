"""The device runtime's receive path (unframer, session, command server) under libFuzzer with
AddressSanitizer and UndefinedBehaviorSanitizer, for one million inputs. Any crash, sanitizer
report, leak, hang, or malformed byte the device sends (the harness checks every reply frame)
fails the test. Harness: tests/fuzz/fuzz_device_runtime.c."""

import shutil
import subprocess
from pathlib import Path

import pytest

from rpc_test_device import RUNTIME_DIR, runtime_sources

FUZZ_DIR = Path(__file__).resolve().parent / "fuzz"
CLANG = "clang-14"
RUNS = 1_000_000

pytestmark = pytest.mark.slow


def _build(tmp_path: Path) -> Path:
    if shutil.which(CLANG) is None:
        pytest.skip(f"{CLANG} is not installed (apt-get install clang-14 libclang-rt-14-dev)")
    program = tmp_path / "fuzz_device_runtime"
    command = [CLANG, "-std=c99", "-O2", "-g", "-fsanitize=fuzzer,address,undefined",
               "-fno-sanitize-recover=undefined",
               # small packets reach the size limits (TOO_LARGE, oversized frames) often
               "-DMTP_MAX_PACKET=128",
               f"-I{RUNTIME_DIR / 'include'}", f"-I{RUNTIME_DIR / 'src'}", *map(str, runtime_sources()),
               str(FUZZ_DIR / "fuzz_model.c"), str(FUZZ_DIR / "fuzz_device_runtime.c"), "-o", str(program)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 and "fuzzer" in result.stderr and "libclang_rt" in result.stderr:
        pytest.skip(f"{CLANG} has no libFuzzer runtime (apt-get install libclang-rt-14-dev)")
    assert result.returncode == 0, result.stderr
    return program


def test_device_runtime_survives_a_million_fuzzed_inputs(tmp_path):
    program = _build(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = subprocess.run(
        [str(program), f"-runs={RUNS}", "-seed=1", "-max_len=512", "-timeout=10", "-rss_limit_mb=1024",
         f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=900)
    tail = "\n".join(result.stderr.splitlines()[-30:])
    assert result.returncode == 0, f"libFuzzer found a problem (artifact in {tmp_path}):\n{tail}"
    assert f"Done {RUNS} runs" in result.stderr, tail
