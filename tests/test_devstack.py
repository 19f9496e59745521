"""``make run``'s process handling: services started by a process that is killed outright (a closed
terminal, a supervisor's SIGKILL) stop too, instead of holding their ports as orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from scripts.devstack import ROOT

PARENT = """
import sys, time
from pathlib import Path
from scripts.devstack import Service, base_env, free_port
svc = Service("gateway", "services.gateway", free_port())
svc.env = base_env(1, True) | {"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(svc.port)}
svc.start(Path(sys.argv[1]))
svc.wait_healthy()
print(svc.proc.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has exited (its parent is gone: init reaps it)
        return stat.read().split(") ")[1][0] != "Z"


def test_services_stop_when_the_process_that_started_them_is_killed(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 60
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)
    finally:
        parent.kill()
