"""``python -m inference``: serve the API with uvicorn.

python -m inference                      # HOST/PORT/WORKERS from the environment
python -m inference --port 9000 --workers 2
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys

from inference.config import ConfigError, Settings
from inference.logs import configure_logging, logging_dict

log = logging.getLogger("inference")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference", description="Serve the diamond-price API.")
    parser.add_argument("--host", help="listen address (default: $HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: $PORT or 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (default: $WORKERS or 1)")
    args = parser.parse_args(argv)
    # Workers build their app from the environment, so command-line overrides go there.
    for name, value in (("HOST", args.host), ("PORT", args.port), ("WORKERS", args.workers)):
        if value is not None:
            os.environ[name] = str(value)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        configure_logging()
        log.error("configuration error: %s", exc)
        return 2
    configure_logging(settings.log_level.upper())

    import uvicorn

    uvicorn.run(
        "inference.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=logging_dict(settings.log_level.upper()),
        access_log=settings.access_log,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        proxy_headers=True,
        server_header=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
