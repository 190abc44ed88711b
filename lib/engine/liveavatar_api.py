"""LiveAvatar's REST API on the engine (``docs/liveavatar-api.md``): the offline twin of ``api.liveavatar.com``.

Same process and port as the HeyGen-shaped ``/v1/streaming.*`` API; none of these paths collide with it:
``/v1/sessions*``, ``/v1/avatars*``, ``/v1/voices*``, ``/v1/contexts*``, ``/v1/users/credits``,
``/v1/languages``. Behaviour (credits, limits, history) is described in ``liveavatar_state.py``.

Wire shapes follow the contract: ``{"code": 1000, "data": ..., "message": "success"}`` envelopes;
errors as ``{"code": <HTTP status>, "data": null, "message": ...}``; FastAPI's own ``422 {"detail": [...]}``
for invalid bodies and queries; ``201`` on ``/start``; ``405`` for ``DELETE /v1/sessions/{id}``; ISO times
with ``Z``; ``credits_left`` as a decimal string; fractional ``credits_consumed``; pages of at most 100 as
``{count, next, previous, results}`` (``next``/``previous`` are full URLs).

Auth: ``X-API-KEY`` is the engine's API key. ``/v1/sessions/token`` needs it (a Bearer token there → 401);
``/v1/sessions/start`` needs ``Authorization: Bearer <session_token>`` (the key there → 401), and the token
starts its session once. ``/stop`` and ``/keep-alive`` take either (with a Bearer token the session is
implied). ``/v1/avatars/public`` and ``/v1/languages`` need nothing.

Decisions where the contract is silent (documented so clients can rely on them):

* Stopping a session that has already ended answers **404** with "Session … has already ended (REASON)";
  an unknown id answers 404 "Session … not found". Stopping a minted but unstarted session discards it.
* Insufficient credits and concurrency refusals answer **403** (messages contain "insufficient credits" and
  "concurrency"); they are checked when the token is minted and again on ``/start``.
* Transcript timestamps are Unix seconds (absolute) and seconds since start (relative); ``next_timestamp``
  is the last line's absolute timestamp + 1.

**LITE** sessions get a ``ws_url`` on this engine: the socket protocol, its address and its token are described
in ``liveavatar_lite.py``.

**Local extension of ``/start``.** No LiveKit server runs offline, so ``livekit_url`` and
``livekit_client_token`` are empty strings, and ``data.local`` says how to get the media straight from the
engine over WebRTC, with the engine's HeyGen-shaped streaming API::

    "local": {
      "transport": "direct-webrtc",
      "engine_session_id": "<id for /v1/streaming.* calls>",
      "offer": {"type": "offer", "sdp": "..."},      # answer it, then POST /v1/streaming.start
      "token": "<Bearer token for /v1/streaming.* of this engine session only>",
      "base_url": "http://127.0.0.1:8765",
      "endpoints": {"start": "/v1/streaming.start", "ice": "/v1/streaming.ice", "task": "/v1/streaming.task",
                    "interrupt": "/v1/streaming.interrupt", "events": "/v1/streaming.events"}
    }

The session's events arrive on the WebRTC data channel ``events`` (HeyGen's event names); what the avatar
says and what the user said (talk/chat tasks) make the LiveAvatar transcript.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from lib.engine import avatars
from lib.engine.config import EngineConfig
from lib.engine.liveavatar_lite import register_lite, ws_url
from lib.engine.liveavatar_state import (
    ENGINE_QUALITY,
    LANGUAGES,
    SANDBOX_ENGINE_AVATAR,
    ContextRecord,
    LaError,
    LiveAvatarState,
    PendingSession,
    SessionRecord,
    engine_uuid,
    transcript_page,
)
from lib.liveavatar.models import (
    MAX_PAGE_SIZE,
    SANDBOX_AVATAR_ID,
    SANDBOX_MAX_DURATION,
    Interactivity,
    SessionEndReason,
    SessionListType,
    SessionMode,
    VideoEncoding,
    VideoQuality,
)

SUCCESS = 1000
EPOCH_ISO = "2026-01-01T00:00:00Z"  # built-in avatars and voices have no creation date


def ok(data: Any = None) -> dict[str, Any]:
    return {"code": SUCCESS, "data": data, "message": "success"}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "data": None, "message": message}, status_code=status)


def _validation(loc: Sequence[str | int], msg: str, value: Any = None) -> JSONResponse:
    """A FastAPI-shaped 422 for a rule pydantic cannot express on one field."""
    detail = [{"type": "value_error", "loc": list(loc), "msg": msg, "input": value, "ctx": {}}]
    return JSONResponse({"detail": jsonable_encoder(detail)}, status_code=422)


class LiveAvatarRoute(APIRoute):
    """Routes that answer in LiveAvatar's error shapes, whatever the app's HeyGen-shaped handlers do.

    Validation, auth and state errors are raised inside the route handler, so catching them here keeps
    the rest of the engine's API (and its 400-for-validation convention) untouched.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except RequestValidationError as exc:
                return JSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)
            except LaError as exc:
                return _error(exc.status, exc.message)
            except _Reply as reply:
                return reply.response

        return handler


