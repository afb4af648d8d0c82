"""The wire format between the sandbox's processes, the same on both sides: length-prefixed JSON
messages, and plain values encoded by exact type.

Runs inside the sandbox too (imported by plain name under a bare interpreter), so it imports only the
standard library.
"""

from __future__ import annotations

import json
import os
import struct

MAX_MESSAGE = 8 << 20  # bytes of one encoded return value / job message


def send(fd: int, obj) -> None:
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    data = struct.pack(">I", len(data)) + data
    while data:
        data = data[os.write(fd, data) :]


def _recv_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv(fd: int, limit: int = MAX_MESSAGE):
    """The next message, or None at end of file; a message over `limit` bytes is a ValueError."""
    head = _recv_exact(fd, 4)
    if head is None:
        return None
    (n,) = struct.unpack(">I", head)
    if n > limit:
        raise ValueError(f"message of {n} bytes is over the limit of {limit}")
    body = _recv_exact(fd, n)
    return None if body is None else json.loads(body.decode("utf-8"))


class Unsupported(TypeError):
    """A value of a type that cannot cross between the program and the test."""


def encode(value, depth: int = 0):
    """Plain values by exact type (subclasses refused, so no object can lie about equality)."""
    if depth > 100:
        raise Unsupported("value nested more than 100 levels deep")
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        return {"f": repr(value)}
    if t is list:
        return [encode(v, depth + 1) for v in value]
    if t in (tuple, set, frozenset):
        return {{tuple: "t", set: "s", frozenset: "fs"}[t]: [encode(v, depth + 1) for v in value]}
    if t is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if t is bytes:
        return {"b": value.hex()}
    raise Unsupported(f"a value of type {t.__name__} cannot be checked (only plain data can)")


def decode(obj):
    """The inverse of `encode`; builds only plain built-in values."""
    if obj is None or type(obj) in (bool, int, str):
        return obj
    if type(obj) is list:
        return [decode(v) for v in obj]
    if type(obj) is dict and len(obj) == 1:
        ((tag, body),) = obj.items()
        if tag == "f":
            return float(body)
        if tag == "t":
            return tuple(decode(v) for v in body)
        if tag == "s":
            return {decode(v) for v in body}
        if tag == "fs":
            return frozenset(decode(v) for v in body)
        if tag == "d":
            return {decode(k): decode(v) for k, v in body}
        if tag == "b":
            return bytes.fromhex(body)
    raise ValueError("malformed value from the program")
