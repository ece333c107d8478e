"""`annotate-ui` in its own process, as it is deployed (tests of several server processes)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]


def serve_process(store_url: str, audio_root: Path, port: int, *extra: str) -> subprocess.Popen:
    """`annotate-ui` in its own process, answering on PORT."""
    log = tempfile.TemporaryFile()  # a file, not a pipe: a pipe nobody reads would block the server once full
    proc = subprocess.Popen([sys.executable, "-c", "from annotate_ui.cli import main; main()", "--db", store_url,
                             "--audio-root", str(audio_root), "--port", str(port), *extra], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)

    def output() -> str:
        log.seek(0)
        return log.read().decode(errors="replace")[-2000:]

    # each process imports Gradio and builds the app (slow on a busy machine)
    return wait_until_serving(proc, port, 300, output)


def wait_until_serving(proc: subprocess.Popen, port: int, timeout_s: float, output) -> subprocess.Popen:
    """PROC once it answers HTTP on PORT; RuntimeError with OUTPUT() (its log, or where it is) when it
    exits first or stays silent for TIMEOUT_S (then it is killed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"annotate-ui exited with {proc.returncode}: {output()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
            return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError(f"annotate-ui did not answer within {timeout_s:.0f} s: {output()}")