class _Reply(Exception):
    def __init__(self, response: JSONResponse) -> None:
        self.response = response


# --- bodies -------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VideoSettings(_Body):
    quality: VideoQuality = VideoQuality.HIGH
    encoding: VideoEncoding = VideoEncoding.H264


class AvatarPersona(_Body):
    voice_id: uuid.UUID | None = None
    context_id: uuid.UUID | None = None
    language: str = Field(default="en", min_length=1, max_length=16)


class VoiceAgent(_Body):
    id: uuid.UUID
    language: str | None = None
    dynamic_variables: dict[str, str] | None = None


class TokenBody(_Body):
    avatar_id: uuid.UUID
    mode: Literal["FULL", "LITE", "CUSTOM"] = "FULL"
    is_sandbox: bool = False
    video_settings: VideoSettings | None = None
    max_session_duration: int | None = Field(default=None, gt=0)
    avatar_persona: AvatarPersona | None = None
    voice_agent: VoiceAgent | None = None
    interactivity_type: Interactivity = Interactivity.CONVERSATIONAL
    llm_configuration_id: uuid.UUID | None = None
    dynamic_variables: dict[str, str] | None = Field(default=None, max_length=50)


class StopBody(_Body):
    session_id: uuid.UUID | None = None
    reason: SessionEndReason = SessionEndReason.UNKNOWN


class KeepAliveBody(_Body):
    session_id: uuid.UUID | None = None


class LinkBody(_Body):
    url: str = Field(min_length=1)
    faq: str = ""
    id: str | None = None


class ContextBody(_Body):
    name: str = Field(min_length=1, max_length=255)
    prompt: str = Field(min_length=1)
    opening_text: str = Field(min_length=1)
    links: list[LinkBody] = Field(default_factory=list)


# --- helpers ------------------------------------------------------------------------------------


def _page(request: Request, items: Sequence[Any], count: int, page: int, page_size: int) -> dict[str, Any]:
    more = page * page_size < count
    return {
        "count": count,
        "next": str(request.url.include_query_params(page=page + 1, page_size=page_size)) if more else None,
        "previous": str(request.url.include_query_params(page=page - 1, page_size=page_size)) if page > 1 else None,
        "results": list(items),
    }


def _slice(items: Sequence[Any], page: int, page_size: int) -> list[Any]:
    return list(items[(page - 1) * page_size : page * page_size])


def _entry(record: SessionRecord) -> dict[str, Any]:
    return record.to_entry().to_json()


