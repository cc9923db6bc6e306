"""Reads Java `.properties` text (the MirrorMaker 2 configuration held in a ConfigMap) into a dict."""

from __future__ import annotations


def parse_properties(text: str) -> dict[str, str]:
    """`key = value`, `key: value` or `key value` per line; `#` and `!` start comments; last one wins."""
    result: dict[str, str] = {}
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending = line[:-1]
            continue
        cut = min((i for i in (line.find("="), line.find(":"), line.find(" ")) if i >= 0), default=len(line))
        key, value = line[:cut].strip(), line[cut + 1 :].strip()
        result[key] = value.lstrip("=:").strip() if line[cut : cut + 1] == " " else value
    return result
