"""Attacks on the sandbox, each run in every isolation this machine can make (bubblewrap, and the
namespaces one that needs only util-linux `unshare`). Each test states what an escape would look like
from the outside and checks that it did not happen; the forged-verdict tests judge a wrong function and
require that it is not passed.

CI runs this file three times: as root with bubblewrap, as root with bubblewrap hidden
(TOUCHSTONE_SANDBOX=namespaces), and as an unprivileged user.
"""

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from touchstone.sandbox import ISOLATIONS, NPROC, TMPFS_BYTES, Sandbox, usable

WANTED = os.environ.get("TOUCHSTONE_SANDBOX", "auto")
AVAILABLE = [i for i in ISOLATIONS if WANTED in ("auto", i) and usable(i)]
pytestmark = pytest.mark.skipif(not AVAILABLE, reason="no sandbox isolation is usable on this machine")

WRONG_ADD = "def add(a, b):\n    return 0\n"
TEST_ADD = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


@pytest.fixture(scope="module", params=AVAILABLE)
def box(request):
    with Sandbox(workers=1, isolation=request.param) as b:
        yield b


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # gone meanwhile
        return b""


def run(box, code, **kw):
    r = box.run(code, **kw)
    assert r.status in ("ok", "error", "timeout"), r
    return r


# ----------------------------------------------------------------------------------- forged verdicts
# Each attack runs inside the wrong function's call, while the test process and the worker are alive.
# It aims only at the sandbox's own processes (the worker and the test process run worker.py), so that
# a sandbox that failed to contain it would not take the machine running the tests down with it.
SANDBOX_PIDS = """
import os
def sandbox_pids():
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                argv = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if any(os.path.basename(arg) == b"worker.py" for arg in argv.split(b"\\0")):
                yield int(pid)
"""
FORGE_THROUGH_PROC_FD = (
    SANDBOX_PIDS
    + """
import struct, json
def add(a, b):
    forged = json.dumps({"status": "pass", "value": None}).encode()
    frame = struct.pack(">I", len(forged)) + forged
    for pid in sandbox_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                w = os.open(f"/proc/{pid}/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK)
                os.write(w, frame * 4)
                os.close(w)
            except OSError:
                pass
    return 0
"""
)

READ_EXPECTED_FROM_MEMORY = (
    SANDBOX_PIDS
    + """
import re
def add(a, b):
    # Look for the test's source (it holds the expected values) in the worker's and the test's memory.
    for pid in sandbox_pids():
        try:
            maps = open(f"/proc/{pid}/maps").read().splitlines()
            mem = open(f"/proc/{pid}/mem", "rb")
        except OSError:
            continue
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            try:
                mem.seek(lo)
                chunk = mem.read(min(hi - lo, 1 << 24))
            except (OSError, OverflowError, ValueError):
                continue
            m = re.search(rb"candidate\\(%d, %d\\) == (-?\\d+)" % (a, b), chunk)
            if m:
                return int(m.group(1))
    return 0
"""
)

PTRACE_EVERYTHING = (
    SANDBOX_PIDS
    + """
import ctypes
def add(a, b):
    libc = ctypes.CDLL(None, use_errno=True)
    attached = [pid for pid in sandbox_pids() if libc.ptrace(16, pid, 0, 0) == 0]  # PTRACE_ATTACH
    for pid in attached:
        os.waitpid(pid, 0)
        libc.ptrace(17, pid, 0, 0)  # PTRACE_DETACH: let it go on, so a success shows as a pass
    return a + b if attached else 0
"""
)


@pytest.mark.parametrize(
    "attack",
    [FORGE_THROUGH_PROC_FD, READ_EXPECTED_FROM_MEMORY, PTRACE_EVERYTHING],
    ids=["forge-via-proc-fd", "read-expected-from-memory", "ptrace"],
)
def test_a_wrong_function_cannot_forge_a_pass(box, attack):
    r = box.check(attack, TEST_ADD, "add")
    assert r.status != "pass", r.message


