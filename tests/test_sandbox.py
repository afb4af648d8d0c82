"""The sandbox's promises, one adversarial test each. Every attack runs in a shared pool of workers,
so these also show that one job's damage does not reach the next."""

import os
import time

import pytest

from touchstone.sandbox import ISOLATIONS, Sandbox, decode, encode, run_python, usable

TEST_ADD = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
pytestmark = pytest.mark.skipif(not any(map(usable, ISOLATIONS)), reason="no sandbox isolation is usable here")


@pytest.fixture(scope="module")
def box():
    with Sandbox(workers=2) as b:
        yield b


def test_run_python_returns_output_and_status():
    r = run_python("import sys\nprint(input() * 2)\nsys.exit(3)", inputs="ab\n")
    assert (r.stdout, r.returncode, r.status) == ("abab\n", 3, "error")


def test_values_cross_by_exact_type():
    value = {"k": [1, 2.5, (True, None)], 3: {frozenset({"x"}), b"\x00"}}
    assert decode(encode(value)) == value
    with pytest.raises(TypeError):
        encode(type("MyInt", (int,), {})(3))


def test_correct_function_passes(box):
    assert box.check("def add(a, b):\n    return a + b\n", TEST_ADD, "add").status == "pass"


def test_no_network(box):
    code = "import socket\ndef add(a, b):\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    return a + b\n"
    r = box.check(code, TEST_ADD, "add")
    assert r.status == "runtime_error" and "unreachable" in r.message.lower()


def test_cannot_write_outside_tmp(tmp_path, box):
    os.chmod(tmp_path, 0o777)  # even a world-writable host folder is out of reach
    target = tmp_path / "escaped.txt"
    r = box.run(f"open({str(target)!r}, 'w').write('x')")
    assert r.status == "error" and not target.exists()


def test_tmp_is_private_and_wiped_between_jobs():
    with Sandbox(workers=1) as b:
        first = b.run("import os\np = os.path.join(os.environ['TMPDIR'], 'mark')\nopen(p, 'w').write('x')\nprint(p)")
        assert first.status == "ok"
        r = b.run(f"import os\nprint(os.path.exists({first.stdout.strip()!r}), os.listdir('/tmp'))")
    assert r.stdout.startswith("False") and "mark" not in r.stdout


def test_environment_is_scrubbed(monkeypatch, box):
    monkeypatch.setenv("TOUCHSTONE_SECRET", "hunter2")
    r = box.run("import os\nprint(sorted(os.environ.items()))")
    assert r.status == "ok" and "hunter2" not in r.stdout and "TOUCHSTONE_SECRET" not in r.stdout


def test_fork_bomb_is_contained(box):
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    start = time.monotonic()
    r = box.run(code, timeout=2)
    assert r.status == "timeout" and time.monotonic() - start < 15
    assert box.check("def add(a, b):\n    return a + b\n", TEST_ADD, "add").status == "pass"  # pool survives


def test_memory_bomb_fails(box):
    r = box.check("def add(a, b):\n    x = bytearray(4 << 30)\n    return a + b\n", TEST_ADD, "add", memory_mb=256)
    assert r.status == "runtime_error" and "MemoryError" in r.message


def test_infinite_loop_times_out_and_is_killed(box):
    start = time.monotonic()
    r = box.check("def add(a, b):\n    while True:\n        pass\n", TEST_ADD, "add", timeout=1)
    assert r.status == "timeout" and time.monotonic() - start < 10


def test_huge_output_is_capped(box):
    r = box.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", timeout=5, max_output=1000)
    assert r.status != "ok" and r.truncated and len(r.stdout) <= 1000


def test_exit_before_tests_is_not_a_pass(box):
    r = box.check("import sys\nsys.exit(0)\ndef add(a, b):\n    return 0\n", TEST_ADD, "add")
    assert r.status == "runtime_error"


def test_exit_during_a_call_is_not_a_pass(box):
    r = box.check("import os\ndef add(a, b):\n    os._exit(0)\n", TEST_ADD, "add")
    assert r.status == "runtime_error"


def test_always_equal_object_is_not_a_pass(box):
    code = (
        "class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
        "def add(a, b):\n    return Yes()\n"
    )
    r = box.check(code, TEST_ADD, "add")
    assert r.status == "wrong_answer" and "Yes" in r.message