def register(app: FastAPI, config: EngineConfig, state: Callable[[], LiveAvatarState]) -> None:
    """Add the LiveAvatar routes to the engine's app; ``state`` returns the twin's state once it is up."""
    router = APIRouter(route_class=LiveAvatarRoute, tags=["LiveAvatar"])

    # --- auth ---------------------------------------------------------------------------------
    def _key_matches(request: Request) -> bool:
        key = request.headers.get("x-api-key")
        return key is not None and hmac.compare_digest(key.encode(), config.api_key.reveal().encode())

    def _bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        return (auth[7:].strip() or None) if auth.lower().startswith("bearer ") else None

    def api_key(request: Request) -> None:
        if _key_matches(request):
            return
        if request.headers.get("x-api-key") is None and _bearer(request) is not None:
            raise LaError(401, "This endpoint needs the X-API-KEY header; a session token cannot be used here.")
        raise LaError(401, "Invalid or missing API key (X-API-KEY).")

    def key_or_session(request: Request) -> str | None:
        """None for the API key; else the session id the Bearer token belongs to."""
        if _key_matches(request):
            return None
        token = _bearer(request)
        if token is not None and request.headers.get("x-api-key") is None:
            session_id = state().session_of_token(token)
            if session_id is not None:
                return session_id
            raise LaError(401, "Invalid or expired session token.")
        raise LaError(401, "Invalid or missing API key (X-API-KEY) or session token.")

    def _target(body_id: uuid.UUID | None, implied: str | None) -> str:
        if implied is not None:
            if body_id is not None and str(body_id) != implied:
                raise LaError(401, "This session token belongs to another session.")
            return implied
        if body_id is None:
            raise _Reply(_validation(["body", "session_id"], "Field required with X-API-KEY: name the session"))
        return str(body_id)

    # --- sessions -----------------------------------------------------------------------------
    @router.post("/v1/sessions/token")
    async def create_token(body: TokenBody, _: None = Depends(api_key)) -> dict[str, Any]:
        la = state()
        mode = SessionMode.LITE if body.mode in ("LITE", "CUSTOM") else SessionMode.FULL
        if mode is SessionMode.FULL and (body.avatar_persona is None) == (body.voice_agent is None):
            raise _Reply(
                _validation(["body", "avatar_persona"], "Provide exactly one of avatar_persona or voice_agent")
            )
        if body.voice_agent is not None:
            raise LaError(
                404, f"Voice agent {body.voice_agent.id} not found in your space (the local engine has none)."
            )
        if body.llm_configuration_id is not None:
            # LiveAvatar accepts the token and fails on /start; refusing at once says the same thing sooner.
            raise LaError(400, f"LLM configuration with id '{body.llm_configuration_id}' not found in your space")
        avatar_uuid = str(body.avatar_id)
        found = la.avatar_for(avatar_uuid)
        if found is None:
            raise LaError(404, f"Avatar {avatar_uuid} not found.")
        engine_avatar, _public = found
        if body.is_sandbox and avatar_uuid != SANDBOX_AVATAR_ID:
            raise LaError(400, f"Sandbox sessions only support the avatar Wayne ({SANDBOX_AVATAR_ID}).")
        if body.is_sandbox:
            if body.max_session_duration is not None and body.max_session_duration > SANDBOX_MAX_DURATION:
                raise LaError(
                    400,
                    f"max_session_duration ({body.max_session_duration}s) exceeds the maximum allowed "
                    f"({SANDBOX_MAX_DURATION}s)",
                )
            max_duration = body.max_session_duration or SANDBOX_MAX_DURATION
        else:
            max_duration = min(body.max_session_duration or config.max_duration, config.max_duration)
        persona = body.avatar_persona or AvatarPersona()
        voice = la.default_voice(engine_avatar)
        if persona.voice_id is not None:
            chosen = la.voice_for(str(persona.voice_id))
            if chosen is None:
                raise LaError(404, f"Voice {persona.voice_id} not found.")
            voice = chosen
        knowledge_base = None
        context_id = str(persona.context_id) if persona.context_id else None
        if context_id is not None:
            context = la.store.get_context(context_id)
            if context is None:
                raise LaError(404, f"Context {context_id} not found.")
            knowledge_base = context.prompt
        video = body.video_settings or VideoSettings()
        session_id = str(uuid.uuid4())
        pending = PendingSession(
            session_id=session_id,
            token=la.new_token(session_id),
            minted_at=la.now(),
            mode=mode,
            is_sandbox=body.is_sandbox,
            avatar_uuid=avatar_uuid,
            engine_avatar=engine_avatar,
            voice_id=voice.voice_id,
            quality=ENGINE_QUALITY[video.quality.value],
            encoding=video.encoding.value,
            max_duration=max_duration,
            language=persona.language,
            context_id=context_id,
            knowledge_base=knowledge_base,
        )
        la.mint(pending)
        return ok({"session_id": session_id, "session_token": pending.token})

    @router.post("/v1/sessions/start", status_code=201)
    async def start(request: Request) -> dict[str, Any]:
        token = _bearer(request)
        if token is None:
            if request.headers.get("x-api-key") is not None:
                raise LaError(
                    401, "POST /v1/sessions/start needs Authorization: Bearer <session_token>, not X-API-KEY."
                )
            raise LaError(401, "Missing session token (Authorization: Bearer <session_token>).")
        live, offer = await state().start(token)
        streaming_token = state().manager.create_token()
        state().manager.tokens[streaming_token].session_id = live.engine.session_id
        return ok(
            {
                "session_id": live.record.id,
                "livekit_url": "",  # no LiveKit offline: see data.local
                "livekit_client_token": "",
                "livekit_agent_token": None,
                "max_session_duration": live.engine.max_duration,
                "ws_url": ws_url(str(request.base_url), live.record.id, live.ws_token) if live.ws_token else None,
                "local": {
                    "transport": "direct-webrtc",
                    "engine_session_id": live.engine.session_id,
                    "offer": offer,
                    "token": streaming_token,
                    "base_url": str(request.base_url).rstrip("/"),
                    "endpoints": {
                        "start": "/v1/streaming.start",
                        "ice": "/v1/streaming.ice",
                        "task": "/v1/streaming.task",
                        "interrupt": "/v1/streaming.interrupt",
                        "events": "/v1/streaming.events",
                    },
                },
            }
        )

    @router.post("/v1/sessions/stop")
    async def stop(body: StopBody, implied: str | None = Depends(key_or_session)) -> dict[str, Any]:
        await state().stop(_target(body.session_id, implied), body.reason)
        return ok(None)

    @router.post("/v1/sessions/keep-alive")
    async def keep_alive(body: KeepAliveBody, implied: str | None = Depends(key_or_session)) -> dict[str, Any]:
        state().keep_alive(_target(body.session_id, implied))
        return ok(None)

    @router.get("/v1/sessions")
    async def list_sessions(
        request: Request,
        type: SessionListType,
        page: int = Query(1, ge=1),
        page_size: int = Query(20, ge=1, le=MAX_PAGE_SIZE),
        avatar_id: uuid.UUID | None = None,
        embed_id: uuid.UUID | None = None,
        context_id: uuid.UUID | None = None,
        _: None = Depends(api_key),
    ) -> dict[str, Any]:
        avatar = str(avatar_id) if avatar_id else None
        context = str(context_id) if context_id else None
        if embed_id is not None:
            return ok(_page(request, [], 0, page, page_size))  # the engine has no embeds
        if type is SessionListType.ACTIVE:
            rows = state().active(avatar, context)
            return ok(_page(request, [_entry(r) for r in _slice(rows, page, page_size)], len(rows), page, page_size))
        count, records = state().store.historic_page(page, page_size, avatar, context)
        return ok(_page(request, [_entry(r) for r in records], count, page, page_size))

    @router.get("/v1/sessions/{session_id}")
    async def get_session(session_id: uuid.UUID, _: None = Depends(api_key)) -> dict[str, Any]:
        record = state().entry(str(session_id))
        if record is None:
            raise LaError(404, f"Session {session_id} not found.")
        return ok(_entry(record))

    @router.get("/v1/sessions/{session_id}/transcript")
    async def transcript(
        session_id: uuid.UUID,
        start_timestamp: int | None = None,
        end_timestamp: int | None = None,
        _: None = Depends(api_key),
    ) -> dict[str, Any]:
        active, lines = state().transcript(str(session_id))
        chosen, following = transcript_page(lines, start_timestamp, end_timestamp)
        return ok({"session_active": active, "next_timestamp": following, "transcript_data": chosen})

    # --- avatars, voices ----------------------------------------------------------------------
    def _avatar(request: Request, engine_id: str, avatar_id: str, name: str) -> dict[str, Any]:
        spec = avatars.get_spec(engine_id)
        voice = state().default_voice(engine_id)
        return {
            "id": avatar_id,
            "name": name,
            "created_at": EPOCH_ISO,
            "updated_at": EPOCH_ISO,
            "error_message": None,
            "space_id": None,
            "type": "VIDEO",
            "status": "ACTIVE",
            "preview_url": f"{str(request.base_url).rstrip('/')}/previews/avatars/{spec.avatar_id}.png",
            "is_expired": False,
            "default_voice": {"id": engine_uuid("voice", voice.voice_id), "name": voice.name},
            "is_1080p": True,
        }

    def _own_avatars(request: Request) -> list[dict[str, Any]]:
        return [_avatar(request, a.avatar_id, engine_uuid("avatar", a.avatar_id), a.name) for a in avatars.AVATARS]

    def _public_avatars(request: Request) -> list[dict[str, Any]]:
        return [_avatar(request, SANDBOX_ENGINE_AVATAR, SANDBOX_AVATAR_ID, "Wayne")]

    @router.get("/v1/avatars")
    async def avatar_list(
        request: Request,
        page: int = Query(1, ge=1),
        page_size: int = Query(20, ge=1, le=MAX_PAGE_SIZE),
        _: None = Depends(api_key),
    ) -> dict[str, Any]:
        items = _own_avatars(request)
        return ok(_page(request, _slice(items, page, page_size), len(items), page, page_size))

    @router.get("/v1/avatars/public")
    async def public_avatar_list(
        request: Request, page: int = Query(1, ge=1), page_size: int = Query(20, ge=1, le=MAX_PAGE_SIZE)
    ) -> dict[str, Any]:
        items = _public_avatars(request)
        return ok(_page(request, _slice(items, page, page_size), len(items), page, page_size))

    @router.get("/v1/avatars/{avatar_id}")
    async def avatar_get(request: Request, avatar_id: uuid.UUID, _: None = Depends(api_key)) -> dict[str, Any]:
        for item in _own_avatars(request) + _public_avatars(request):
            if item["id"] == str(avatar_id):
                return ok(item)
        raise LaError(404, f"Avatar {avatar_id} not found.")

    def _voices() -> list[dict[str, Any]]:
        return [
            {
                "id": engine_uuid("voice", v.voice_id),
                "name": v.name,
                "language": v.language,
                "gender": v.gender,
                "created_at": EPOCH_ISO,
                "updated_at": EPOCH_ISO,
                "tags": [v.engine],
                "description": f"Local engine voice {v.voice_id}",
            }
            for v in state().voices.voices()
        ]

    @router.get("/v1/voices")
    async def voice_list(
        request: Request,
        page: int = Query(1, ge=1),
        page_size: int = Query(20, ge=1, le=MAX_PAGE_SIZE),
        voice_type: Literal["public", "private"] = "public",
        _: None = Depends(api_key),
    ) -> dict[str, Any]:
        items = _voices() if voice_type == "public" else []
        return ok(_page(request, _slice(items, page, page_size), len(items), page, page_size))

    @router.get("/v1/voices/{voice_id}")
    async def voice_get(voice_id: uuid.UUID, _: None = Depends(api_key)) -> dict[str, Any]:
        for item in _voices():
            if item["id"] == str(voice_id):
                return ok(item)
        raise LaError(404, f"Voice {voice_id} not found.")

    # --- contexts -----------------------------------------------------------------------------
    @router.get("/v1/contexts")
    async def context_list(
        request: Request,
        page: int = Query(1, ge=1),
        page_size: int = Query(20, ge=1, le=MAX_PAGE_SIZE),
        _: None = Depends(api_key),
    ) -> dict[str, Any]:
        count, records = state().store.contexts_page(page, page_size)
        return ok(_page(request, [r.summary() for r in records], count, page, page_size))

    def _links(body: ContextBody) -> tuple[dict[str, Any], ...]:
        return tuple({"url": x.url, "faq": x.faq, "id": x.id or str(uuid.uuid4())} for x in body.links)

    @router.post("/v1/contexts")
    async def context_create(body: ContextBody, _: None = Depends(api_key)) -> dict[str, Any]:
        now = state().now()
        record = ContextRecord(str(uuid.uuid4()), body.name, body.prompt, body.opening_text, _links(body), now, now)
        state().store.put_context(record)
        return ok(record.detail())

    def _context(context_id: uuid.UUID) -> ContextRecord:
        record = state().store.get_context(str(context_id))
        if record is None:
            raise LaError(404, f"Context {context_id} not found.")
        return record

    @router.get("/v1/contexts/{context_id}")
    async def context_get(context_id: uuid.UUID, _: None = Depends(api_key)) -> dict[str, Any]:
        return ok(_context(context_id).detail())

    @router.patch("/v1/contexts/{context_id}")
    async def context_update(context_id: uuid.UUID, body: ContextBody, _: None = Depends(api_key)) -> dict[str, Any]:
        old = _context(context_id)
        record = ContextRecord(
            old.id, body.name, body.prompt, body.opening_text, _links(body), old.created_at, state().now()
        )
        state().store.put_context(record)
        return ok(record.detail())

    @router.delete("/v1/contexts/{context_id}")
    async def context_delete(context_id: uuid.UUID, _: None = Depends(api_key)) -> dict[str, Any]:
        if not state().store.delete_context(str(context_id)):
            raise LaError(404, f"Context {context_id} not found.")
        return ok(None)

    # --- account ------------------------------------------------------------------------------
    @router.get("/v1/users/credits")
    async def credits(_: None = Depends(api_key)) -> dict[str, Any]:
        return ok({"credits_left": f"{max(0.0, state().balance()):.2f}"})

    @router.get("/v1/languages")
    async def languages() -> dict[str, Any]:
        return ok([{"language": name, "code": code} for code, name in LANGUAGES])

    app.include_router(router)
    register_lite(app, state)
