"""Key rotation in one process: `python -m benchmarks.inproc_reencrypt`.

Creates a fresh database (`pp_bench_reencrypt`, PostgreSQL on `BENCH_PG_URL`'s server),
migrates it, writes `USERS` local users (20,000) with a name, e-mail and phone under one
Fernet key, then runs `reencrypt_model(LocalUser)` `ROUNDS` times (2), each time under a new
key put first (what `manage.py reencrypt_fields` does per model), and prints rows per second.
One process and PostgreSQL only: no web tier, worker or broker (a maintenance command's
speed, not the service's). Not part of `make bench`.
"""

from __future__ import annotations

import os
import time

from cryptography.fernet import Fernet

from .stack import bench_env, fresh_database, manage

DATABASE = "pp_bench_reencrypt"


def main() -> None:
    users = int(os.environ.get("USERS", "20000"))
    rounds = int(os.environ.get("ROUNDS", "2"))
    keys = [Fernet.generate_key().decode()]
    fresh_database(DATABASE)
    env = bench_env(DATABASE, EVENT_RELAY_ON_COMMIT="false", FIELD_ENCRYPTION_KEYS=keys[0])
    manage(env, "migrate", "-v", "0")
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings

    from integrations.models import LocalUser
    from petpro_booking.core import crypto
    from petpro_booking.core.model_fields import reencrypt_model

    LocalUser.objects.bulk_create(
        [
            LocalUser(id=f"u{i}", name=f"Name {i}", email=f"u{i}@example.com", phone="+49170")
            for i in range(users)
        ],
        batch_size=2000,
    )
    for number in range(1, rounds + 1):
        keys.insert(0, Fernet.generate_key().decode())
        settings.FIELD_ENCRYPTION_KEYS = keys
        crypto.reset_keys()
        began = time.perf_counter()
        rewritten = reencrypt_model(LocalUser)
        seconds = time.perf_counter() - began
        rate = rewritten / seconds
        print(f"round {number}: {rewritten} rows in {seconds:.2f} s, {rate:,.0f} rows/s")


if __name__ == "__main__":
    main()
