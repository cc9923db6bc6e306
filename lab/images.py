"""The lab's container images, built locally with Debian's buildah (no registry is reachable) and cached by inputs.

`python -m lab.images` (the Makefile's `images` target, part of set-up) builds what is missing into `.cache/images/`
as docker archives that the lab's containerd imports (`ctr images import`) when `lab up` starts the cluster:

- `base`: Debian bookworm from Debian's own packages (mmdebstrap minbase: python3, pip, CA certificates);
- `backup`: the project's `Dockerfile`, FROM that base (build arguments: BASE_IMAGE, PG_APT=debian, kubectl of the
  lab's Kubernetes build and a CA bundle served by a file server of this module on loopback);
- `mirrormaker`: the cached Kafka jars (.cache/kafka-jars) on Debian's Java 17 (lab/kube/images/);
- `service`: the service stand-in (lab/service.py) with its psycopg pin (lab/kube/images/).

Each image is tagged `drtopo.lab/<name>:<key>`, the key a digest of everything it is built from (the base's package
list and mirrors; the Dockerfile or Containerfile, the files it copies, the build arguments, the base's key), so a
warm run is a no-op and a change to any input rebuilds that image (buildah's layer cache keeps the unchanged steps).
Older archives of an image are removed once its new one is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lab import jars, kube_build, kube_store
from lab.jars import cache_root

REPO_DIR = Path(__file__).resolve().parent.parent
CONTAINERFILES = Path(__file__).resolve().parent / "kube" / "images"
REGISTRY = "drtopo.lab"
NAMES = ("base", "backup", "mirrormaker", "service")
SUITE = "bookworm"
MIRRORS = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
BASE_PACKAGES = ("ca-certificates", "python3", "python3-pip", "python-is-python3")
# Debian's pip refuses to install into the system Python unless told; in an image that is the place to install.
BASE_ENV = ("PIP_BREAK_SYSTEM_PACKAGES=1", "LANG=C.UTF-8")
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
# The backup image's client tools come from Debian's archive, whose one major for bookworm is this one.
DEBIAN_PG_MAJOR = "15"
BUILD_TIMEOUT_S = 30 * 60
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
MOZILLA_ROOTS = Path("/usr/share/ca-certificates/mozilla")
FILE_SERVER_PORTS = (28461, 28462, 28463)


class ImageError(RuntimeError):
    """An image could not be built or found; the message says which and why."""


@dataclass(frozen=True)
class Image:
    name: str
    key: str

    @property
    def ref(self) -> str:
        return f"{REGISTRY}/{self.name}:{self.key}"

    @property
    def archive(self) -> Path:
        return image_dir() / f"{self.name}-{self.key}.tar"


def image_dir() -> Path:
    return cache_root() / "images"


def digest(parts: Iterable[str | bytes]) -> str:
    """A short hex digest of the parts, each length-prefixed so that no two lists collide (pure)."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(f"{len(data)}:".encode())
        h.update(data)
    return h.hexdigest()[:12]


