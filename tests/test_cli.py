"""The `actorcluster` command from outside: the installed console script, start-up errors, the
environment variables of `run` and the log lines it prints."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from conftest import ROOT, free_port

from actorcluster.cli import main
from actorcluster.config import SETTINGS, Setting
from actorcluster.config_file import CLUSTER_KEYS, HTTP_KEYS

pytestmark = pytest.mark.timeout(60)

SCRIPT = Path(sys.executable).with_name("actorcluster")  # what `pip install` puts on PATH


def command(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
            script: bool = False) -> subprocess.CompletedProcess:
    """``actorcluster ARGS`` in a subprocess, with no PYTHONPATH: user code is found only where
    the command itself looks for it."""
    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    full_env.update(env or {})
    head = [str(SCRIPT)] if script else [sys.executable, "-m", "actorcluster"]
    return subprocess.run([*head, *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def run_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """``actorcluster run`` expected to fail before it starts; a later --bind in ``args`` wins,
    and should it start after all, it listens on a port nobody else uses."""
    return command("run", f"--bind=127.0.0.1:{free_port()}", *args, env=env)


# -- user code is imported from the current directory ---------------------------------------------

def test_the_console_script_imports_user_code_from_the_current_directory(tmp_path):
    assert SCRIPT.exists(), f"{SCRIPT}: install the project (pip install -e .) to run this test"
    (tmp_path / "ac_here.py").write_text(textwrap.dedent("""
        import actorcluster

        class Here(actorcluster.Actor):
            def receive(self, message):
                return message

        def handler(request):
            return "here"

        tree = actorcluster.Supervisor(children=[actorcluster.ActorSpec("here", Here)])
    """))
    (tmp_path / "here.toml").write_text(textwrap.dedent("""
        [supervisor]
        [[supervisor.children]]
        name = "here"
        actor = "ac_here:Here"
        [[supervisor.children]]
        name = "web"
        http = "ac_here:handler"
        workers = 1
    """))
    out = command("tree", "--config", "here.toml", cwd=tmp_path, script=True)
    assert out.returncode == 0, out.stderr
    assert "├── here  actor ac_here:Here" in out.stdout
    assert "└── web  http ac_here:handler, 1 worker" in out.stdout
    out = command("tree", "ac_here:tree", cwd=tmp_path, script=True)
    assert out.returncode == 0, out.stderr
    assert "└── here  actor ac_here:Here" in out.stdout


def test_the_readme_tree_command_runs_as_written():
    out = command("tree", "--config", "examples/actorcluster.toml", script=True)
    assert out.returncode == 0, out.stderr
    assert "└── pipeline  supervisor rest_for_one" in out.stdout
    # `tree` shows the tree `run` would start: from the same environment variables too
    out = command("tree", env={"ACTORCLUSTER_CONFIG": "examples/actorcluster.toml",
                               "ACTORCLUSTER_WORKERS": "3"})
    assert out.returncode == 0, out.stderr
    assert "├── web  http examples.counter:handler, 3 workers (auto)" in out.stdout


# -- start-up errors: one line, exit code 2 --------------------------------------------------------

def assert_one_line_error(out: subprocess.CompletedProcess, *parts: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    last = out.stderr.rstrip("\n").splitlines()[-1]
    assert last.startswith("Error: "), out.stderr
    for part in parts:
        assert part in last, (part, out.stderr)


@pytest.mark.parametrize("args, env, parts", [
    (["examples.hello"], {}, ["'examples.hello'", '"MODULE:ATTR"']),
    (["examples.hello:handler", "--actor", "counter=examples.counter"], {},
     ["--actor counter=examples.counter", "MODULE:Class"]),
    (["examples.hello:handler", "--actor", "=x:y"], {}, ["--actor '=x:y'", "NAME=MODULE:Class"]),
    (["examples.hello:handler", "--actor", "counter"], {}, ["--actor 'counter'"]),
    (["examples.hello:handler", "--actor", "a/b=examples.counter:Counter"], {},
     ["--actor 'a/b=examples.counter:Counter'", "the name 'a/b'", "ASCII letters, digits"]),
    (["examples.hello:handler", "--actor", "a" * 65 + "=examples.counter:Counter"], {},
     ["the name '" + "a" * 65 + "'", "1-64"]),
    (["examples.hello:handler", "--actor", "primary=examples.counter:Counter"], {},
     ["--actor primary=", "reserved"]),
    (["examples.hello:handler", "--bind", "nonsense"], {}, ["--bind 'nonsense'", "HOST:PORT"]),
    (["examples.hello:handler", "--workers", "0"], {}, ["--workers 0", "at least 1"]),
    (["examples.hello:handler", "--workers", "1000000"], {}, ["--workers 1000000", "at most 1024"]),
    (["examples.hello:handler", "--workers", "abc"], {}, ["'--workers'", "'abc'"]),
    (["examples.hello:handler", "--loop", "nonsense"], {}, ["'--loop'", "'uvloop'"]),
    (["examples.hello:handler", "--log-level", "loud"], {}, ["'--log-level'", "'debug'"]),
    (["examples.hello:handler", "--name", "a/b"], {}, ["--name 'a/b'"]),
    (["examples.hello:handler", "--name", "nl\n"], {}, ["--name 'nl\\n'", "ASCII letters, digits"]),
    (["examples.hello:handler"], {"ACTORCLUSTER_LOOP": "nonsense"},
     ["ACTORCLUSTER_LOOP", "'nonsense'"]),
    (["examples.hello:handler"], {"ACTORCLUSTER_GRACEFUL_TIMEOUT": "-1"},
     ["--graceful-timeout -1.0", "at least 0"]),
    (["examples.hello:handler"], {"ACTORCLUSTER_HOLD_MESSAGES": "many"},
     ["ACTORCLUSTER_HOLD_MESSAGES", "'many'"]),
    (["examples.hello:handler", "--hold-seconds", "nan"], {}, ["--hold-seconds nan", "finite"]),
    (["examples.hello:handler", "--timeout", "inf"], {}, ["--timeout inf", "finite"]),
    (["examples.hello:handler"], {"ACTORCLUSTER_WITHIN": "nan"}, ["--within nan", "finite"]),
    (["examples.hello:handler", "--timeout", "nan"], {}, ["--timeout nan", "finite"]),
    (["examples.hello:handler", "--within", "nan"], {}, ["--within nan", "finite"]),
    (["examples.hello:handler", "--graceful-timeout", "inf"], {},
     ["--graceful-timeout inf", "finite"]),
    (["examples.hello:handler"], {"ACTORCLUSTER_KEEPALIVE": "nan"}, ["--keepalive nan", "finite"]),
    ([], {"ACTORCLUSTER_TARGET": "examples.hello"}, ["'examples.hello'", '"MODULE:ATTR"']),
])
def test_a_bad_start_up_value_is_one_line_and_exit_2(tmp_path, args, env, parts):
    env = {"XDG_RUNTIME_DIR": str(tmp_path), **env}
    assert_one_line_error(run_command(*args, env=env), *parts)


def test_loop_uvloop_without_uvloop_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "uvloop.py").write_text("raise ImportError('no uvloop in this test')\n")
    out = run_command("examples.hello:handler", "--loop", "uvloop",
                      env={"PYTHONPATH": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)})
    assert_one_line_error(out, "--loop uvloop", "not installed")


@pytest.mark.parametrize("args, part", [
    (["ask", "primary", '"status"', "--timeout", "-1"], "'--timeout': -1.0 is not in the range"),
    (["ask", "primary", '"status"', "--timeout", "0"], "'--timeout': 0.0 is not in the range x>0"),
    (["ask", "primary", '"status"', "--timeout", "nan"], "'nan' is not a finite number of seconds"),
    (["ask", "primary", '"status"', "--timeout", "inf"], "'inf' is not a finite number of seconds"),
    (["ask", "primary", '"status"', "--timeout", "1e10"], "'1e10' is more than 1e+09 seconds"),
    (["stop", "--timeout", "1e300"], "'1e300' is more than 1e+09 seconds"),
    (["start-child", "root", "{}", "--timeout", "-5"], "'--timeout': -5.0"),
    (["terminate-child", "root", "c", "--timeout", "0"], "'--timeout': 0.0"),
    (["restart-child", "root", "c", "--timeout", "abc"], "'abc' is not a valid number of seconds"),
    (["delete-child", "root", "c", "--timeout", "-1"], "'--timeout': -1.0"),
    (["reload", "--ready-timeout", "0"], "'--ready-timeout': 0.0"),
    (["stop", "--timeout", "-1"], "'--timeout': -1.0 is not in the range x>=0"),
    (["tree", "examples.tree:tree", "--workers", "0"],
     "'--workers' (env var: 'ACTORCLUSTER_WORKERS'): 0 is not in the range"),
    (["scale", "web", "1000000"], "'WORKERS': 1000000 is not in the range 1<=x<=1024"),
    # 1e400 is JSON syntax, but Python reads it as inf, which JSON cannot hold (as Infinity)
    (["send", "counter", '["add", 1e400]'], "1e400 is not a finite JSON number"),
    (["ask", "counter", "[-1e999]"], "-1e999 is not a finite JSON number"),
])
def test_a_bad_number_for_a_cluster_command_is_a_usage_error(tmp_path, monkeypatch, args, part):
    """Refused before connecting (no cluster runs here): never a timeout, never a traceback."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert part in result.output.rstrip("\n").splitlines()[-1], result.output


