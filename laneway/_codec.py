"""Payload and result encoding: JSON by default, msgpack when asked. Never pickle.

A job payload is one map ``{"a": args, "k": kwargs, "h": headers}``. Encoded JSON starts
with an ASCII byte and encoded msgpack with a byte of 0x80 or more (``dumps`` writes the
integers 0-127, which msgpack packs as one ASCII byte, in the two-byte uint 8 form), so a
worker or a ``job.result()`` decodes what any producer or worker wrote, whichever codec
that one used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import ConfigError, DecodeError, EncodeError

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_decode_json = json.JSONDecoder().decode


@dataclass(frozen=True, slots=True)
class Call:
    """A decoded job payload."""

    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, str]


class Codec:
    """Encodes job payloads and results. ``name`` is ``"json"`` or ``"msgpack"``."""

    def __init__(self, name: str = "json") -> None:
        if name not in ("json", "msgpack"):
            raise ConfigError(f"codec must be 'json' or 'msgpack', not {name!r}")
        if name == "msgpack":
            try:
                import msgpack  # noqa: F401
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise ConfigError("codec='msgpack' needs: pip install 'laneway[msgpack]'") from exc
        self.name = name

    def dumps(self, value: Any, what: str) -> bytes:
        """Encode one value; ``what`` names it in the ``EncodeError``."""
        try:
            if self.name == "msgpack":
                import msgpack

                packed: bytes = msgpack.packb(value, use_bin_type=True, strict_types=False)
                try:  # a tuple dict key packs as an array, which cannot be a key when read back
                    msgpack.unpackb(packed, raw=False, strict_map_key=False)
                except TypeError as exc:
                    raise TypeError(
                        f"a dict key cannot be read back ({exc}); use str, int, float or bool keys"
                    ) from None
                return packed if packed[0] >= 0x80 else b"\xcc" + packed  # 0-127: read as JSON otherwise
            return _ENCODER.encode(value).encode()
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"{what} cannot be encoded as {self.name}: {exc}") from exc
        except RecursionError:
            raise EncodeError(f"{what} cannot be encoded as {self.name}: nested too deeply") from None

    def encode_call(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], headers: Mapping[str, str]
    ) -> bytes:
        """Encode a task call, naming the first argument that cannot be encoded."""
        try:
            return self.dumps({"a": list(args), "k": dict(kwargs), "h": dict(headers)}, "call")
        except EncodeError:
            for i, arg in enumerate(args):
                self.dumps(arg, f"argument {i} ({type(arg).__name__})")
            for key, arg in kwargs.items():
                self.dumps(arg, f"keyword argument {key!r} ({type(arg).__name__})")
            for key, arg in headers.items():
                self.dumps(arg, f"header {key!r}")
            raise


def loads(data: bytes, what: str = "payload") -> Any:
    """Decode a JSON or msgpack value; raises ``DecodeError`` naming ``what``."""
    try:
        if data[:1] < b"\x80":  # ASCII: JSON (see the module's docstring)
            return _decode_json(data.decode())
        import msgpack

        # strict_map_key=False: keep the integer keys packb wrote (msgpack refuses them by default)
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:
        raise DecodeError(f"{what} cannot be decoded: {type(exc).__name__}: {exc}") from exc


def decode_call(data: bytes) -> Call:
    """Decode a job payload written by ``Codec.encode_call``."""
    value = loads(data)
    if not isinstance(value, dict) or not isinstance(value.get("a"), list):
        raise DecodeError("payload is not a laneway call (expected a map with 'a', 'k', 'h')")
    kwargs = value.get("k", {})
    headers = value.get("h", {})
    if not isinstance(kwargs, dict) or not isinstance(headers, dict):
        raise DecodeError("payload 'k' and 'h' must be maps")
    return Call(value["a"], kwargs, headers)
