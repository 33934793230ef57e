"""A Starlette (ASGI) app with a lifespan, served at /run/<name>."""

import contextlib

from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

STATE = {"startups": 0}


@contextlib.asynccontextmanager
async def lifespan(app):
    STATE["startups"] += 1
    yield


async def tea(request):
    body = await request.body()
    resp = Response(body or b"short and stout", status_code=418, media_type="text/plain")
    resp.headers["X-Tea"] = "earl grey"
    resp.set_cookie("kettle", "on")
    return resp


async def echo(request):
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "rest": request.path_params["rest"],
            "root_path": request.scope.get("root_path"),
            "query": {k: request.query_params.getlist(k) for k in request.query_params},
            "cookie": request.cookies.get("a"),
            "startups": STATE["startups"],
        }
    )


async def binary(request):
    body = await request.body()
    return Response(body or bytes(range(256)), media_type="application/octet-stream")


app = Starlette(
    routes=[
        Route("/tea", tea, methods=["GET", "POST"]),
        Route("/echo/{rest:path}", echo, methods=["GET", "POST"]),
        Route("/binary", binary, methods=["GET", "POST"]),
    ],
    lifespan=lifespan,
)