def test_killing_the_worker_and_the_test_is_not_a_pass(box):
    code = SANDBOX_PIDS + (
        "import signal\ndef add(a, b):\n    for pid in sandbox_pids():\n"
        "        try:\n            os.kill(pid, signal.SIGKILL)\n"
        "        except OSError:\n            pass\n    return 0\n"
    )
    assert box.check(code, TEST_ADD, "add").status != "pass"
    assert box.check("def add(a, b):\n    return a + b\n", TEST_ADD, "add").status == "pass"  # worker fine


# --------------------------------------------------------------------------------------- secrets
def test_host_files_are_not_there(box):
    paths = [p for p in ("/etc/shadow", "/etc/hostname", "/etc/passwd", __file__) if os.path.exists(p)]
    r = run(box, f"import os\nprint([p for p in {paths!r} if os.path.exists(p)])")
    assert r.stdout.strip() == "[]", r.stdout


def test_parent_environment_is_unreadable(box, monkeypatch):
    secret = secrets.token_hex(8)
    monkeypatch.setenv("TOUCHSTONE_ATTACK_SECRET", secret)
    code = (
        "import os\nfor p in os.listdir('/proc'):\n    try:\n"
        "        print(open(f'/proc/{p}/environ', 'rb').read())\n    except OSError:\n        pass\n"
        "print(os.environ)\n"
    )
    assert secret not in run(box, code).stdout


def test_host_processes_are_invisible(box):
    r = run(box, "import os\nprint(sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))")
    visible = eval(r.stdout)
    assert os.getpid() not in visible or len(visible) < 6, visible
    assert len(visible) < 6, visible  # init, the worker and the job itself, not the host's processes


# ------------------------------------------------------------------------------------------ writes
@pytest.mark.parametrize("where", ["/tmp", "/dev/shm", "checkout", "home"])
def test_cannot_write_to_the_host(box, where, tmp_path):
    folder = {
        "/tmp": Path("/tmp"),
        "/dev/shm": Path("/dev/shm"),
        "checkout": Path(__file__).resolve().parent,
        "home": Path.home(),
    }[where]
    target = folder / f"touchstone-escape-{secrets.token_hex(6)}"
    try:
        run(box, f"open({str(target)!r}, 'w').write('x')")
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


def test_world_writable_host_folder_is_out_of_reach(box, tmp_path):
    os.chmod(tmp_path, 0o777)
    target = tmp_path / "escaped.txt"
    run(box, f"open({str(target)!r}, 'w').write('x')")
    assert not target.exists()


def test_disk_use_is_capped(box):
    code = (
        "import os\nwritten = 0\nblock = b'x' * (1 << 20)\ntry:\n    for i in range(16):\n"
        "        with open(os.path.join(os.environ['TMPDIR'], f'f{i}'), 'wb') as f:\n"
        "            for _ in range(8):\n                f.write(block)\n                written += len(block)\n"
        "except OSError:\n    pass\nprint(written)\n"
    )
    r = run(box, code, timeout=20)
    assert int(r.stdout.strip() or 0) <= TMPFS_BYTES + (8 << 20)


def test_scratch_space_is_wiped_between_jobs(box):
    mark = secrets.token_hex(6)
    code = (
        "import os\nfor d in (os.environ['TMPDIR'], '/tmp', '/dev/shm'):\n    try:\n"
        f"        open(os.path.join(d, '{mark}'), 'w').write('x')\n    except OSError:\n        pass\n"
    )
    run(box, code)
    r = run(
        box,
        "import os\nfor d in ('/tmp', '/dev/shm'):\n    for root, dirs, files in os.walk(d):\n"
        "        print(root, dirs, files)\n",
    )
    assert mark not in r.stdout, r.stdout


# ----------------------------------------------------------------------------------------- network
def test_tcp_to_a_loopback_listener_is_unreachable(box):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        server.settimeout(0.5)
        run(
            box,
            f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "except OSError as e:\n    print(e)\n",
        )
        with pytest.raises(TimeoutError):
            server.accept()


