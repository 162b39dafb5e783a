"""The embedded nats-server: JetStream works, stop really ends the process and frees the port,
it will not listen beyond loopback, and file streams survive a restart on the same data dir."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import nats
import pytest
from nats.js.api import StorageType

from services.runtime.embedded import EmbeddedNats, free_port

pytestmark = pytest.mark.integration


def _refuses(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def test_jetstream_works_and_stop_ends_the_process_and_frees_the_port(
    tmp_path: Path,
) -> None:
    port = free_port()
    server = EmbeddedNats(tmp_path / "nats", port=port)
    url = await server.start()
    assert url == f"nats://127.0.0.1:{port}" == server.url
    pid = server.pid
    assert pid is not None

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.account_info()
        assert info.limits is not None
        await js.add_stream(name="PROBE", subjects=["probe.>"], storage=StorageType.FILE)
        ack = await js.publish("probe.one", b"hello")
        assert ack.stream == "PROBE" and ack.seq == 1
    finally:
        await nc.close()

    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert _refuses("127.0.0.1", port)
    assert server.pid is None
    server.stop()  # idempotent


async def test_async_with_yields_the_url_and_stops_on_exit(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    async with server as url:
        pid = server.pid
        assert pid is not None and url == server.url
        nc = await nats.connect(url)
        await nc.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.1", "192.168.1.5", "example.org"])
def test_a_non_loopback_host_is_refused(tmp_path: Path, host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        EmbeddedNats(tmp_path / "nats", host=host)


async def test_file_stream_data_survives_a_restart_on_the_same_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "nats"
    first = EmbeddedNats(data_dir, port=free_port(), sync_always=True)
    nc = await nats.connect(await first.start())
    try:
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"], storage=StorageType.FILE)
        await js.publish("keep.it", b"still here")
    finally:
        await nc.close()
    first.stop()

    second = EmbeddedNats(data_dir, port=free_port())
    nc = await nats.connect(await second.start())
    try:
        message = await nc.jetstream().get_msg("KEEP", 1)
        assert message.subject == "keep.it"
        assert message.data == b"still here"
    finally:
        await nc.close()
        second.stop()


async def test_a_server_that_cannot_start_raises_with_the_log_tail(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        server = EmbeddedNats(tmp_path / "nats", port=port)
        with pytest.raises(RuntimeError, match="exited early"):
            await server.start(timeout=10)
    assert server.pid is None


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_loopback_is_allowed_and_bracketed_in_the_url(tmp_path: Path) -> None:
    async with EmbeddedNats(tmp_path / "nats", host="::1") as url:
        assert url.startswith("nats://[::1]:")
        nc = await nats.connect(url)
        try:
            await nc.jetstream().account_info()
        finally:
            await nc.close()
