"""The bench's floor server (`scripts/bench/floor_write.py`) answers the write mix as our server does,
with and without its flush, so that its figures measure the same work.

`scripts/` is not a package the tests import (mypy checks it as its own tree), so the check runs as
a short program from the repository root, as the bench itself does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, sys, tempfile, trio
from pathlib import Path
from scripts.bench import floor_write
from scripts.bench.api import set_up, write_mix
from scripts.bench.loadgen import ClientPlan, run_clients
from scripts.bench.runner import FULL, Context, http_server

async def main(flush):
    floor_write._importable_from_anywhere()
    target = floor_write._floor_target(flush)
    with tempfile.TemporaryDirectory() as tmp, trio.fail_after(60):
        ctx = Context(counts=FULL, rounds=1, workdir=Path(tmp), targets=[target])
        async with http_server(ctx, target, "floor-test") as server:
            (session_id,), ids = await set_up(server.port, 6)
            plan = ClientPlan(server.port, write_mix(server.port, session_id, ids, 0, 30, 6))
            load = await run_clients([plan], [server.pid], 30)
    print(json.dumps(load.measurement()))

trio.run(main, sys.argv[1] == "flush")
"""


@pytest.mark.parametrize("flush", ["flush", "no-flush"])
def test_the_floor_server_answers_the_write_mix(flush: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, flush], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["errors"] == 0  # every request got the status our server gives it
    assert measured["ops"] == 30
