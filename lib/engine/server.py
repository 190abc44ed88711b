"""The engine's HTTP API: HeyGen's ``/v1/streaming.*`` endpoints, envelopes and error codes."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from lib import gc_pauses
from lib.engine import avatars, packets
from lib.engine import errors as E
from lib.engine.api import IceBody, NewSessionBody, SessionBody, StartBody, TaskBody
from lib.engine.config import QUALITIES, EngineConfig
from lib.engine.history import SessionHistory
from lib.engine.liveavatar_api import register as register_liveavatar
from lib.engine.liveavatar_state import LiveAvatarState
from lib.engine.responder import LlmConfig
from lib.engine.sessions import CLIENT_GONE, SHUTDOWN_ENGINE, EngineSession, SessionManager, SessionOptions
from lib.engine.speaker import predict_duration_ms
from lib.engine.tts import UnknownVoice, VoiceBank

log = logging.getLogger("avatar_ops.engine")


def ok(data: Any = None) -> dict[str, Any]:
    return {"code": 100, "message": "success", "data": data}


@dataclass(frozen=True)
class Caller:
    token: str | None = None  # None: the API key; else the session token used


def create_app(config: EngineConfig, llm: LlmConfig | None = None) -> FastAPI:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        voices = await loop.run_in_executor(None, lambda: VoiceBank(load_piper=config.load_voices))
        for quality in config.prebuild_qualities:
            width, height = QUALITIES[quality]
            for spec in avatars.AVATARS:
                await loop.run_in_executor(None, avatars.get_kit, spec.avatar_id, width, height)
        # Later qualities are drawn in the background, so their first session does not wait for it.
        for quality in config.background_qualities:
            width, height = QUALITIES[quality]
            for spec in avatars.AVATARS:
                loop.run_in_executor(None, avatars.get_kit, spec.avatar_id, width, height)
        history = SessionHistory(config.history_path)
        state["voices"] = voices
        state["manager"] = SessionManager(config, voices, history, llm)
        state["liveavatar"] = LiveAvatarState(config, state["manager"], voices)
        gc_pauses.settle()  # models and avatar kits are loaded: keep them out of every later collection
        log.info("engine ready in %.1f s", time.perf_counter() - started)
        yield
        await state["liveavatar"].shutdown()
        # The parent watch (lib.engine.__main__) says when the app that started the engine died.
        await state["manager"].shutdown(getattr(app.state, "shutdown_reason", SHUTDOWN_ENGINE))
        history.close()
        stopped = getattr(app.state, "sessions_stopped", None)
        if stopped is not None:
            stopped.set()  # every session is closed and recorded: what remains (background drawing) can go

    app = FastAPI(
        title="Avatar Ops local engine",
        version="1.0",
        description="A HeyGen-compatible Streaming Avatar API that renders on the CPU.",
        lifespan=lifespan,
    )

    def manager() -> SessionManager:
        return state["manager"]

    def voices() -> VoiceBank:
        return state["voices"]

    # --- errors -------------------------------------------------------------------------------
    @app.exception_handler(E.ApiError)
    async def _api_error(_: Request, exc: E.ApiError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(_validation_body(exc), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"code": exc.status_code, "message": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected engine error")
        return JSONResponse({"code": 500, "message": "Internal engine error; see the engine log."}, status_code=500)

    # --- auth ---------------------------------------------------------------------------------
    def caller(request: Request) -> Caller:
        key = request.headers.get("x-api-key")
        if key is not None:
            if hmac.compare_digest(key.encode(), config.api_key.reveal().encode()):
                return Caller()
            raise E.unauthorized()
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            value = auth[7:].strip()
            if value and value in manager().tokens:
                manager().token(value)  # raises when expired
                return Caller(token=value)
        raise E.unauthorized()

    def key_only(who: Caller = Depends(caller)) -> Caller:
        if who.token is not None:
            raise E.unauthorized("This endpoint needs the API key, not a session token")
        return who

    def session_for(session_id: str, who: Caller) -> EngineSession:
        session = manager().get(session_id)
        if who.token is not None and manager().tokens[who.token].session_id != session.session_id:
            raise E.unauthorized("This session token belongs to another session")
        return session

    # --- endpoints ----------------------------------------------------------------------------
    @app.get("/healthz", tags=["engine"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/streaming.create_token", tags=["streaming"])
    async def create_token(_: Caller = Depends(key_only)) -> dict[str, Any]:
        return {"error": None, "data": {"token": manager().create_token()}}

    @app.post("/v1/streaming.new", tags=["streaming"])
    async def new(body: NewSessionBody, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        started = time.perf_counter()
        if who.token is not None and manager().tokens[who.token].session_id is not None:
            raise E.ApiError(E.TOKEN_INVALID, "This session token was already used to create a session", 401)
        if body.version == "v2":
            raise E.invalid(
                "The local engine uses the direct-WebRTC transport: omit version (LiveKit 'v2' "
                "is only available on HeyGen)."
            )
        if body.activity_idle_timeout < config.min_idle_timeout:
            raise E.invalid(
                f"Invalid parameter activity_idle_timeout: must be between {config.min_idle_timeout} and 3600 seconds"
            )
        avatar = _resolve_avatar(body)
        voice_id = (
            body.voice.voice_id if body.voice and body.voice.voice_id else body.voice_id
        ) or voices().default_voice_id
        try:
            voices().get(voice_id)
        except UnknownVoice as exc:
            raise E.invalid(str(exc)) from None
        options = SessionOptions(
            avatar_id=avatar.avatar_id,
            voice_id=voice_id,
            rate=body.voice.rate if body.voice else 1.0,
            emotion=body.voice.emotion if body.voice else None,
            quality=body.quality,
            video_encoding=body.video_encoding,
            knowledge_base=body.knowledge_base,
            idle_timeout=body.activity_idle_timeout,
            disable_idle_timeout=body.disable_idle_timeout,
            language=body.language,
        )
        session, offer = await manager().create(options)
        if await request.is_disconnected():
            # Its caller timed out and may try again: nobody will ever start or stop this one.
            await manager().close(session, CLIENT_GONE)
            log.warning("session %s closed at once: its caller left before it was made", session.session_id)
            raise E.ApiError(E.SESSION_NOT_FOUND, "The caller left before the session was made", 408)
        if who.token is not None:
            manager().tokens[who.token].session_id = session.session_id
        log.info("session %s created in %.1f ms", session.session_id, (time.perf_counter() - started) * 1000)
        return ok(
            {
                "session_id": session.session_id,
                "sdp": offer,
                "ice_servers": [],
                "ice_servers2": [],
                "access_token": None,
                "url": config.base_url,
                "realtime_endpoint": None,
                "session_duration_limit": config.max_duration,
                "is_paid": False,
                "resolution": "{}x{}".format(*options.size),
                # Local-engine extension: the session's encoded media, to forward without transcoding
                # (lib.engine.packets). The token opens this session's channel only.
                "media_channel": {
                    "url": config.base_url.replace("http", "ws", 1) + "/v1/streaming.media",
                    "token": session.media_token,
                    "video_codec": session.packets.video_codec,
                    "audio_codec": "opus",
                },
            }
        )

    def _resolve_avatar(body: NewSessionBody) -> avatars.AvatarSpec:
        wanted = body.avatar_id or body.avatar_name
        if not wanted:
            return avatars.AVATARS[0]
        spec = avatars.find_by_name(wanted)
        if spec is None:
            known = ", ".join(a.avatar_id for a in avatars.AVATARS)
            raise E.ApiError(E.AVATAR_NOT_FOUND, f"Avatar not found: {wanted}. Available avatars: {known}")
        return spec

    @app.post("/v1/streaming.start", tags=["streaming"])
    async def start(body: StartBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        session = session_for(body.session_id, who)
        await session.start(body.sdp.sdp if body.sdp else None)
        return ok(None)

    @app.post("/v1/streaming.ice", tags=["streaming"])
    async def ice(body: IceBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        session = session_for(body.session_id, who)
        session.require_active("add ICE candidates")
        await session.add_ice(body.candidate or {})
        return ok(None)

    @app.post("/v1/streaming.task", tags=["streaming"])
    async def task(body: TaskBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        session = session_for(body.session_id, who)
        utt = session.submit(body.text, body.task_type)
        if body.task_mode == "async":
            return ok({"task_id": utt.task_id, "duration_ms": predict_duration_ms(body.text, session.options.rate)})
        await utt.done
        if utt.error:
            raise E.ApiError(E.TTS_ERROR, utt.error)
        return ok({"task_id": utt.task_id, "duration_ms": utt.duration_ms})

    @app.post("/v1/streaming.interrupt", tags=["streaming"])
    async def interrupt(body: SessionBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        session_for(body.session_id, who).interrupt()
        return ok(None)

    @app.post("/v1/streaming.keep_alive", tags=["streaming"])
    async def keep_alive(body: SessionBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        session = session_for(body.session_id, who)
        session.require_active("keep alive")
        session.touch()
        return ok(None)

    @app.post("/v1/streaming.stop", tags=["streaming"])
    async def stop(body: SessionBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        session = session_for(body.session_id, who)
        session.require_active("stop")
        await manager().close(session, "stopped")
        return ok(None)

    @app.post("/v1/streaming.start_listening", tags=["streaming"])
    async def start_listening(body: SessionBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        return _listening(body.session_id, who, True)

    @app.post("/v1/streaming.stop_listening", tags=["streaming"])
    async def stop_listening(body: SessionBody, who: Caller = Depends(caller)) -> dict[str, Any]:
        return _listening(body.session_id, who, False)

    def _listening(session_id: str, who: Caller, value: bool) -> dict[str, Any]:
        session = session_for(session_id, who)
        session.require_active("change listening")
        session.listening = value
        session.touch()
        return ok(None)

    @app.get("/v1/streaming.list", tags=["streaming"])
    async def list_active(_: Caller = Depends(key_only)) -> dict[str, Any]:
        return ok({"sessions": [s.describe() for s in manager().active()]})

    @app.get("/v2/streaming.list", tags=["streaming"])
    async def list_history(
        page: int = Query(1, ge=1),
        page_size: int = Query(100, ge=1, le=1000),
        date_from: str | None = None,
        date_to: str | None = None,
        token: str | None = None,
        _: Caller = Depends(key_only),
    ) -> dict[str, Any]:
        if token and token.isdigit():
            page = int(token)
        total, rows = manager().history.page(
            page, page_size, _timestamp(date_from, "date_from"), _timestamp(date_to, "date_to")
        )
        more = page * page_size < total
        return ok(
            {
                "total": total,
                "page": page,
                "page_size": page_size,
                "next_pagination_token": str(page + 1) if more else None,
                "data": [r.to_api() for r in rows],
            }
        )

    @app.get("/v1/streaming.events", tags=["local engine extensions"])
    async def events(session_id: str, after: int = 0, who: Caller = Depends(caller)) -> dict[str, Any]:
        session = session_for(session_id, who)
        return ok({"status": session.state.value, "events": session.events.after(after), "stats": session.stats()})

    @app.websocket("/v1/streaming.media")
    async def media(websocket: WebSocket, session_id: str) -> None:
        session = manager().sessions.get(session_id)
        if session is None:
            await websocket.close(code=4404)
            return
        await packets.serve(websocket, session.packets, session.media_token)

    @app.get("/v1/streaming/avatar.list", tags=["avatars"])
    async def avatar_list(request: Request, _: Caller = Depends(caller)) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return ok(
            [
                {
                    "avatar_id": a.avatar_id,
                    "pose_name": a.pose_name,
                    "name": a.name,
                    "normal_preview": f"{base}/previews/avatars/{a.avatar_id}.png",
                    "default_voice": a.default_voice,
                    "is_public": True,
                    "status": "ACTIVE",
                    "gender": a.gender,
                    "created_at": 0,
                }
                for a in avatars.AVATARS
            ]
        )

    @app.get("/previews/avatars/{avatar_id}.png", tags=["avatars"])
    async def avatar_preview(avatar_id: str) -> Response:
        try:
            avatars.get_spec(avatar_id)
        except KeyError:
            raise E.ApiError(E.AVATAR_NOT_FOUND, f"Avatar not found: {avatar_id}", 404) from None
        png = await asyncio.get_running_loop().run_in_executor(None, avatars.preview_png, avatar_id)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/v2/voices", tags=["voices"])
    async def voice_list(request: Request, _: Caller = Depends(caller)) -> dict[str, Any]:
        base = str(request.base_url).rstrip("/")
        return ok(
            {
                "voices": [
                    {
                        "voice_id": v.voice_id,
                        "name": v.name,
                        "language": v.language,
                        "gender": v.gender,
                        "preview_audio": f"{base}/previews/voices/{v.voice_id}.wav",
                        "engine": v.engine,
                        "support_interactive_avatar": True,
                    }
                    for v in voices().voices()
                ]
            }
        )

    @app.get("/previews/voices/{voice_id}.wav", tags=["voices"])
    async def voice_preview(voice_id: str) -> Response:
        try:
            voices().get(voice_id)
        except UnknownVoice as exc:
            raise E.ApiError(E.INVALID_PARAMETER, str(exc), 404) from None
        wav = await asyncio.get_running_loop().run_in_executor(None, voices().preview_wav, voice_id)
        return Response(wav, media_type="audio/wav", headers={"Cache-Control": "max-age=3600"})

    @app.get("/v2/user/remaining_quota", tags=["account"])
    async def remaining_quota(_: Caller = Depends(key_only)) -> dict[str, Any]:
        quota = config.remaining_quota_seconds
        return {"error": None, "data": {"remaining_quota": quota, "details": {"api": quota}}}

    register_liveavatar(app, config, lambda: state["liveavatar"])
    return app


def _validation_body(exc: RequestValidationError) -> dict[str, Any]:
    first = exc.errors()[0] if exc.errors() else {}
    kind = first.get("type", "")
    field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
    if kind == "json_invalid":
        return {"code": E.INVALID_PARAMETER, "message": "Request body is not valid JSON."}
    if kind == "missing":
        return {"code": E.MISSING_PARAMETER, "message": f"Missing parameter: {field or 'body'}"}
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return {"code": E.INVALID_PARAMETER, "message": f"Invalid parameter {field}: {message}"}


def _timestamp(value: str | None, name: str) -> float | None:
    """Unix seconds, an ISO date (``2026-11-01``) or an ISO datetime; dates are UTC midnight."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise E.invalid(f"Invalid parameter {name}: expected a date like 2026-11-01 or Unix seconds") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
