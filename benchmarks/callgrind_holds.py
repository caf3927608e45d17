"""Instructions per hold in one process, counted by callgrind:
`python -m benchmarks.callgrind_holds`.

On this VM a hold's CPU time moves by ±20 % from run to run (the other core's load, the
hypervisor), so a change worth 2 % cannot be seen in `benchmarks.inproc_holds`. valgrind's
callgrind counts the instructions the process executes: the same round of two runs in one
session agrees within about 1 % (between sessions the count of one build moved by 6 %:
docs/benchmarks.md), so compare two versions of the hold path run one after the other. It does
not say how fast a hold is (a syscall, a cache miss or a wait costs no more instructions than
an addition).

Boots the topology of `benchmarks/topology.py` (private Redis, stubs, RabbitMQ, web, worker,
beat; no baseline), then runs a child Python under `valgrind --tool=callgrind` with
instrumentation off: it sets Django up with the production settings (`SETTINGS` names another
module, e.g. a variant to compare), sends `WARM` holds (50), and only the next `HOLDS` holds
(200) are counted (`callgrind_control -i on/off` around them). `ROUNDS` children (2) on fresh
slots; each prints its instructions per hold. LOCAL_CACHE_SECONDS is raised so that no owner's
pets expire from the process cache in the middle of a round. Not part of `make bench`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .topology import Options, Topology


def _sizes() -> tuple[int, int]:
    return int(os.environ.get("WARM", "50")), int(os.environ.get("HOLDS", "200"))


def child(stack_file: str, first_slot: int) -> None:
    """Runs under valgrind: warm up, say READY, wait for GO, count, say DONE, wait for END."""
    stack = json.loads(Path(stack_file).read_text())
    os.environ.update(stack["env"])
    os.environ["DJANGO_SETTINGS_MODULE"] = os.environ.get(
        "SETTINGS", "petpro_booking.settings.production"
    )
    os.environ["LOCAL_CACHE_SECONDS"] = "3600"
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    from .inproc_holds import hold_caller

    call = hold_caller(WSGIHandler())
    owners, slots = stack["seed"]["owners"], stack["seed"]["slots"]
    warm, holds = _sizes()
    next_slot = first_slot
    for pet, token in owners[:warm]:
        call({"slot_id": slots[next_slot], "pet_id": pet}, token)
        next_slot += 1
    print("READY", flush=True)
    sys.stdin.readline()
    answers: dict[str, int] = {}
    for index in range(holds):
        pet, token = owners[index % warm]
        answer = call({"slot_id": slots[next_slot], "pet_id": pet}, token)
        next_slot += 1
        answers[answer] = answers.get(answer, 0) + 1
    print(f"DONE {json.dumps(answers)}", flush=True)
    sys.stdin.readline()


def count_round(stack_file: str, first_slot: int, work_dir: Path) -> tuple[int, dict]:
    """(instructions per counted hold, answers by status) of one child."""
    out = work_dir / f"callgrind.{first_slot}.out"
    log = work_dir / f"callgrind.{first_slot}.log"
    process = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.callgrind_holds",
            "--child",
            stack_file,
            str(first_slot),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert process.stdin is not None
    assert process.stdout is not None

    def expect(word: str) -> str:
        line = process.stdout.readline()
        if not line.startswith(word):
            process.kill()
            raise RuntimeError(
                f"callgrind child: expected {word}, got {line!r}\n{log.read_text()[-3000:]}"
            )
        return line

    def control(switch: str) -> None:
        subprocess.run(
            ["callgrind_control", "-i", switch, str(process.pid)],
            check=True,
            capture_output=True,
        )

    expect("READY")
    control("on")
    process.stdin.write("GO\n")
    process.stdin.flush()
    answers = json.loads(expect("DONE").split(" ", 1)[1])
    control("off")
    process.stdin.write("END\n")
    process.stdin.flush()
    process.wait(timeout=600)
    totals = re.search(r"^totals:\s+(\d+)", out.read_text(), re.MULTILINE)
    if totals is None:
        raise RuntimeError(f"no totals in {out}")
    holds = sum(answers.values())
    return int(totals.group(1)) // holds, answers


def main() -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind (with callgrind_control) is needed: apt-get install valgrind")
    rounds = int(os.environ.get("ROUNDS", "2"))
    per_round = sum(_sizes())
    options = Options(baseline=False, slots=1_000 + per_round * rounds, searched=1_000)
    with Topology(options) as stack, tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        stack_file = work_dir / "stack.json"
        stack_file.write_text(json.dumps({"env": stack.env, "seed": stack.seed}))
        settings = os.environ.get("SETTINGS", "petpro_booking.settings.production")
        for index in range(rounds):
            first_slot = 1_000 + index * per_round  # past the searched service's slots
            per_hold, answers = count_round(str(stack_file), first_slot, work_dir)
            print(f"{settings}: {per_hold:,} instructions per hold (answers: {answers})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]))
    else:
        main()
