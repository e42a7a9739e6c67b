"""`manage.py announcement_bench [--recipients 100000 | --smoke] [--mailer postmark|smtp]`: one
announcement to N attendees, from "send" to every e-mail accepted by a local stand-in of the mail
service. Prints progress and the
figures, writes JSON (default bench-results/announcements.json), exits 1 when the target
(all delivered, once, within 60 s) is missed. Stop other workers first (`make run`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.notifications.bench import run_bench
from apps.outbox.bench import write_result


class Command(BaseCommand):
    help = "Announcement fan-out benchmark: recipients delivered by e-mail, end to end."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--recipients", type=int, default=100_000, help="attendees who get the announcement")
        parser.add_argument(
            "--mailer", choices=["postmark", "smtp"], default="postmark", help="batch API or one SMTP message at a time"
        )
        parser.add_argument("--concurrency", type=int, default=2, help="worker child processes")
        parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
        parser.add_argument("--max-backlog", type=int, default=1000, help="refuse to run behind more pending messages")
        parser.add_argument("--smoke", action="store_true", help="2,000 recipients (CI smoke), not for figures")
        parser.add_argument("--json-out", default=str(Path(settings.BASE_DIR) / "bench-results" / "announcements.json"))

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = run_bench(
                recipients=2000 if options["smoke"] else options["recipients"],
                mailer=options["mailer"],
                concurrency=options["concurrency"],
                max_backlog=options["max_backlog"],
                timeout=60.0 if options["smoke"] else options["timeout"],
                log=self.stdout.write,
            )
        except RuntimeError as exc:
            write_result({"pass": False, "summary": f"refused: {exc}"}, Path(options["json_out"]))
            self.stdout.write(self.style.ERROR(f"FAIL refused: {exc}"))
            raise SystemExit(1) from exc
        write_result(result, Path(options["json_out"]))
        self.stdout.write(json.dumps(result["results"]))
        self.stdout.write(("PASS " if result["pass"] else "FAIL ") + result["summary"])
        self.stdout.write(f"json: {options['json_out']}")
        if not result["pass"]:
            raise SystemExit(1)
