"""Fail fast, in one line, when PostgreSQL or Redis is unreachable."""

from __future__ import annotations

from typing import Any

import psycopg
import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

HINT_PG = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
HINT_REDIS = 'start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no'
HINT_DOCKER = "(or: docker compose up -d postgres redis)"


class Command(BaseCommand):
    help = "Check that PostgreSQL (admin URL) and Redis answer; exit 1 with a hint if not."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with psycopg.connect(settings.DATABASE_ADMIN_URL, connect_timeout=3) as conn:
                version = conn.info.server_version
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CommandError(
                f"PostgreSQL is not reachable at {settings.DATABASE_ADMIN_URL} ({first}); {HINT_PG} {HINT_DOCKER}"
            ) from None
        if version < 150000:
            raise CommandError(f"PostgreSQL {version // 10000} found; Darkroom needs PostgreSQL >= 15.")
        try:
            info = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=3).info("server")
        except redis.RedisError as exc:
            raise CommandError(
                f"Redis is not reachable at {settings.REDIS_URL} ({exc}); {HINT_REDIS} {HINT_DOCKER}"
            ) from None
        if int(str(info["redis_version"]).split(".")[0]) < 7:
            raise CommandError(f"Redis {info['redis_version']} found; Darkroom needs Redis >= 7.")
        self.stdout.write(
            f"services ok: PostgreSQL {version // 10000}.{version % 10000}, Redis {info['redis_version']}"
        )