def tree_files(root: Path, folders: Iterable[str]) -> list[Path]:
    """The files under `folders` of `root` an image copies (no bytecode caches), in a stable order."""
    found = []
    for folder in folders:
        path = root / folder
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        found += [p for p in candidates if "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return found


def files_digest(root: Path, paths: Iterable[Path]) -> list[str | bytes]:
    parts: list[str | bytes] = []
    for path in paths:
        parts += [str(path.relative_to(root)), path.read_bytes()]
    return parts


def backup_build_args(base: Image) -> dict[str, str]:
    """The Dockerfile's build arguments in the lab (the file server's URLs are added at build time)."""
    return {
        "BASE_IMAGE": base.ref,
        "PG_MAJOR": DEBIAN_PG_MAJOR,
        "PG_APT": "debian",
        "KUBECTL_VERSION": kube_build.kubernetes_version(),
    }


def plan() -> dict[str, Image]:
    """Every image with the key of its current inputs (reads the input files; builds nothing)."""
    base = Image("base", digest([SUITE, *MIRRORS, *BASE_PACKAGES, *BASE_ENV, *DPKG_EXCLUDES]))
    backup_inputs = tree_files(REPO_DIR, ("Dockerfile", ".dockerignore", "requirements.txt", "drtopo", "scripts"))
    kubectl = kube_build.bin_dir() / "kubectl"
    backup = Image(
        "backup",
        digest(
            [
                base.key,
                *(f"{k}={v}" for k, v in sorted(backup_build_args(base).items())),
                *files_digest(REPO_DIR, backup_inputs),
                hashlib.sha256(kubectl.read_bytes()).hexdigest() if kubectl.is_file() else "no kubectl",
            ]
        ),
    )
    jar_names = sorted(p.name for p in jars.jar_dir().glob("*.jar"))
    mirrormaker = Image(
        "mirrormaker",
        digest([base.key, *files_digest(CONTAINERFILES, tree_files(CONTAINERFILES, mirrormaker_files())), *jar_names]),
    )
    service_inputs = [CONTAINERFILES / "service.Containerfile", *tree_files(REPO_DIR, service_files())]
    service = Image("service", digest([base.key, *files_digest(REPO_DIR, service_inputs)]))
    return {"base": base, "backup": backup, "mirrormaker": mirrormaker, "service": service}


def mirrormaker_files() -> tuple[str, ...]:
    return ("mirrormaker.Containerfile", "connect-mirror-maker.sh", "connect-log4j.properties")


def service_files() -> tuple[str, ...]:
    return ("requirements.txt", "lab/__init__.py", "lab/service.py")


def is_built(images: dict[str, Image] | None = None) -> bool:
    return all(image.archive.is_file() for image in (images or plan()).values())


def archives() -> dict[str, Path]:
    """The archive of each image `lab up` imports. An image whose inputs changed since set-up (the backup image
    follows drtopo/ and scripts/) is rebuilt first, from buildah's layer cache (seconds); the base is never built
    here: without it, this asks for `make images`."""
    images = plan()
    missing = [name for name, image in images.items() if name != "base" and not image.archive.is_file()]
    if missing:
        if not images["base"].archive.is_file():
            raise ImageError(f"lab images {', '.join(missing)} are not built in {image_dir()}; run `make images`")
        ensure_images()
        images = plan()
    return {name: image.archive for name, image in images.items() if name != "base"}


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time per cache (set-up and labs of several checkouts may share it)."""
    image_dir().mkdir(parents=True, exist_ok=True)
    with open(image_dir() / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- building -------------------------------------------------------------------------------------------------------
def buildah_command(*args: str) -> list[str]:
    """buildah with its own storage under the cache; overlay, where each layer costs only its changes (vfs would
    copy the whole root file system per layer)."""
    try:
        return kube_build.buildah_command(*args, store="buildah-images", driver="overlay")
    except kube_build.KubeBuildError as exc:
        raise ImageError(str(exc)) from exc


def _buildah(*args: str, what: str, timeout: float = BUILD_TIMEOUT_S, cwd: Path | None = None) -> str:
    argv = buildah_command(*args)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"{what} took over {timeout:.0f} s") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
        raise ImageError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stdout


def _in_storage(image: Image) -> bool:
    argv = buildah_command("inspect", "--type", "image", image.ref)
    return subprocess.run(argv, capture_output=True, timeout=120, check=False).returncode == 0


def _export(image: Image) -> None:
    """Write the image as a docker archive (what `ctr images import` loads), atomically."""
    image.archive.parent.mkdir(parents=True, exist_ok=True)
    partial = image.archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    _buildah("push", image.ref, f"docker-archive:{partial}:{image.ref}", what=f"buildah push {image.ref}")
    partial.rename(image.archive)
    for old in kube_store.stale_versions(image_dir().glob(f"{image.name}-*.tar"), image.archive):
        old.unlink(missing_ok=True)


def _ensure_local(image: Image) -> None:
    """The image in buildah's storage (a later build's FROM), loaded back from its archive when storage lost it."""
    if not _in_storage(image):
        _buildah("pull", f"docker-archive:{image.archive}", what=f"buildah pull {image.archive.name}")


def build_base(image: Image) -> None:
    """Debian minbase from Debian's mirrors with mmdebstrap, imported into buildah from scratch."""
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageError("mmdebstrap is not on PATH; install Debian's 'mmdebstrap' (make system)")
    work = image_dir() / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rootfs = work / "rootfs.tar"
    argv = [
        mmdebstrap,
        "--quiet",
        "--variant=minbase",
        f"--include={','.join(BASE_PACKAGES)}",
        '--aptopt=Acquire::Retries "3"',
        *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
        SUITE,
        str(rootfs),
        *MIRRORS,
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ImageError(f"mmdebstrap {SUITE} took over {BUILD_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
        raise ImageError(f"mmdebstrap {SUITE} failed (exit {proc.returncode}): {tail}")
    container = f"drtopo-base-{os.getpid()}"
    _buildah("from", "--name", container, "scratch", what="buildah from scratch")
    try:
        _buildah("add", container, str(rootfs), "/", what="buildah add (Debian rootfs)")
        config = ["config", *(f"--env={e}" for e in BASE_ENV), "--cmd", '["/bin/bash"]', container]
        _buildah(*config, what="buildah config")
        _buildah("commit", "--rm", container, image.ref, what=f"buildah commit {image.ref}")
    except BaseException:
        subprocess.run(buildah_command("rm", container), capture_output=True, timeout=120, check=False)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _bind_file_server(folder: Path) -> http.server.ThreadingHTTPServer:
    """The first of FILE_SERVER_PORTS free (a stable URL keeps buildah's layer cache: build arguments are part of
    its key), else any free port."""
    handler = functools.partial(_Files, directory=str(folder))
    for port in (*FILE_SERVER_PORTS, 0):
        try:
            return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError:
            continue
    raise ImageError("no free port on 127.0.0.1 for the build's file server")


@contextlib.contextmanager
def file_server(folder: Path) -> Iterator[str]:
    """Serve `folder` read-only on 127.0.0.1 for the duration of a build; yields its URL."""
    server = _bind_file_server(folder)
    thread = threading.Thread(target=server.serve_forever, name="lab-image-files", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _bud(image: Image, containerfile: Path, context: Path, build_args: dict[str, str]) -> None:
    args = [
        "bud",
        "--isolation=chroot",
        # RUN steps reach Debian's mirrors and PyPI (set-up), and the file server on loopback.
        "--network=host",
        "--layers",
        "--pull=never",
        # RUN steps trust what this machine trusts (its bundle may hold the CA of a proxy to PyPI); mounted for the
        # build only, never part of an image.
        *([f"--volume={HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro"] if HOST_CA_BUNDLE.is_file() else []),
        "-f",
        str(containerfile),
        "-t",
        image.ref,
        *(f"--build-arg={k}={v}" for k, v in build_args.items()),
        str(context),
    ]
    _buildah(*args, what=f"buildah bud {image.ref}", cwd=context)


def build_backup(image: Image, base: Image) -> None:
    """The project's Dockerfile FROM the lab's base, with kubectl and a CA bundle from a file server on loopback."""
    version = kube_build.kubernetes_version()
    files = image_dir() / "files"
    shutil.rmtree(files, ignore_errors=True)
    folder = files / version / "bin" / "linux" / "amd64"
    folder.mkdir(parents=True)
    kubectl = kube_build.binary("kubectl")
    shutil.copy2(kubectl, folder / "kubectl")
    (folder / "kubectl.sha256").write_text(hashlib.sha256(kubectl.read_bytes()).hexdigest() + "\n")
    # The lab's PostgreSQL speaks no TLS (the lab's jobs connect without it), so Debian's Mozilla roots stand in for
    # the RDS bundle: a valid PEM bundle at the path the jobs name.
    roots = sorted(MOZILLA_ROOTS.glob("*.crt"))
    if not roots:
        raise ImageError(f"no CA certificates in {MOZILLA_ROOTS}; install Debian's 'ca-certificates'")
    (files / "ca-bundle.pem").write_bytes(b"".join(p.read_bytes() for p in roots))
    try:
        with file_server(files) as url:
            args = {**backup_build_args(base), "KUBECTL_BASE_URL": url, "RDS_CA_BUNDLE_URL": f"{url}/ca-bundle.pem"}
            _bud(image, REPO_DIR / "Dockerfile", REPO_DIR, args)
    finally:
        shutil.rmtree(files, ignore_errors=True)


def _staged_context(name: str, sources: dict[str, Path]) -> Path:
    """A build context of hard links (copies across file systems) to exactly the files an image copies."""
    context = image_dir() / f"context-{name}"
    shutil.rmtree(context, ignore_errors=True)
    for relative, source in sources.items():
        target = context / relative
        if source.is_dir():
            shutil.copytree(source, target, copy_function=_link_or_copy)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(str(source), str(target))
    return context


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def build_mirrormaker(image: Image, base: Image) -> None:
    sources = {name: CONTAINERFILES / name for name in mirrormaker_files()}
    context = _staged_context(image.name, {**sources, "jars": jars.ensure_jars()})
    try:
        _bud(image, context / "mirrormaker.Containerfile", context, {"BASE_IMAGE": base.ref})
    finally:
        shutil.rmtree(context, ignore_errors=True)


def build_service(image: Image, base: Image) -> None:
    sources = {name: REPO_DIR / name for name in service_files()}
    context = _staged_context(image.name, {**sources, "Containerfile": CONTAINERFILES / "service.Containerfile"})
    try:
        _bud(image, context / "Containerfile", context, {"BASE_IMAGE": base.ref})
    finally:
        shutil.rmtree(context, ignore_errors=True)


def ensure_images() -> dict[str, tuple[bool, float]]:
    """Build every image whose archive is missing; returns per image whether it was built and the seconds taken."""
    with _build_lock():
        return _ensure_images()


def _ensure_images() -> dict[str, tuple[bool, float]]:
    images = plan()
    base = images["base"]
    timings: dict[str, tuple[bool, float]] = {}
    start = time.monotonic()
    if not base.archive.is_file():
        build_base(base)
        _export(base)
        timings["base"] = (True, time.monotonic() - start)
    else:
        timings["base"] = (False, time.monotonic() - start)
    builders = {"backup": build_backup, "mirrormaker": build_mirrormaker, "service": build_service}
    for name, build in builders.items():
        start = time.monotonic()
        image = images[name]
        built = not image.archive.is_file()
        if built:
            _ensure_local(base)
            build(image, base)
            _export(image)
        timings[name] = (built, time.monotonic() - start)
    _prune(images)
    start = time.monotonic()
    cached = (kube_store.template_dir(_store_archives(images)) / kube_store.COMPLETE).is_file()
    kube_store.ensure_template(_store_archives(images))
    timings["containerd store"] = (not cached, time.monotonic() - start)
    return timings


def _store_archives(images: dict[str, Image]) -> list[Path]:
    """What a lab's containerd holds: the pause image and every image but the base, in the order `lab up` gives."""
    return [kube_build.pause_archive(), *(image.archive for name, image in images.items() if name != "base")]


def _prune(images: dict[str, Image]) -> None:
    """Remove older drtopo.lab images of these names from buildah's storage (the archives are the cache)."""
    listing = _buildah("images", "--format", "{{.Name}}:{{.Tag}}", what="buildah images", timeout=120)
    current = {image.ref for image in images.values()}
    for ref in listing.split():
        name = ref.removeprefix("localhost/").partition(":")[0]
        if name.startswith(f"{REGISTRY}/") and name.split("/", 1)[1] in NAMES and ref not in current:
            subprocess.run(buildah_command("rmi", ref), capture_output=True, timeout=120, check=False)


def main() -> int:
    start = time.monotonic()
    try:
        timings = ensure_images()
    except (ImageError, kube_build.KubeBuildError, jars.JarsError, kube_store.StoreError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 2
    images = plan()
    for name, (built, seconds) in timings.items():
        what = images[name].ref if name in images else f"{name} {kube_store.template_dir(_store_archives(images))}"
        print(f"images: {what} {'built' if built else 'cached'} ({seconds:.1f} s)")
    print(f"images: all in {image_dir()} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
