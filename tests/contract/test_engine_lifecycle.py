"""Lifecycle: idle timeout, keep-alive, and no resource growth over many sessions."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import requests

from lib.engine.launcher import start_engine
from lib.heygen.client import StreamingClient
from tests.support.rtc import open_session, wait_for


@pytest.fixture(scope="module")
def quick_engine(tmp_path_factory):
    """An engine that accepts idle timeouts of a second or two (HeyGen's minimum is 30 s)."""
    history = tmp_path_factory.mktemp("quick") / "history.db"
    proc = start_engine(extra_args=["--history-db", str(history), "--min-idle-timeout", "1", "--no-voices"])
    yield proc
    proc.stop()


@pytest.fixture
def quick(quick_engine):
    with StreamingClient(quick_engine.url, quick_engine.api_key, backoff=0) as c:
        yield c


def _new_raw(engine, **body) -> str:
    """Create a session over raw HTTP: the client (rightly) refuses HeyGen-invalid short idle timeouts."""
    r = requests.post(
        engine.url + "/v1/streaming.new",
        json={"quality": "low", **body},
        headers={"X-Api-Key": engine.api_key.reveal()},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()["data"]["session_id"]


def _history(engine) -> dict[str, dict]:
    data = requests.get(
        engine.url + "/v2/streaming.list", headers={"X-Api-Key": engine.api_key.reveal()}, timeout=10
    ).json()["data"]["data"]
    return {row["session_id"]: row for row in data}


def test_idle_timeout_closes_the_session(quick_engine, quick):
    session_id = _new_raw(quick_engine, activity_idle_timeout=2)
    assert session_id in {s.session_id for s in quick.list()}
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline and session_id in {s.session_id for s in quick.list()}:
        time.sleep(0.2)
    assert session_id not in {s.session_id for s in quick.list()}
    assert _history(quick_engine)[session_id]["end_reason"] == "idle_timeout"


def test_keep_alive_resets_the_idle_timer(quick_engine, quick):
    session_id = _new_raw(quick_engine, activity_idle_timeout=2)
    for _ in range(6):  # 4.2 s in all: twice the timeout
        time.sleep(0.7)
        quick.keep_alive(session_id)
    assert session_id in {s.session_id for s in quick.list()}
    quick.stop(session_id)


def test_disable_idle_timeout_keeps_the_session(quick_engine, quick):
    session_id = _new_raw(quick_engine, activity_idle_timeout=1, disable_idle_timeout=True)
    time.sleep(2.5)
    assert session_id in {s.session_id for s in quick.list()}
    quick.stop(session_id)


def _threads_and_rss(pid: int) -> tuple[int, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


async def test_fifty_cycles_leave_no_growth(quick_engine, quick):
    loop = asyncio.get_running_loop()

    async def cycle() -> None:
        live = await open_session(quick)
        assert await wait_for(lambda: live.received.first_frame_at is not None, 10)
        await loop.run_in_executor(None, quick.stop, live.session_id)
        await live.connection.close()

    for _ in range(5):  # warm-up: thread pools and caches reach their working size
        await cycle()
    threads0, rss0 = _threads_and_rss(quick_engine.process.pid)
    for _ in range(50):
        await cycle()
    await asyncio.sleep(1.0)
    threads1, rss1 = _threads_and_rss(quick_engine.process.pid)
    assert quick.list() == []
    assert threads1 <= threads0 + 2, (threads0, threads1)
    assert rss1 - rss0 < 60_000, f"RSS grew by {rss1 - rss0} kB over 50 sessions"


async def test_memory_goes_back_when_the_last_session_closes(engine, client):
    """Three 720p sessions with speech grow the engine by a few hundred MB; glibc would keep all of it."""
    from lib.heygen.models import NewSessionRequest

    loop = asyncio.get_running_loop()
    assert client.list() == []
    _, rss0 = _threads_and_rss(engine.process.pid)
    peak = rss0
    for _ in range(2):
        lives = [await open_session(client, NewSessionRequest(quality="medium")) for _ in range(3)]
        for live in lives:
            assert await wait_for(lambda live=live: len(live.received.video) > 25, 15)
        await asyncio.gather(
            *(
                loop.run_in_executor(
                    None,
                    lambda live=live: client.task(
                        live.session_id, "Hello there, this is a memory test.", "repeat", "sync"
                    ),
                )
                for live in lives
            )
        )
        peak = max(peak, _threads_and_rss(engine.process.pid)[1])
        for live in lives:
            await loop.run_in_executor(None, client.stop, live.session_id)
            await live.connection.close()
    await asyncio.sleep(1.0)
    _, rss1 = _threads_and_rss(engine.process.pid)
    assert peak - rss0 > 100_000, "the sessions should have cost memory; the test proves nothing otherwise"
    assert rss1 - rss0 < 60_000, f"RSS {rss0} kB → peak {peak} kB → {rss1} kB after every session closed"


def test_a_session_whose_caller_gave_up_before_it_was_made_is_closed_at_once(engine, client):
    """A caller that times out on streaming.new (a loaded engine) never learns the session id: the engine must
    not keep the session it finishes making afterwards (it stayed up, unstarted, until its idle timeout)."""
    from lib.heygen.errors import ProviderUnavailable
    from lib.heygen.models import NewSessionRequest

    assert client.list() == []
    # Indexing a knowledge base this size takes the engine ~0.5 s: longer than the impatient caller waits.
    knowledge = " ".join(f"Fact {i} is that item {i} weighs {i * 7 % 91} grams." for i in range(4000))[:199_000]
    impatient = StreamingClient(engine.url, engine.api_key, backoff=0, retries=0, new_timeout=0.1, timeout=0.1)
    with impatient, pytest.raises(ProviderUnavailable, match="did not answer"):
        impatient.new(NewSessionRequest(quality="low", knowledge_base=knowledge))
    time.sleep(3.0)  # the engine has long finished making it
    assert client.list() == []
    # A patient caller with the same request gets its session.
    made = client.new(NewSessionRequest(quality="low", knowledge_base=knowledge))
    assert [s.session_id for s in client.list()] == [made.session_id]
    client.stop(made.session_id)
