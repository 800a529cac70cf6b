"""``manage.py seed_demo_users``: a few hundred made-up users, some with data SuprSend refuses."""

from __future__ import annotations

import random
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils.translation import ngettext

from example_project.accounts.models import Device, User

FIRST = [
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Radia",
    "Linus",
    "Margaret",
    "Tim",
    "Hedy",
    "John",
    "Katherine",
    "Guido",
    "Sophie",
    "Yukihiro",
]
LAST = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Perlman",
    "Torvalds",
    "Hamilton",
    "Berners-Lee",
    "Lamarr",
    "Backus",
    "Johnson",
    "van Rossum",
    "Wilson",
    "Matsumoto",
]
PLACES = [
    ("en", "Europe/London", "+44"),
    ("de", "Europe/Berlin", "+49"),
    ("fr", "Europe/Paris", "+33"),
    ("ja", "Asia/Tokyo", "+81"),
    ("en", "America/New_York", "+1"),
    ("hi", "Asia/Kolkata", "+91"),
    ("es", "America/Mexico_City", "+52"),
]
# Values a form may let through but SuprSend refuses: these users show as failed.
INVALID = [
    {"phone": "12345"},
    {"language": "english"},
    {"timezone": "Mars/Olympus"},
    {"whatsapp": "+1-not-a-number"},
]


class Command(BaseCommand):
    help = "Create demo users (every 20th with a value SuprSend refuses), unless there are some."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--users", type=int, default=300, help="How many (default 300).")
        parser.add_argument("--seed", type=int, default=7, help="Random seed, for the same data.")

    def handle(self, *args: Any, users: int, seed: int, **options: Any) -> None:
        if User.objects.filter(is_superuser=False).exists():
            self.stdout.write("Demo users exist already; none created.")
            return
        rng = random.Random(seed)
        # bulk_create sends no signals: `manage.py suprsend_backfill` pushes them afterwards.
        with transaction.atomic():
            created = User.objects.bulk_create(demo_user(rng, n) for n in range(1, users + 1))
            Device.objects.bulk_create(
                device for user in created for device in demo_devices(rng, user)
            )
        self.stdout.write(
            ngettext(
                "Created %(n)d demo user; run suprsend_backfill to push it.",
                "Created %(n)d demo users; run suprsend_backfill to push them.",
                len(created),
            )
            % {"n": len(created)}
        )


def demo_user(rng: random.Random, n: int) -> User:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    language, timezone, prefix = rng.choice(PLACES)
    phone = f"{prefix}{rng.randrange(10**9, 10**10)}"
    user = User(
        username=f"{first.lower()}.{last.lower().replace(' ', '')}{n}",
        first_name=first,
        last_name=last,
        email=f"{first.lower()}.{n}@example.com",
        phone=phone,
        whatsapp=phone if rng.random() < 0.5 else "",
        language=language,
        timezone=timezone,
        plan=rng.choice(User.Plan.values),
    )
    if n % 20 == 0:
        for field, value in INVALID[(n // 20) % len(INVALID)].items():
            setattr(user, field, value)
    user.set_unusable_password()
    return user


def demo_devices(rng: random.Random, user: User) -> list[Device]:
    return [
        Device(user=user, platform=rng.choice(Device.Platform.values), token=f"tok-{user.pk}-{i}")
        for i in range(rng.choice((0, 0, 1, 2)))
    ]
