"""``openvla serve``: the `/act` policy server (FastAPI + uvicorn) over an exported model (DESIGN §11).

    openvla serve --model-dir models/openvla-embedded-hf            # http://127.0.0.1:8000
    curl http://127.0.0.1:8000/health

POST ``/act`` with a json-numpy body ``{"image": uint8 HxWx3, "instruction": str, "unnorm_key": str?}`` returns
the action (json-numpy); ``openvla.serve.ActClient`` does both ends. Not a DVC stage: it runs until Ctrl-C.
An OFT model also takes ``"proprio"`` (the raw robot state) and, with ``serve.execution`` open_loop / ensemble
(``--execution``), ``"session"`` / ``"reset"``: the server then executes each session's chunks and answers one action
per request (``openvla/serve/sessions.py``). ``serve.ensemble_decay`` and ``serve.max_sessions`` come from params.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def main(
    model_dir: Annotated[Path, typer.Option(help="Exported HF model directory (models/<name>-hf).")] = Path(
        "models/openvla-embedded-hf"
    ),
    host: Annotated[
        str | None, typer.Option(help="Bind address (default serve.host = 127.0.0.1; 0.0.0.0 exposes it).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default serve.port).")] = None,
    execution: Annotated[
        str | None,
        typer.Option(
            help="chunk: answer the model's (K, D) chunk; open_loop / ensemble: execute chunks per client session, "
            "answer one action (default serve.execution)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="auto (cuda when available), cpu, cuda, cuda:1 ...")] = "auto",
    dtype: Annotated[
        str, typer.Option(help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16.")
    ] = "auto",
    params: Annotated[Path, typer.Option(help="params.yaml to read the `serve` section.")] = Path("params.yaml"),
) -> None:
    """Serve a model over HTTP: POST /act (image + instruction → action), GET /health."""
    import dataclasses

    from openvla.config import load_section
    from openvla.logging_utils import setup_logging
    from openvla.serve.server import run_server

    setup_logging()
    if execution is not None and execution not in ("chunk", "open_loop", "ensemble"):
        raise typer.BadParameter(f"expected chunk, open_loop or ensemble, got {execution!r}", param_hint="--execution")
    cfg = load_section(params, "serve")
    overrides = {k: v for k, v in (("host", host), ("port", port), ("execution", execution)) if v is not None}
    run_server(model_dir, dataclasses.replace(cfg, **overrides), device=device, dtype=dtype)