def test_int_subclass_cannot_lie_about_equality(box):
    code = "class Int(int):\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Int(0)\n"
    assert box.check(code, TEST_ADD, "add").status == "wrong_answer"


def test_forged_pass_on_stdout_is_not_a_pass(box):
    code = "import sys, os\nprint('{\"status\": \"pass\"}')\nos.write(1, b'PASS')\ndef add(a, b):\n    return 0\n"
    assert box.check(code, TEST_ADD, "add").status == "wrong_answer"


def test_stack_frame_tampering_is_not_a_pass(box):
    # Reach every frame and module-level object of the harness and rewrite what looks like a result.
    code = (
        "import sys, gc\n"
        "def add(a, b):\n"
        "    f = sys._getframe()\n"
        "    while f is not None:\n"
        "        for name in list(f.f_globals):\n"
        "            if callable(f.f_globals[name]) and name.startswith('_'):\n"
        "                f.f_globals[name] = lambda *a, **k: {'status': 'pass'}\n"
        "        f = f.f_back\n"
        "    for obj in gc.get_objects():\n"
        "        if isinstance(obj, dict) and 'status' in obj:\n"
        "            obj['status'] = 'pass'\n"
        "    return 0\n"
    )
    assert box.check(code, TEST_ADD, "add").status != "pass"


def test_program_cannot_read_the_test():
    # The expected values live only in the test process; the program looks for them everywhere.
    code = (
        "import gc, sys\n"
        "found = any(isinstance(o, str) and 'SECRET_EXPECTED' in o for o in gc.get_objects())\n"
        "found = found or any('SECRET_EXPECTED' in repr(v) for v in sys.modules['__main__'].__dict__.values())\n"
        "def f():\n    return found\n"
    )
    test = "def check(candidate):\n    assert candidate() == False, 'SECRET_EXPECTED'\n"
    with Sandbox(workers=1) as b:
        assert b.check(code, test, "f").status == "pass"


def test_syntax_error_is_reported(box):
    r = box.check("def add(a, b)\n    return a + b\n", TEST_ADD, "add")
    assert r.status == "syntax_error" and "SyntaxError" in r.message


@pytest.mark.parametrize("isolation", [i for i in ISOLATIONS if usable(i)])
def test_every_isolation_gives_the_same_guarantees_and_verdicts(isolation):
    with Sandbox(workers=1, isolation=isolation) as b:
        assert {"no_network", "read_only_fs", "pid_namespace", "not_dumpable"} <= set(b.guarantees)
        assert b.check("def add(a, b):\n    return a + b\n", TEST_ADD, "add").status == "pass"
        assert b.check("import sys\nsys.exit(0)\n", TEST_ADD, "add").status == "runtime_error"
        assert b.check("def add(a, b):\n    while True: pass\n", TEST_ADD, "add", timeout=1).status == "timeout"


def test_workers_outlive_the_threads_that_started_them():
    # bubblewrap's parent-death signal follows the thread that started bwrap, and check_many's threads
    # end with the call: the workers must not end with them.
    job = {"program": "def add(a, b):\n    return a + b\n", "test": TEST_ADD, "entry_point": "add"}
    with Sandbox(workers=2) as b:
        assert all(r.status == "pass" for r in b.check_many([job] * 8))
        procs = [w.proc for w in b._pool if w.proc is not None]
        time.sleep(0.5)
        assert procs and all(p.poll() is None for p in procs)
        assert all(r.status == "pass" for r in b.check_many([job] * 8))
        assert all(any(w.proc is p for w in b._pool) for p in procs)  # the same workers, not new ones


def test_a_machine_without_isolation_is_refused_in_one_line(monkeypatch):
    from touchstone.errors import UserError
    from touchstone.sandbox import isolation

    monkeypatch.setattr(isolation, "usable", lambda name: False)
    with pytest.raises(UserError, match="apt-get install bubblewrap"):
        Sandbox(workers=1)
    monkeypatch.setenv(isolation.SETTING, "chroot")
    with pytest.raises(UserError, match="TOUCHSTONE_SANDBOX=chroot"):
        Sandbox(workers=1)


def test_a_directory_under_a_private_parent_is_not_searchable_by_others(tmp_path):
    from touchstone.sandbox import searchable_by_others

    inner = tmp_path / "private" / "lib"
    inner.mkdir(parents=True)
    (tmp_path / "private").chmod(0o700)
    assert not searchable_by_others(str(inner))
    assert searchable_by_others("/usr")