def test_udp_to_a_loopback_listener_is_unreachable(box):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(0.5)
        port = server.getsockname()[1]
        run(
            box,
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"try:\n    s.sendto(b'escaped', ('127.0.0.1', {port}))\nexcept OSError as e:\n    print(e)\n",
        )
        with pytest.raises(TimeoutError):
            server.recv(100)


def test_abstract_unix_socket_of_the_host_is_unreachable(box):
    name = f"\0touchstone-attack-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(name)
        server.listen()
        server.settimeout(0.5)
        run(
            box,
            f"import socket\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect({name!r})\n"
            "except OSError as e:\n    print(e)\n",
        )
        with pytest.raises(TimeoutError):
            server.accept()


def test_no_route_out(box):
    r = run(
        box,
        "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    print('open')\n"
        "except OSError as e:\n    print('closed', e)\n",
    )
    assert r.stdout.startswith("closed"), r.stdout


# --------------------------------------------------------------------------------------- processes
def test_setsid_grandchild_dies_with_the_job(box):
    marker = f"{secrets.randbelow(10**6)}.{secrets.randbelow(10**3)}"  # an argv no other process has
    code = (
        "import os\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execv('/bin/sleep', ['sleep', '{marker}'])\n    os._exit(0)\n"
        "import time\ntime.sleep(0.2)\n"
    )
    run(box, code)
    time.sleep(0.3)
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and marker.encode() in _cmdline(pid)]
    inside = run(
        box, "import os\nprint([open(f'/proc/{p}/cmdline').read() for p in os.listdir('/proc') if p.isdigit()])"
    ).stdout
    assert marker not in inside


def test_cannot_signal_a_host_process(box):
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run(
            box,
            f"import os, signal\nfor pid in ({victim.pid}, os.getppid()):\n    try:\n"
            "        os.kill(pid, signal.SIGKILL)\n    except OSError as e:\n        print(e)\n",
        )
        time.sleep(0.2)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_process_count_is_capped(box):
    code = (
        "import os, time\nn = 0\nfor _ in range(300):\n    try:\n        if os.fork() == 0:\n"
        "            time.sleep(5)\n            os._exit(0)\n        n += 1\n    except OSError:\n"
        "        break\nprint(n)\n"
    )
    r = run(box, code, timeout=3)
    assert int(r.stdout.strip() or 0) < NPROC, r.stdout


def test_no_capabilities_and_no_way_to_gain_them(box):
    code = (
        "import os\nos.system('grep -E \"^(Cap(Prm|Eff|Bnd|Amb)|NoNewPrivs)\" /proc/self/status')\n"
        "try:\n    os.chroot('/tmp')\n    print('chroot worked')\nexcept OSError:\n    pass\n"
    )
    out = run(box, code).stdout
    caps = dict(line.split(":\t") for line in out.strip().splitlines() if ":\t" in line)
    assert caps.get("CapEff") == caps.get("CapPrm") == caps.get("CapAmb") == "0000000000000000", out
    assert caps.get("NoNewPrivs") == "1" and "chroot worked" not in out


def test_shell_commands_run_unprivileged(box):
    # Both targets are harmless should the attack work: a folder of the job's own, a fresh name in /usr.
    planted = Path("/usr") / f"touchstone-attack-{secrets.token_hex(6)}"
    code = (
        "import os\nm = os.path.join(os.environ['TMPDIR'], 'm')\nos.mkdir(m)\n"
        f"os.system(f'id -u; mount -t tmpfs none {{m}} 2>&1; echo mount=$?; touch {planted} 2>&1; echo touch=$?')"
    )
    out = run(box, code).stdout
    try:
        assert "mount=0" not in out and "touch=0" not in out and not planted.exists(), out
    finally:
        planted.unlink(missing_ok=True)
    if os.getuid() == 0:
        assert out.split()[0] != "0", out  # as real root the jobs run as another uid


def test_proc_sys_is_not_writable(box):
    out = run(
        box,
        "try:\n    open('/proc/sys/kernel/hostname', 'w').write('x')\n    print('wrote')\n"
        "except OSError as e:\n    print(e)\n",
    ).stdout
    assert "wrote" not in out
