"""pytest fixtures for Azurite, the Azure Storage emulator (blob service only): the Event Hubs checkpoint store.

Load it from a conftest with ``pytest_plugins = ["streampod.pytest_azurite"]``.

- ``azurite`` (session): a started :class:`Azurite` on a free loopback port, in-memory, installed on
  first use by ``scripts/install-azurite.sh`` (npm, pinned, cached under ~/.cache/streampod).
- ``blob_container`` (function): a new empty container's name in it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

INSTALL_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "install-azurite.sh"
#: Azurite's well-known development account (public, documented, only valid against the emulator).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
READY_TIMEOUT_S = 60.0


class Azurite:
    """One Azurite blob server as a child process (its own process group)."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="streampod-azurite-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.port = 0

    @property
    def log_path(self) -> Path:
        return self._dir / "azurite.log"

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.blob_endpoint};"
        )

    def start(self) -> Azurite:
        binary = subprocess.run(["bash", str(INSTALL_SCRIPT)], capture_output=True, text=True, timeout=600, check=False)
        if binary.returncode != 0:
            raise RuntimeError(f"installing Azurite failed:\n{binary.stderr[-2000:]}")
        command = [
            binary.stdout.strip(), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
            "--skipApiVersionCheck", "--loose", "--disableTelemetry",
        ]  # fmt: skip
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=self._dir,
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            found = re.search(r"listens on http://127\.0\.0\.1:(\d+)", self.log_path.read_text(errors="replace"))
            if found:
                self.port = int(found.group(1))
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        output = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"Azurite did not start (waited up to {READY_TIMEOUT_S:.0f} s):\n{output}")

    def create_container(self, name: str | None = None) -> str:
        from azure.storage.blob import BlobServiceClient

        name = name or f"c{uuid.uuid4().hex[:20]}"
        with BlobServiceClient.from_connection_string(self.connection_string) as service:
            service.create_container(name)
        return name

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture(scope="session")
def azurite(request: pytest.FixtureRequest) -> Iterator[Azurite]:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("Azurite needs Node.js and npm, and neither is on PATH")
    server = Azurite().start()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"streampod: Azurite blob service at {server.blob_endpoint}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def blob_container(azurite: Azurite) -> str:
    return azurite.create_container()
