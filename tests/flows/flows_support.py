"""Helpers of the flows tests (a module with a unique name: test folders have no __init__.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PIPELINE = "testref.mlp"
WINDOWS = "testwin.failure_windows"
RANKING = "testrank.next_item"
FILES = "testfiles.shapes"
VERTICALS = str(Path(sys.executable).with_name("verticals"))
PLUGIN_MODULE = '''
from verticals.testing.reference import ReferencePlugin
from verticals.testing.windows import WindowsPlugin
from verticals.testing.ranking import RankingPlugin
from verticals.testing.files import FilesPlugin

plugin = ReferencePlugin(rows=2000, n_numeric=6, n_categorical=2, hidden=(16,))
windows = WindowsPlugin(machines=9, readings=120)
ranking = RankingPlugin(users=120)
files = FilesPlugin(images=60, corrupt=2)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_plugin(site: Path) -> None:
    site.mkdir(parents=True)
    (site / "verticals_flows_testref.py").write_text(PLUGIN_MODULE)
    info = site / "verticals_flows_testref-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: verticals-flows-testref\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[verticals]\ntestref = verticals_flows_testref:plugin\n"
                                           "testwin = verticals_flows_testref:windows\n"
                                           "testrank = verticals_flows_testref:ranking\n"
                                           "testfiles = verticals_flows_testref:files\n")


class Env:
    """The session's folders and the environment every process of the tests gets."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.prefect_home = root / "prefect"
        self.home = root / "verticals-home"
        self.site = root / "site"
        self.data = root / "data"
        self.vars = {
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_TELEMETRY_ENABLE": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            "VERTICALS_HOME": str(self.home),
            "PYTHONPATH": os.pathsep.join([str(self.site), *filter(None, [os.environ.get("PYTHONPATH")])]),
        }

    def cli(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``verticals ARGS`` in a subprocess with the session's environment."""
        proc = subprocess.run([VERTICALS, *args], capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.vars})
        if check and proc.returncode != 0:
            raise AssertionError(f"verticals {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


def write_batch(path: Path, rows: int = 4000, *, start: int = 100_000, row_group: int = 500,
                shift: float = 0.0, bad_every: int = 797) -> Path:
    """A scoring batch of the reference dataset in Parquet, cut into row groups, with some bad rows
    (an infinite ``f00``, which validation rejects) and optionally ``f02`` shifted by ``shift``."""
    import polars as pl
    from verticals.testing.reference import make_frame

    frame = make_frame(rows, n_numeric=6, n_categorical=2, seed=0, start=start, with_target=False)
    frame = frame.with_columns(
        pl.when(pl.col("row_id") % bad_every == 0).then(float("inf")).otherwise(pl.col("f00")).alias("f00"),
        (pl.col("f02") + shift).alias("f02"))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, row_group_size=row_group)
    return path


def read_output(folder: Path) -> tuple[object, object, dict]:
    """(scored rows sorted by id, rejects sorted by row, manifest) of a scoring output folder."""
    import polars as pl

    parts = pl.read_parquet(sorted(folder.glob("part-*.parquet"))).sort("row_id")
    rejects = pl.read_parquet(folder / "_rejects.parquet").sort("_row")
    return parts, rejects, json.loads((folder / "_manifest.json").read_text())


def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Signal a process started with ``start_new_session=True`` and everything it started; SIGKILL if needed."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # children that outlived their parent
        os.killpg(proc.pid, signal.SIGKILL)


SLOW_RUN = """
import json, sys, time

from verticals import hookimpl
from verticals.registry import get_registry

pipeline, source, output, options = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])


class Slow:
    @hookimpl
    def after_score_batch(self, batch_index):
        time.sleep(options["sleep"])  # stretch the run so the test can kill it between partitions


get_registry().pm.register(Slow(), name="slow")
import verticals.scoring.grouping as grouping
import verticals.scoring.partitions as partitions
from verticals_flows.score import score_flow

if options.get("rows_per_part"):
    grouping.ROWS_PER_PART = options["rows_per_part"]  # several grouped partitions from a small input
if options.get("files_per_partition"):
    partitions.FILES_PER_PARTITION = options["files_per_partition"]  # several from a small image folder
score_flow(pipeline=pipeline, input=source, output=output, batch_size=options["batch_size"])
"""


def start_slow_score_flow(workdir: Path, env: dict[str, str], pipeline: str, source: Path, out: Path, *,
                          sleep: float, batch_size: int, rows_per_part: int | None = None,
                          files_per_partition: int | None = None) -> subprocess.Popen:
    """Start the score flow in its own process group, slowed by ``sleep`` s after every scored batch, so
    a test can SIGKILL it between committed partitions (see :func:`kill_group`)."""
    script = workdir / "slow_run.py"
    script.write_text(SLOW_RUN)
    options = {"sleep": sleep, "batch_size": batch_size, "rows_per_part": rows_per_part,
               "files_per_partition": files_per_partition}
    return subprocess.Popen([sys.executable, str(script), pipeline, str(source), str(out), json.dumps(options)],
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **env})