@pytest.mark.parametrize("args", [["status"], ["status", "--json"], ["reload"],
                                  ["scale", "web", "2"], ["stop"], ["status", "--name", "shop"]])
def test_a_command_finding_no_cluster_says_where_it_looked_and_exits_1(tmp_path, monkeypatch,
                                                                       args):
    """A cluster started with another XDG_RUNTIME_DIR (a systemd unit's) is not found: the
    error names the directory looked in and the variable, not just "not running"."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    last = result.output.rstrip("\n").splitlines()[-1]
    assert last.startswith("Error: no ") and "is running" in last, last
    assert f"in {tmp_path}/actorcluster-{os.getuid()} " in last, last
    assert "XDG_RUNTIME_DIR" in last, last


@pytest.mark.parametrize("how", ["open", "foreign", "missing", "relative", "foreign-parent",
                                 "open-parent"])
def test_a_run_directory_that_is_not_private_is_refused_in_one_line(tmp_path, how):
    base = tmp_path / f"actorcluster-{os.getuid()}"
    xdg = tmp_path
    if how == "open":
        base.mkdir(mode=0o755)
        base.chmod(0o755)
        parts = [f"run directory {base} is open to other users (mode 755)", f"chmod 700 {base}"]
    elif how == "foreign":
        if os.getuid() != 0:
            pytest.skip("giving a directory to another user needs root")
        base.mkdir(mode=0o700)
        os.chown(base, 65534, 65534)
        parts = [f"run directory {base} is not a directory owned by this user", "XDG_RUNTIME_DIR"]
    elif how == "missing":
        xdg = tmp_path / "no-such-dir"
        parts = [f"run directory {xdg / base.name}: cannot create it", "XDG_RUNTIME_DIR"]
    elif how in ("foreign-parent", "open-parent"):  # its owner, or anyone, could swap ours
        xdg = tmp_path / "xdg"
        xdg.mkdir()
        xdg.chmod(0o777)
        if how == "foreign-parent":
            if os.getuid() != 0:
                pytest.skip("giving a directory to another user needs root")
            xdg.chmod(0o700)
            os.chown(xdg, 65534, 65534)
        mode = "700" if how == "foreign-parent" else "777"
        parts = [f"{xdg} belongs to another user or others may write to it (mode {mode})",
                 "XDG_RUNTIME_DIR"]
    else:  # the run directory would depend on the current directory of each command
        xdg = Path("run")
        parts = ["XDG_RUNTIME_DIR='run' is not an absolute path"]
    env = {"XDG_RUNTIME_DIR": str(xdg)}
    assert_one_line_error(run_command("examples.hello:handler", env=env), *parts)
    out = command("status", env=env)  # the client commands say the same, without a traceback
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert all(part in out.stderr for part in parts), out.stderr


# -- every setting reads its environment variable --------------------------------------------------

# str settings need a valid value of their own kind; a new one fails below until it has one here
STRINGS = {"bind": ("127.0.0.1:18597", "127.0.0.1:18598"), "name": ("from-env", "from-file"),
           "metrics_bind": ("127.0.0.1:18595", "127.0.0.1:18596")}


def env_value(setting: Setting) -> Any:
    """A valid value of ``setting`` that is not its default."""
    if setting.type is bool:
        return not setting.default
    if setting.choices:
        return next(c for c in setting.choices if c != setting.default)
    if setting.type in (int, float):
        base = setting.default if setting.default is not None else setting.minimum or 0
        return base + (2 if setting.type is int else 1.5)
    assert setting.name in STRINGS, f"add a sample value of --{setting.name} to STRINGS"
    return STRINGS[setting.name][0]


def file_value(setting: Setting) -> Any:
    """A valid value of ``setting`` other than env_value (the default when there is one)."""
    return setting.default if setting.default is not None else STRINGS[setting.name][1]


@pytest.mark.parametrize("how", ["target", "config"])
@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.envvar)
def test_every_setting_reads_its_environment_variable(tmp_path, monkeypatch, setting, how):
    """ACTORCLUSTER_<NAME> reaches the ClusterConfig the primary runs with, over the --config
    file's own value for it; the command line runs in-process up to the primary's start."""
    from actorcluster.primary import runtime

    started = []
    monkeypatch.setattr(runtime, "run", lambda config: started.append(config) or 0)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command adds the current directory
    value = env_value(setting)
    if how == "target":
        args = ["run", "examples.hello:handler"]
    else:
        section = ("cluster" if setting.name in CLUSTER_KEYS
                   else "http" if setting.name in HTTP_KEYS else None)
        table = f"[{section}]\n{setting.name} = {json.dumps(file_value(setting))}\n" if section \
            else ""
        path = tmp_path / "tree.toml"
        path.write_text(f'{table}[supervisor]\n[[supervisor.children]]\nname = "web"\n'
                        'http = "examples.hello:handler"\n')
        args = ["run", "--config", str(path)]
    env = {"XDG_RUNTIME_DIR": str(tmp_path), setting.envvar: str(value).lower()
           if isinstance(value, bool) else str(value)}
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (config,) = started
    assert getattr(config, setting.name) == value


# -- what the running cluster does with them, and its log ------------------------------------------

def test_graceful_timeout_from_the_environment_cuts_a_slow_request(cluster):
    c = cluster("ac_testapp:slow", "--workers", "1",
                env={"ACTORCLUSTER_GRACEFUL_TIMEOUT": "1"})
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            outcome["response"] = httpx.get(c.url + "/?s=20", timeout=30)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    t = threading.Thread(target=slow_request)
    t.start()
    c.wait_for_log(r"slow request in \d+")  # in flight
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert c.wait(10) == 0
    assert time.monotonic() - t0 < 5  # 1 s of grace, not the default 30
    t.join(10)
    assert "error" in outcome, outcome
    assert "the graceful stop took more than 1 s" in c.log()


def test_the_log_reads_as_documented(cluster):
    # local time with its offset: a POSIX TZ (no tz database needed) 5:30 east of UTC
    # --bind HOST:0: the kernel picks the port, and "Listening at" names that port, not ":0"
    c = cluster("ac_testapp:pid", "--workers", "1", "--bind", "127.0.0.1:0",
                env={"TZ": "ACX-05:30"})
    url = re.search(r"Listening at (http://127\.0\.0\.1:\d+) ", c.log()).group(1)
    assert not url.endswith(":0"), c.log()
    assert httpx.get(url + "/", timeout=5).status_code == 200
    assert c.stop() == 0
    lines = c.log().splitlines()
    for line in lines:
        stamp = line.split(" ", 1)[0]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:30", stamp), line
        assert abs(datetime.fromisoformat(stamp).timestamp() - time.time()) < 60, line
    assert any(re.search(r"\[INFO\] Listening at http://\S+ \(1 worker\)$", line)
               for line in lines), lines


def test_status_text_shows_the_names_with_most_dead_letters_and_counts_the_rest():
    # up to 1,001 names are counted: all on the status line, they buried the status (qa22)
    from actorcluster.status_view import render_status

    dead = {f"typo{i}": 1 for i in range(1000)} | {"orders": 40, "(other names)": 7}
    text = render_status({"cluster": "c", "primary": {"pid": 1},
                          "tree": {"name": "root", "type": "supervisor", "state": "ready",
                                   "children": []},
                          "messages": {"dead_letters": dead}})
    line = text.splitlines()[-1]
    assert line.startswith("dead letters: orders 40, (other names) 7, typo0 1, typo1 1, ")
    assert line.endswith(", and 992 to 992 other names (status --json lists them)"), line
    assert len(line) < 300


def test_a_removed_current_directory_is_one_clear_line(tmp_path):
    # a deploy removed the directory the shell stood in: a FileNotFoundError traceback before
    gone = tmp_path / "release-1"
    gone.mkdir()
    out = subprocess.run(
        ["sh", "-c", f'cd "{gone}" && rmdir "{gone}" && exec "$0" -m actorcluster status',
         sys.executable], capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr
    assert "the current directory no longer exists" in out.stderr
