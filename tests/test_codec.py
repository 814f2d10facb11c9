"""The codecs: JSON by default, msgpack when asked; either is read by any worker."""

from __future__ import annotations

import pytest

import laneway
from laneway._codec import Codec, decode_call, loads
from laneway.testing import memory_app


def test_msgpack_app_round_trips_arguments_and_results() -> None:
    app = memory_app(codec="msgpack")

    @app.task(name="echo")
    def echo(data: dict[str, object], blob: bytes) -> list[object]:
        return [data, len(blob)]

    job = echo.enqueue({"a": [1, 2.5, None, True]}, b"\x00\x01")
    rec = app.backend.get_job(job.id)
    assert rec is not None and rec.payload[:1] != b"{"
    app.run_until_idle()
    assert job.result(timeout=1) == [{"a": [1, 2.5, None, True]}, 2]


def test_msgpack_keeps_integer_keys_of_arguments_and_results() -> None:
    app = memory_app(codec="msgpack")

    @app.task(name="invert")
    def invert(by_id: dict[int, str]) -> dict[str, int]:
        return {v: k for k, v in by_id.items()} | {"n": len(by_id)}

    job = invert.enqueue({1: "a", 2: "b"})
    app.run_until_idle()
    assert job.result(timeout=1) == {"a": 1, "b": 2, "n": 2}


@pytest.mark.parametrize("codec", ["json", "msgpack"])
def test_every_small_value_reads_back_as_itself(codec: str) -> None:
    # msgpack packs 0-127 as one ASCII byte: "1" (49) and "{" (123) must not be taken for JSON
    values = [*range(-40, 300), "", "a", True, False, 0.5, [], {}, [1], {"k": 1}]
    for value in values:
        assert loads(Codec(codec).dumps(value, "v"), "result") == value


def test_json_turns_integer_keys_into_strings_as_json_does() -> None:
    app = memory_app()  # documented: as with Celery's and Dramatiq's JSON

    @app.task(name="keys")
    def keys(by_id: dict[int, str]) -> list[object]:
        return list(by_id)

    job = keys.enqueue({1: "a"})
    app.run_until_idle()
    assert job.result(timeout=1) == ["1"]


def test_a_json_worker_reads_msgpack_payloads_and_back() -> None:
    packed = Codec("msgpack").encode_call([1, "x"], {"k": [2]}, {"h": "v"})
    plain = Codec("json").encode_call([1, "x"], {"k": [2]}, {"h": "v"})
    assert decode_call(packed) == decode_call(plain)


def test_json_refuses_nan_and_unknown_types_with_a_clear_error() -> None:
    codec = Codec("json")
    with pytest.raises(laneway.EncodeError, match="argument 1"):
        codec.encode_call([1, float("nan")], {}, {})
    with pytest.raises(laneway.EncodeError, match="keyword argument 'when'"):
        codec.encode_call([], {"when": object()}, {})


def test_unknown_codec_name_is_a_config_error() -> None:
    with pytest.raises(laneway.ConfigError, match="codec"):
        Codec("pickle")


def test_garbage_bytes_raise_decode_error() -> None:
    with pytest.raises(laneway.DecodeError):
        loads(b"\xc1\xc1\xc1")
    with pytest.raises(laneway.DecodeError, match="not a laneway call"):
        decode_call(b"[1, 2]")


def test_msgpack_refuses_a_dict_key_it_could_not_read_back() -> None:
    with pytest.raises(laneway.EncodeError, match="argument 0"):
        Codec("msgpack").encode_call([{(1, 2): "a"}], {}, {})  # used to fail on the worker instead
