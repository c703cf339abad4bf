"""The yardstick of the API benchmark: a bare Starlette JSON endpoint, served by the same uvicorn
as `corral serve`, measured in the same run on the same cores.

    python -m bench.bare PORT
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def thing(request: Request) -> JSONResponse:
    return JSONResponse({"data": {"id": int(request.path_params["thing_id"]), "name": "bare"}})


app = Starlette(routes=[Route("/things/{thing_id}", thing)])

if __name__ == "__main__":
    # an access log line per request, as `corral serve` writes
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="info")
