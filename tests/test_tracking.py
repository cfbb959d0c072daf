"""A training run killed with SIGKILL leaves its MLflow run RUNNING; the next run on this host
marks it FAILED, and leaves the RUNNING run of a process that is still alive alone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import sys, time
    from toollat.tracking import Tracker
    with Tracker(True, sys.argv[1], sys.argv[2], "orphans", run_name=sys.argv[3]):
        print("started", flush=True)
        time.sleep(600)
""")


def _start(uri: str, root: str, name: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD, uri, root, name], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"  # its run exists and is RUNNING
    return p


def test_run_of_a_killed_training_is_marked_failed_by_the_next(tmp_path):
    from mlflow.tracking import MlflowClient

    from toollat.tracking import Tracker

    uri, root = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")
    killed, alive = _start(uri, root, "killed"), _start(uri, root, "alive")
    try:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(30)
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("orphans")

        def status(name: str) -> str:
            (run,) = [r for r in client.search_runs([exp.experiment_id]) if r.info.run_name == name]
            return run.info.status

        assert status("killed") == "RUNNING" and status("alive") == "RUNNING"  # what a kill leaves
        with Tracker(True, uri, root, "orphans", run_name="next"):
            assert status("killed") == "FAILED"
            assert status("alive") == "RUNNING"  # its process still runs: not an orphan
            assert status("next") == "RUNNING"
        assert status("next") == "FINISHED"
    finally:
        for p in (killed, alive):
            if p.poll() is None:
                p.kill()
                p.wait(30)
