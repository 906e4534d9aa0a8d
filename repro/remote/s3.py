"""The `s3://bucket/prefix` backend: any S3-compatible store (AWS, MinIO, Ceph, SeaweedFS, R2).

The only module that imports boto3 (lazily: only push, pull and remote refs load it). The
endpoint comes from the remote's configuration, else from boto3 itself (`AWS_ENDPOINT_URL`,
`AWS_ENDPOINT_URL_S3`, the profile); credentials only from boto3's standard chain, never
passed or stored by repro. Timeouts and retries are bounded, so a dead endpoint is an error in
seconds. Creates are conditional (`If-None-Match: *`): the store refuses to overwrite.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from repro import errors
from repro.remote.store import CHUNK, Location, RemoteNotFound, Stats, too_big

CONNECT_TIMEOUT_S = 3
META_READ_TIMEOUT_S = 5  # listings, HEADs, manifests: a silent endpoint fails in ~10 s
META_ATTEMPTS = 2
READ_TIMEOUT_S = 60  # blob transfers: a large upload may take a while to be acknowledged
ATTEMPTS = 3
INSTALL_HINT = "pip install 'repro[s3]'"


def _boto3() -> Any:
    try:
        import boto3
        import botocore.config
    except ImportError as e:
        raise errors.RemoteError("s3:// remotes need boto3, which is not installed",
                                 hint=INSTALL_HINT) from e
    return boto3, botocore.config


def _md5(digest: Any) -> str:
    return base64.b64encode(digest.digest()).decode("ascii")


class S3Backend:
    """Two clients: `meta` (listings, HEADs, small objects) gives up on a silent endpoint in
    seconds; `data` (blob transfers) allows a slow answer to a large upload."""

    def __init__(self, where: Location) -> None:
        boto3, bconfig = _boto3()
        self.url = where.url
        self.bucket = where.bucket
        self.prefix = f"{where.prefix}/" if where.prefix else ""
        self.stats = Stats()
        self._lock = threading.Lock()
        self._data: Any = None
        endpoint = (where.endpoint or os.environ.get("AWS_ENDPOINT_URL_S3")
                    or os.environ.get("AWS_ENDPOINT_URL") or None)
        if endpoint and "@" in endpoint.partition("://")[2].partition("/")[0]:
            # Shown in every connection error (by botocore too): never echo it.
            raise errors.UsageError(
                f"the S3 endpoint for {self.url} holds credentials (user:password@)",
                hint="remove them from AWS_ENDPOINT_URL / the remote's `endpoint`: repro "
                     "reads credentials only from the standard AWS chain")

        def make(read_timeout: float, attempts: int) -> Any:
            cfg = bconfig.Config(
                connect_timeout=CONNECT_TIMEOUT_S, read_timeout=read_timeout,
                retries={"max_attempts": attempts, "mode": "standard"},
                max_pool_connections=32,
                # Most S3-compatible servers want path-style addressing; AWS takes both.
                s3={"addressing_style": "path" if endpoint else "auto"},
                # Checksums on every request (botocore >= 1.36) are not understood by every
                # S3-compatible server; ask for them only where an operation requires one.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            try:
                session = boto3.session.Session()
                return session.client(
                    "s3", endpoint_url=where.endpoint or None,
                    region_name=where.region or session.region_name or "us-east-1", config=cfg)
            except Exception as e:  # a malformed endpoint URL, an unknown profile
                raise errors.RemoteError(
                    f"cannot set up S3 for {self.url}: {_first_line(e)}",
                    hint="check AWS_ENDPOINT_URL, AWS_PROFILE and the remote's endpoint in "
                         "the configuration") from e

        self._make = make
        self.client = make(META_READ_TIMEOUT_S, META_ATTEMPTS)

    @property
    def data(self) -> Any:
        with self._lock:
            if self._data is None:
                self._data = self._make(READ_TIMEOUT_S, ATTEMPTS)
            return self._data

    def _key(self, key: str) -> str:
        return self.prefix + key

    def check(self) -> None:
        self.stats.count("list")
        self._call("list", self.client.list_objects_v2, Bucket=self.bucket,
                   Prefix=self._key("runs/"), MaxKeys=1)

    def list(self, prefix: str) -> Iterator[str]:
        token: str | None = None
        cut = len(self.prefix)
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self._key(prefix)}
            if token:
                kwargs["ContinuationToken"] = token
            self.stats.count("list")
            page = self._call(prefix, self.client.list_objects_v2, **kwargs)
            for item in page.get("Contents", ()):
                yield str(item["Key"])[cut:]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return

    def exists(self, key: str) -> bool:
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        self.stats.count("head")
        try:
            head = self._call(key, self.client.head_object, Bucket=self.bucket,
                              Key=self._key(key))
        except RemoteNotFound:
            return None
        return int(head.get("ContentLength") or 0)

    def delete(self, key: str) -> None:
        self.stats.count("delete")
        self._call(key, self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def put_bytes(self, key: str, data: bytes) -> bool:
        self.stats.count("put", up=len(data))
        return self._put(key, data, _md5(hashlib.md5(data)))

    def put_file(self, key: str, path: Path) -> bool:
        size = path.stat().st_size
        self.stats.count("put", up=size)
        digest = hashlib.md5()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        with open(path, "rb") as body:
            return self._put(key, body, _md5(digest))

    def _put(self, key: str, body: Any, content_md5: str) -> bool:
        # Content-MD5: the server refuses a body that does not match (BadDigest), so a push
        # killed mid-upload can never leave a truncated object behind, which create-only
        # writes would then keep for good (seen with SeaweedFS).
        try:
            self._call(key, self.data.put_object, Bucket=self.bucket, Key=self._key(key),
                       Body=body, IfNoneMatch="*", ContentMD5=content_md5)
        except _Exists:
            return False
        return True

    def get_bytes(self, key: str, limit: int) -> bytes:
        response = self._call(key, self.client.get_object, Bucket=self.bucket,
                              Key=self._key(key))
        size = int(response.get("ContentLength") or 0)
        if size > limit:
            response["Body"].close()
            raise errors.RemoteError(f"{self.url}: {key} is {size} bytes, over the {limit} "
                                     "repro reads", hint="the remote's copy is damaged")
        data = bytes(self._read(key, response["Body"].read, limit + 1))
        self.stats.count("get", down=len(data))
        if len(data) > limit:
            raise errors.RemoteError(f"{self.url}: {key} is over the {limit} bytes repro reads",
                                     hint="the remote's copy is damaged")
        return data

    def get_file(self, key: str, dest: Path, limit: int) -> int:
        response = self._call(key, self.data.get_object, Bucket=self.bucket,
                              Key=self._key(key))
        total = 0
        body = response["Body"]
        if int(response.get("ContentLength") or 0) > limit:
            body.close()
            raise too_big(self.url, key, limit)
        with open(dest, "xb") as out:
            while chunk := self._read(key, body.read, min(CHUNK, limit + 1 - total)):
                out.write(chunk)
                total += len(chunk)
                if total > limit:
                    body.close()
                    raise too_big(self.url, key, limit)
        self.stats.count("get", down=total)
        return total

    def _read(self, key: str, read: Any, size: int) -> bytes:
        try:
            return bytes(read(size))
        except Exception as e:  # a connection dropped or timed out mid-body
            raise errors.RemoteError(f"{self.url}: reading {key} failed: {_first_line(e)}",
                                     hint="the endpoint stopped answering; try again") from e

    def _call(self, key: str, fn: Any, **kwargs: Any) -> Any:
        """One S3 call, its failures translated to RemoteError (never a traceback)."""
        from botocore import exceptions as bex

        try:
            return fn(**kwargs)
        except bex.ClientError as e:
            raise self._client_error(key, e) from e
        except (bex.NoCredentialsError, bex.PartialCredentialsError) as e:
            raise errors.RemoteError(
                f"no AWS credentials for {self.url}: {_first_line(e)}",
                hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run "
                     "where an instance role applies") from e
        except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError,
                bex.ConnectionClosedError) as e:
            raise errors.RemoteError(
                f"cannot reach the S3 endpoint {self._endpoint_shown()} for {self.url}: "
                f"{_first_line(e)}",
                hint="check the endpoint (AWS_ENDPOINT_URL or the remote's `endpoint`) and "
                     "your network") from e
        except bex.BotoCoreError as e:
            raise errors.RemoteError(f"{self.url}: S3 request failed: {_first_line(e)}",
                                     hint="check the endpoint, region and credentials") from e

    def _endpoint_shown(self) -> str:
        return str(self.client.meta.endpoint_url)

    def _client_error(self, key: str, e: Any) -> errors.RemoteError:
        err = e.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if code in ("PreconditionFailed", "ConditionalRequestConflict") or status == 412:
            return _Exists(key)
        if code == "NoSuchBucket":
            return errors.RemoteError(
                f"the bucket {self.bucket!r} does not exist at {self._endpoint_shown()}",
                hint=f"create it (aws s3 mb s3://{self.bucket}) or fix the remote URL")
        if e.operation_name in ("HeadObject", "GetObject") and (
                code in ("NoSuchKey", "404", "NotFound") or status == 404):
            return RemoteNotFound(f"{self.url}: {key} does not exist")
        if status == 404:  # a listing: no such bucket, or not an S3 endpoint at all
            return errors.RemoteError(
                f"no bucket {self.bucket!r} at {self._endpoint_shown()} (HTTP 404)",
                hint="check the bucket name and that the endpoint (AWS_ENDPOINT_URL or the "
                     "remote's `endpoint`) is an S3 service")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
                    "ExpiredToken", "TokenRefreshRequired", "InvalidSecurity"):
            return errors.RemoteError(
                f"{self._endpoint_shown()} refused the AWS credentials ({code})",
                hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
        if code == "AccessDenied" or status == 403:
            return errors.RemoteError(
                f"access denied to {self.url} ({code or status})",
                hint="the credentials work but lack permission on this bucket/prefix: ask for "
                     "s3:GetObject, s3:PutObject and s3:ListBucket")
        message = str(err.get("Message", "")) or str(e)
        return errors.RemoteError(f"{self.url}: S3 {e.operation_name} of {key} failed: "
                                  f"{code or status} {message}".rstrip(),
                                  hint="check the endpoint, region and credentials")


class _Exists(errors.RemoteError):
    """The conditional create found the key already there."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key} exists")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
