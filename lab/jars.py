"""The lab's Apache Kafka jars (broker, MirrorMaker 2, logging binding), fetched once from Maven Central and cached.

`python -m lab.jars` (the Makefile's `jars` target) resolves `lab/kafka_deps/pom.xml` with Maven into
`.cache/kafka-jars/<version>/` (git-ignored; env DRTOPO_CACHE_DIR moves `.cache/`). A complete cache is marked by a
`.complete` file, so a warm run is a quick no-op and an interrupted download is never mistaken for a good one.
Maven's own repository also lives under the cache (`.cache/m2`), leaving the user's ~/.m2 untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# Matches settings.kubernetes.mirror_maker_image (apache/kafka:3.9.1): the lab runs what production runs.
KAFKA_VERSION = "3.9.1"
REPO_ROOT = Path(__file__).resolve().parent.parent
POM = Path(__file__).resolve().parent / "kafka_deps" / "pom.xml"
COMPLETE = ".complete"


class JarsError(RuntimeError):
    """The jars could not be resolved; the message says what to install or check."""


def cache_root() -> Path:
    return Path(os.environ.get("DRTOPO_CACHE_DIR") or REPO_ROOT / ".cache")


def jar_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / "kafka-jars" / version


def is_cached(version: str = KAFKA_VERSION) -> bool:
    return (jar_dir(version) / COMPLETE).is_file()


def classpath(version: str = KAFKA_VERSION) -> str:
    """The JVM class path of the cached jars (resolving them first when the cache is cold)."""
    return str(ensure_jars(version) / "*")


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """Return the folder holding every jar the lab's Kafka needs, downloading them when missing."""
    target = jar_dir(version)
    if is_cached(version):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarsError("mvn is not on PATH; install Maven (Debian package 'maven') to fetch the Kafka jars")
    staging = target.with_name(f"{version}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    argv = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM),
        f"-Dmaven.repo.local={cache_root() / 'm2'}",
        f"-Dkafka.version={version}",
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise JarsError(f"mvn could not resolve Kafka {version} from Maven Central (exit {proc.returncode}): {tail}")
    (staging / COMPLETE).write_text(f"kafka {version}\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return target


def main() -> int:
    start = time.monotonic()
    warm = is_cached()
    try:
        folder = ensure_jars()
    except JarsError as exc:
        print(f"jars: {exc}", file=sys.stderr)
        return 2
    count = sum(1 for _ in folder.glob("*.jar"))
    state = "cached" if warm else "downloaded"
    print(f"jars: Kafka {KAFKA_VERSION} {state}: {count} jars in {folder} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
