"""Build the app inside a uvicorn worker process (`meterd serve --workers N`).

The parent process validated the settings and the config; it hands them to each
worker through one environment variable, read when the worker calls the factory.
"""

from __future__ import annotations

import os

import msgspec
from starlette.applications import Starlette

from meterd.config.loader import load_config, sample_config
from meterd.http.app import create_app
from meterd.http.gc_tuning import tune_for_serving
from meterd.http.protocol import limit_worker_protocol
from meterd.settings import ServerSettings
from meterd.storage import open_store

SETTINGS_ENV = "METERD_WORKER_SETTINGS"


class WorkerSettings(msgspec.Struct):
    settings: ServerSettings
    config_path: str | None


def worker_environment(settings: ServerSettings, config_path: str | None) -> str:
    return msgspec.json.encode(WorkerSettings(settings, config_path)).decode()


def app_for_worker() -> Starlette:
    handed = msgspec.json.decode(os.environ[SETTINGS_ENV], type=WorkerSettings)
    path = handed.config_path
    config = sample_config() if path is None else load_config(path)
    settings = handed.settings
    limit_worker_protocol(
        request_timeout_s=settings.request_timeout_s, max_connections=settings.max_connections
    )
    store = open_store(settings.database_url, max_pending_events=settings.max_pending_events)
    app = create_app(settings, config, store)
    tune_for_serving()
    return app
