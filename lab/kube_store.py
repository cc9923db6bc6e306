"""A template of containerd's image store, made once per set of image archives (set-up, `make images`), so that a
new lab root starts with every image already unpacked: a hard-linked copy of the template instead of a minute of
`ctr images import`.

The template is made by a containerd of its own (no CRI plugin, no network, its socket and state in a temporary
folder) that imports the archives and stops. A lab's store is seeded from it by `cp -al` (content blobs and unpacked
layers are never written again once committed, so sharing their inodes is safe) with each bolt database copied, not
linked, because containerd writes those.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from lab.jars import cache_root

COMPLETE = ".complete"
START_TIMEOUT_S = 30.0
IMPORT_TIMEOUT_S = 600.0
KEEP_VERSIONS = 4  # versions kept per cached image or store: one per checkout of other sources sharing the cache


class StoreError(RuntimeError):
    """The template could not be made; the message says what failed."""


def template_dir(archives: Sequence[Path]) -> Path:
    """The template for exactly these archives (their names carry the images' keys)."""
    key = hashlib.sha256("\n".join(sorted(a.name for a in archives)).encode()).hexdigest()[:12]
    return cache_root() / "containerd-store" / key


def containerd_config(root: Path, state: Path, socket: Path) -> str:
    """A containerd that only stores images: overlayfs as the lab's, no CRI (pure)."""
    return "\n".join(
        [
            "version = 2",
            f'root = "{root}"',
            f'state = "{state}"',
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",'
            ' "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",'
            ' "io.containerd.snapshotter.v1.devmapper"]',
            "[grpc]",
            f'  address = "{socket}"',
            "[ttrpc]",
            f'  address = "{socket}.ttrpc"',
            '[plugins."io.containerd.internal.v1.opt"]',
            f'  path = "{state / "opt"}"',
            "",
        ]
    )


def _ctr(socket: Path, *args: str, timeout: float) -> None:
    argv = ["ctr", "--address", str(socket), "-n", "k8s.io", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise StoreError(f"ctr {' '.join(args[:2])} took over {timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise StoreError(f"ctr {' '.join(args)} failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")


def ensure_template(archives: Sequence[Path]) -> Path:
    """The template store holding every image of `archives`, made when missing; other templates are removed."""
    target = template_dir(archives)
    if (target / COMPLETE).is_file():
        return target
    partial = target.with_name(f"{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="drtopo-store-") as scratch:
        work = Path(scratch)
        socket, config = work / "containerd.sock", work / "config.toml"
        config.write_text(containerd_config(partial, work / "state", socket))
        log = open(work / "containerd.log", "wb")  # noqa: SIM115 - closed with the process below
        daemon = subprocess.Popen(["containerd", f"--config={config}"], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not socket.exists():
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise StoreError(f"containerd for the image template did not start: {_tail(work)}")
                time.sleep(0.1)
            for archive in archives:
                _ctr(socket, "images", "import", str(archive), timeout=IMPORT_TIMEOUT_S)
        finally:
            daemon.terminate()
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(30)
            log.close()
    (partial / COMPLETE).write_text("\n".join(a.name for a in archives) + "\n")
    others = (p for p in target.parent.iterdir() if p.is_dir() and p not in (partial, target))
    for other in stale_versions(others, target):
        shutil.rmtree(other, ignore_errors=True)
    partial.rename(target)
    return target


def stale_versions(paths: Iterable[Path], current: Path, keep: int = KEEP_VERSIONS) -> list[Path]:
    """The cached versions beside `current` beyond the `keep` newest (by modification time; `current` always kept):
    checkouts of different sources that share one cache each keep the version their lab loads (pure but for stat)."""
    others = sorted((p for p in paths if p != current), key=lambda p: p.stat().st_mtime, reverse=True)
    return others[max(keep - 1, 0) :]


def _tail(work: Path) -> str:
    path = work / "containerd.log"
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-3:]) if path.is_file() else "no log"


def seed(store: Path, archives: Sequence[Path]) -> bool:
    """Make `store` a copy of the template for `archives` when it does not hold that template yet (and the template
    exists); True when it was seeded. A store seeded from another template is replaced."""
    template = template_dir(archives)
    marker = store / COMPLETE
    if not (template / COMPLETE).is_file():
        return False
    if marker.is_file() and marker.read_text() == (template / COMPLETE).read_text():
        return False
    shutil.rmtree(store, ignore_errors=True)
    store.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-al", str(template), str(store)], check=True, capture_output=True, timeout=300)
    for database in store.rglob("*.db"):
        database.unlink()
        shutil.copy2(template / database.relative_to(store), database)
    return True
