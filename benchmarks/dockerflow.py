"""The `docker` workload: `docker push` and `docker pull` of a multi-layer image through a
real dockerd, started once per run by the suite (vfs storage, no iptables, no bridge).

The image is made without a builder or a network: a docker-archive tarball written here
(layers of random bytes) and `docker load`ed. 127.0.0.0/8 registries are insecure by
default in dockerd, so plain HTTP works. dockerd gzips every layer on push and gunzips and
extracts on pull, so this workload is bound by dockerd more than by the registry; it shows
that real clients work and what they see end to end.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from benchmarks.registries import terminate

IMAGE = "regd-bench/image:v1"


class DockerError(RuntimeError):
    pass


class Dockerd:
    """A private dockerd on a unix socket; use as a context manager."""

    def __init__(self, workdir: Path, logdir: Path) -> None:
        self.root = workdir / "dockerd"
        self.root.mkdir(parents=True, exist_ok=True)
        self.sock = self.root / "docker.sock"
        self.host = f"unix://{self.sock}"
        argv = [
            "dockerd", "--storage-driver=vfs", "--iptables=false", "--ip6tables=false",
            "--bridge=none", "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"), "-H", self.host,
            "--pidfile", str(self.root / "docker.pid"),
        ]
        with (logdir / "dockerd.log").open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while self.docker("info", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise DockerError("dockerd did not start; see dockerd.log")
            time.sleep(0.5)

    def docker(self, *args: str, check: bool = True,
               timeout: float = 900) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise DockerError(f"docker {' '.join(args)}: {result.stderr.strip()[-400:]}")
        return result

    def stop(self) -> None:
        terminate(self.proc, 30)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dockerd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _layer_tar(index: int, size: int) -> bytes:
    data = os.urandom(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"layer{index}/data.bin")
        info.size = size
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_image(d: Dockerd, workdir: Path, layers: int, layer_size: int) -> int:
    """Loads a `layers`-layer image as IMAGE; returns its uncompressed layer bytes."""
    archive = workdir / "image.tar"
    tars = [_layer_tar(i, layer_size) for i in range(layers)]
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars]
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/nothing"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": f"regd-bench layer {i}"} for i in range(layers)],
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [IMAGE],
                 "Layers": [f"{i}/layer.tar" for i in range(layers)]}]
    with tarfile.open(archive, "w") as out:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        add(config_name, config)
        for i, t in enumerate(tars):
            add(f"{i}/layer.tar", t)
        add("manifest.json", json.dumps(manifest).encode())
    d.docker("load", "-i", str(archive))
    archive.unlink()
    return sum(len(t) for t in tars)


def _remote(addr: str) -> str:
    return f"{addr}/library/bench-docker:v1"


def push(d: Dockerd, addr: str) -> float:
    """`docker push` IMAGE to the registry at `addr`; returns the seconds it took."""
    d.docker("tag", IMAGE, _remote(addr))
    t0 = time.monotonic()
    d.docker("push", _remote(addr))
    return time.monotonic() - t0


def pull(d: Dockerd, addr: str) -> float:
    """Removes every local copy of IMAGE, then `docker pull`s it back from `addr`; returns
    the seconds the pull took. IMAGE is tagged again afterwards for the next registry."""
    d.docker("rmi", _remote(addr), IMAGE)
    t0 = time.monotonic()
    d.docker("pull", _remote(addr))
    seconds = time.monotonic() - t0
    d.docker("tag", _remote(addr), IMAGE)
    d.docker("rmi", _remote(addr))
    return seconds


def ctr(d: Dockerd, namespace: str) -> list[str]:
    """The `ctr` command line for dockerd's own containerd, in `namespace`."""
    found = sorted(d.root.rglob("containerd.sock"))
    if not found:
        raise RuntimeError("no containerd socket under dockerd's root")
    return ["ctr", "--address", str(found[0]), "-n", namespace]


def ctr_pull(command: list[str], ref: str) -> None:
    """`ctr images pull` (containerd's fetch and unpack, the Kubernetes path)."""
    subprocess.run([*command, "images", "pull", "--plain-http", ref], check=True, capture_output=True)


def ctr_forget(command: list[str], ref: str) -> None:
    """Removes the image and all content, so that the next pull fetches every blob.
    `--sync` waits for the garbage collection of the layers' snapshots too: containerd
    does not fetch a layer whose snapshot is still there."""
    subprocess.run([*command, "images", "rm", "--sync", ref], check=True, capture_output=True)
    listed = subprocess.run([*command, "content", "ls", "-q"], check=True, capture_output=True, text=True)
    if listed.stdout.split():
        subprocess.run([*command, "content", "rm", *listed.stdout.split()], capture_output=True)
