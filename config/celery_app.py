"""The Celery application.

Wiring for at-least-once work lives in settings (CELERY_*): JSON only, acks_late with
reject_on_worker_lost, prefetch 1, visibility timeout above every countdown, time limits,
one queue per domain, task modules listed explicitly in CELERY_IMPORTS.

Pool children leave the worker's process group as they start. A signal sent to the group
(honcho on Ctrl-C, a terminal's Ctrl-C) then reaches only the main process, which shuts down
warmly: running tasks finish, then the children exit. This is what systemd's `KillMode=mixed`
does for Celery. A child whose main process dies still exits: its pipe to the parent closes.

`--loglevel` sets the level of Celery's own loggers too: settings.LOGGING names the `celery`
logger (DARKROOM_LOG_LEVEL), which would otherwise keep logging every task received and
succeeded whatever the command line says. At INFO those two lines cost about a fifth of a
solo worker's CPU per small task (1.04-1.13 ms per outbox probe task at WARNING, 1.30-1.41 at
INFO).
"""

import logging
import os

from celery import Celery
from celery.signals import after_setup_logger, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("darkroom")
app.config_from_object("django.conf:settings", namespace="CELERY")


@worker_process_init.connect
def _leave_the_workers_process_group(**_: object) -> None:
    os.setpgid(0, 0)


@after_setup_logger.connect
def _celery_loggers_follow_the_command_line(loglevel: int | str | None = None, **_: object) -> None:
    if loglevel:
        logging.getLogger("celery").setLevel(loglevel)
