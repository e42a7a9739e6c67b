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

A task that imports the task modules (`app.loader.import_default_modules()`, as
`outbox.requeue_unconsumed` does) makes Celery's Django fixup run `django.setup()` again in that
pool child, which applies settings.LOGGING afresh: the root and `celery` loggers go back to
DARKROOM_LOG_LEVEL. The worker's command-line level is put back right after (the fixup's
receiver was connected first, when the app was created). The console handler itself writes to the
process's own stderr, so a reconfigured child still writes every record (settings.LOGGING).
"""

import logging
import os

from celery import Celery
from celery.signals import after_setup_logger, import_modules, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("darkroom")
app.config_from_object("django.conf:settings", namespace="CELERY")


@worker_process_init.connect
def _leave_the_workers_process_group(**_: object) -> None:
    os.setpgid(0, 0)


_command_line_loglevel: int | str | None = None


@after_setup_logger.connect
def _celery_loggers_follow_the_command_line(loglevel: int | str | None = None, **_: object) -> None:
    global _command_line_loglevel
    if loglevel:
        _command_line_loglevel = loglevel
        logging.getLogger("celery").setLevel(loglevel)


@import_modules.connect(sender=app)
def _keep_the_command_line_level_after_django_setup(**_: object) -> None:
    # Celery's own setup gave the root logger the command-line level too; a pool child inherits
    # `_command_line_loglevel` from the main process. Before Celery's setup (the worker's first
    # import of the task modules) there is nothing to keep.
    if _command_line_loglevel:
        logging.getLogger().setLevel(_command_line_loglevel)
        logging.getLogger("celery").setLevel(_command_line_loglevel)
