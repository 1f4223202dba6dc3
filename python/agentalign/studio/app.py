"""The studio's HTTP side: pages, the JSON API they call, and `agentalign studio` itself.

FastAPI on uvicorn; pages are server-rendered Jinja2 templates (autoescaped: rubrics and names
are shown as text) with a little JavaScript, and every asset is served from this package (no
CDN). Loopback by default; any other address needs a token, sent as `Authorization: Bearer
TOKEN` or set once as a cookie by opening `/?token=TOKEN`. Errors are one-line JSON messages
({"error": ...}) with status 400 (bad input), 401 (token) or 404 (unknown path).
"""

from __future__ import annotations

import hmac
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from agentalign.errors import UserError
from agentalign.network import is_loopback
from agentalign.spec import PADS
from agentalign.studio.media import island_map
from agentalign.studio.service import Studio
from agentalign.studio.state import StudioError
from agentalign.studio.studio_config import StudioSettings

HERE = Path(str(resources.files("agentalign.studio")))
COOKIE = "agentalign_studio_token"
PAGES = ("label", "learn", "personalities")


def create_app(studio: Studio, token: str | None = None) -> FastAPI:
    app = FastAPI(title="agentalign studio", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                            autoescape=select_autoescape(["html"]))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def check_token(request: Request, call_next: Any) -> Response:
        if token is None:
            return await call_next(request)
        given = request.query_params.get("token")
        if given is not None and hmac.compare_digest(given, token):
            response = RedirectResponse(request.url.path, status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
            return response
        header = request.headers.get("authorization", "")
        sent = header.removeprefix("Bearer ") if header.startswith("Bearer ") else \
            request.cookies.get(COOKIE, "")
        if not hmac.compare_digest(sent, token):
            reason = "missing" if not sent else "wrong"
            return JSONResponse({"error": f"{reason} token: open the studio once as "
                                 "/?token=TOKEN or send 'Authorization: Bearer TOKEN'"},
                                status_code=401)
        return await call_next(request)

    @app.exception_handler(UserError)
    async def user_error(request: Request, e: UserError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=400)

    def page(name: str) -> HTMLResponse:
        html = templates.get_template(f"{name}.html").render(
            page=name, pages=PAGES, pads=PADS, personalities=studio.state.personalities(),
            run=str(studio.run))
        return HTMLResponse(html)

    @app.get("/")
    def index() -> RedirectResponse:
        return RedirectResponse("/label", status_code=303)

    @app.get("/label", response_class=HTMLResponse)
    def label_page() -> HTMLResponse:
        return page("label")

    @app.get("/learn", response_class=HTMLResponse)
    def learn_page() -> HTMLResponse:
        return page("learn")

    @app.get("/personalities", response_class=HTMLResponse)
    def personalities_page() -> HTMLResponse:
        return page("personalities")

    @app.get("/map.png")
    def map_png() -> Response:
        return Response(island_map()[0], media_type="image/png",
                        headers={"Cache-Control": "max-age=3600"})

    # -- personalities and labels --------------------------------------------------------------

    @app.get("/api/personalities")
    def personalities() -> list[dict[str, Any]]:
        return studio.state.personalities()

    @app.post("/api/personalities")
    async def add_personality(request: Request) -> dict[str, Any]:
        body = await _body(request)
        return studio.state.add_personality(body.get("name", ""), body.get("rubric", ""),
                                            body.get("pad", ""), body.get("intent") or None)

    @app.get("/api/next")
    def next_pair(personality: str = "", annotator: str = "") -> dict[str, Any]:
        served = studio.next_pair(personality, annotator)
        p = studio.state.personality(personality)
        side = {}
        for key, trajectory in (("left", served.left), ("right", served.right)):
            corpus, episode = studio.state.trajectory(trajectory)
            side[key] = {"trajectory": trajectory, **studio.clips.info(corpus, episode)}
        return {"pair": served.pair, "how": served.how, "shown_left": served.shown_left,
                "rubric": p["rubric"], **side}

    @app.get("/api/clip/{trajectory}.png")
    def clip_png(trajectory: int) -> Response:
        corpus, episode = studio.state.trajectory(trajectory)
        return Response(studio.clips.frames_png(corpus, episode), media_type="image/png",
                        headers={"Cache-Control": "max-age=86400, immutable"})

    @app.post("/api/answer")
    async def answer(request: Request) -> dict[str, Any]:
        body = await _body(request)
        for key in ("personality", "pair", "answer", "shown_left"):
            if key not in body:
                raise StudioError(f"answer: missing {key!r}")
        if not isinstance(body["pair"], int) or isinstance(body["pair"], bool):
            raise StudioError(f"answer: pair must be a pair id, got {body['pair']!r}")
        return studio.answer(body["personality"], body["pair"], body["answer"],
                             body["shown_left"], body.get("annotator", ""),
                             body.get("request") or None)

    @app.get("/api/stats")
    def stats(personality: str = "") -> dict[str, Any]:
        studio.state.personality(personality)
        out = studio.state.stats(personality)
        out["budget"] = studio.settings.budget
        out["pool"] = studio.state.pool()
        return out

    @app.post("/api/refit")
    async def refit(request: Request) -> dict[str, Any]:
        body = await _body(request)
        studio.state.personality(body.get("personality", ""))
        return {"accuracy": studio.refit(body["personality"])}

    @app.get("/api/labels.jsonl")
    def export_labels(personality: str | None = None) -> Response:
        from agentalign.train.label_io import record

        lines = [json.dumps(record(r)) for r in studio.state.store.answers(personality)]
        return Response("".join(line + "\n" for line in lines),
                        media_type="application/x-ndjson", headers={
                            "Content-Disposition": "attachment; filename=labels.jsonl"})

    # -- jobs ----------------------------------------------------------------------------------

    @app.get("/api/jobs")
    def jobs() -> list[dict[str, Any]]:
        return studio.jobs.list()

    @app.post("/api/align")
    async def align(request: Request) -> dict[str, Any]:
        body = await _body(request)
        return studio.start_align(body.get("personality", ""), body.get("start") or None)

    # -- personalities: cards and live play ----------------------------------------------------

    @app.get("/api/cards")
    def cards() -> list[dict[str, Any]]:
        found = {}
        for folder in studio.player.folders:
            for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                if (path.with_suffix(".onnx")).exists() and path.stem not in found:
                    try:
                        card = json.loads(path.read_text())
                    except (OSError, json.JSONDecodeError):
                        continue
                    heatmap = heatmap_of(path.stem, card.get("target"))
                    found[path.stem] = {**card, "folder": str(folder),
                                        "heatmap": heatmap and f"/api/heatmap/{path.stem}.png"}
        return list(found.values())

    def heatmap_of(name: str, target: str | None) -> Path | None:
        """A studio personality's own evaluation heatmap, or the pipeline's for its runners."""
        for folder in studio.player.folders:
            if (folder / f"{name}.heatmap.png").exists():
                return folder / f"{name}.heatmap.png"
        if target and name == f"{target}-runner":
            found = studio.run / "eval" / f"{target}-aligned" / "heatmap.png"
            return found if found.exists() else None
        return None

    @app.get("/api/heatmap/{name}.png")
    def heatmap(name: str) -> Response:
        card = studio.player.model(name).with_suffix(".json")  # the personality's own card
        try:
            target = json.loads(card.read_text()).get("target")
        except (OSError, json.JSONDecodeError):
            target = None
        path = heatmap_of(name, target)
        if path is None:
            raise StudioError(f"no heatmap for {name!r}: evaluate it first")
        return Response(path.read_bytes(), media_type="image/png")

    @app.post("/api/play")
    async def play(request: Request) -> dict[str, Any]:
        body = await _body(request)
        key, view = studio.player.start(body.get("personality", ""), int(body.get("spawn", 0)))
        return {"session": key, **view}

    @app.post("/api/play/{key}/step")
    def play_step(key: str) -> dict[str, Any]:
        return studio.player.step(key)

    @app.post("/api/play/{key}/swap")
    async def play_swap(key: str, request: Request) -> dict[str, Any]:
        body = await _body(request)
        return studio.player.swap(key, body.get("personality", ""))

    @app.post("/api/play/{key}/restart")
    async def play_restart(key: str, request: Request) -> dict[str, Any]:
        body = await _body(request)
        return studio.player.restart(key, int(body.get("spawn", 0)))

    return app


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError as e:
        raise StudioError(f"request body is not JSON ({e.msg})") from None
    if not isinstance(body, dict):
        raise StudioError("request body must be a JSON object")
    return body


@dataclass
class StudioResult:
    url: str
    labels: int


@contextmanager
def running(studio: Studio, token: str | None = None, host: str = "127.0.0.1", port: int = 0):
    """Serve in a background thread (tests, benchmarks); yields the base URL."""
    config = uvicorn.Config(create_app(studio, token), host=host, port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise StudioError("the studio did not start (is the port free?)")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(10)


def serve(settings: StudioSettings, run: Path, token: str | None = None, pool: bool = True, *,
          progress: bool = True) -> StudioResult:
    """`agentalign studio`: serve until interrupted; jobs left unfinished resume next time."""
    if not is_loopback(settings.host) and not token:
        raise UserError(f"refusing to serve the studio on {settings.host} without a token: "
                        "anyone who can reach it could label and start jobs; set one "
                        "(--token-file or AGENTALIGN_STUDIO_TOKEN) or bind 127.0.0.1")
    studio = Studio(run, settings)
    resumed = studio.jobs.resume()
    if pool:
        studio.start_pool()
    url = f"http://{settings.host}:{settings.port}"
    print(f"agentalign studio on {url} for {run}" + (f" (resumed jobs: {', '.join(resumed)})"
                                                    if resumed else ""), flush=True)
    try:
        uvicorn.run(create_app(studio, token), host=settings.host, port=settings.port,
                    log_level="warning")
    finally:
        studio.close()
    return StudioResult(url, studio.state.store.counts()["labels"])


def summary(result: StudioResult) -> str:
    return f"studio on {result.url} stopped; the store holds {result.labels} labels"
