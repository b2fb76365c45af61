# drover's pool parent: runs inside the user's Python (or SageMath) interpreter as one job of a
# pool, with the pool's modules imported once. For each job of the pool, `drover pool-run` (the
# job's own process, in the job's own cell) connects, hands over its stdin, stdout and stderr,
# and says what to run; this parent forks a child that joins that cell and takes on those
# limits before any of the job's code runs, then reports how the child ended.
#
# argv: KIND SOCKET PRELOAD MAX_JOBS MAX_MEMORY_BYTES (PRELOAD comma-separated, 0 = no bound)
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import traceback

RECYCLE_EXIT = 85  # drover's checkpoint exit code: the parent's job is requeued at once

kind, path, preload, max_jobs, max_memory = sys.argv[1:6]
max_jobs, max_memory = int(max_jobs), int(max_memory)

namespace = {"__name__": "__main__", "__builtins__": __builtins__}
if kind == "sage":
    exec("from sage.all import *", namespace)
for name in filter(None, preload.split(",")):
    importlib.import_module(name)
    top = name.split(".")[0]
    namespace[top] = sys.modules[top]

wake_read, wake_write = os.pipe()
os.set_blocking(wake_write, False)
os.set_blocking(wake_read, False)
signal.set_wakeup_fd(wake_write)
signal.signal(signal.SIGCHLD, lambda *_: None)

os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
for stale in (path, path + ".new"):
    try:
        os.unlink(stale)
    except FileNotFoundError:
        pass
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path + ".new")
os.chmod(path + ".new", 0o600)
listener.listen(64)
# Renamed into place once it listens: a job never finds a socket nobody answers.
os.rename(path + ".new", path)
listener.setblocking(False)

selector = selectors.DefaultSelector()
selector.register(listener, selectors.EVENT_READ, "accept")
selector.register(wake_read, selectors.EVENT_READ, "wake")
children = {}  # pid -> connection of its pool-run
served = 0
draining = False
# `drover pool create` waits for this line in the parent's log (POOL_READY_LINE).
print(f"drover: the pool's parent is ready ({kind}, preloaded: {preload or 'nothing'})", file=sys.stderr, flush=True)


def rss_bytes():
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def send(conn, message):
    try:
        conn.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        pass


def child(request, fds):
    """In the forked child: become the job, then run it. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        listener.close()
        for other in children.values():
            other.close()
        os.setsid()
        # Into the job's cell before any of its code runs: its limits, kill and accounting.
        for procs in request["cgroup_procs"]:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        import resource
        for name, (soft, hard) in request["rlimits"].items():
            which = getattr(resource, name)
            soft = resource.RLIM_INFINITY if soft is None else soft
            hard = resource.RLIM_INFINITY if hard is None else hard
            try:
                resource.setrlimit(which, (soft, hard))
            except (ValueError, OSError):
                # A hard limit above this process's own cannot be raised: keep its own.
                resource.setrlimit(which, (soft, resource.getrlimit(which)[1]))
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
    except BaseException as err:
        try:
            os.write(2, f"drover: cannot make the pool's child the job: {err}\n".encode())
        finally:
            os._exit(126)
    # The job's own streams now: rebuild sys.std* on fds 0-2.
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    argv = request["argv"]
    try:
        import runpy
        if argv[0] == "-c":
            sys.argv = ["-c"] + argv[2:]
            source = argv[1]
            if kind == "sage":
                from sage.repl.preparse import preparse
                source = preparse(source)
            exec(compile(source, "<string>", "exec"), dict(namespace))
        elif argv[0] == "-m":
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            if kind == "sage" and argv[0].endswith(".sage"):
                from sage.repl.preparse import preparse_file
                with open(argv[0]) as f:
                    source = preparse_file(f.read())
                exec(compile(source, argv[0], "exec"), dict(namespace, __file__=argv[0]))
            else:
                runpy.run_path(argv[0], init_globals=dict(namespace), run_name="__main__")
        code = 0
    except SystemExit as stop:
        if stop.code is None:
            code = 0
        elif isinstance(stop.code, int):
            code = stop.code
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException as err:
        # From the job's own code down: not this shim's frame, nor runpy's.
        tb = err.__traceback__
        while tb is not None and (
            tb.tb_frame.f_code is child.__code__ or tb.tb_frame.f_globals.get("__name__") == "runpy"
        ):
            tb = tb.tb_next
        traceback.print_exception(type(err), err, tb)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


def accept():
    global served
    try:
        conn, _ = listener.accept()
    except BlockingIOError:
        return
    conn.setblocking(True)
    conn.settimeout(10)
    try:
        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while not data.endswith(b"\n"):
            more = conn.recv(1 << 20)
            if not more:
                break
            data += more
        request = json.loads(data)
    except (OSError, ValueError) as err:
        print(f"pool: a job's request could not be read: {err}", file=sys.stderr, flush=True)
        conn.close()
        return
    conn.settimeout(None)
    if len(fds) != 3:
        send(conn, {"error": "the job's streams did not arrive"})
        conn.close()
        return
    try:
        pid = os.fork()
    except OSError as err:
        send(conn, {"error": f"the pool's parent cannot fork: {err}"})
        conn.close()
        for fd in fds:
            os.close(fd)
        return
    if pid == 0:
        child(request, fds)
    for fd in fds:
        os.close(fd)
    children[pid] = conn
    selector.register(conn, selectors.EVENT_READ, pid)
    send(conn, {"pid": pid})
    served += 1


def reap():
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        if os.WIFSIGNALED(status):
            send(conn, {"signal": os.WTERMSIG(status)})
        else:
            send(conn, {"exit": os.WEXITSTATUS(status)})
        try:
            selector.unregister(conn)
        except (KeyError, ValueError):
            pass  # its pool-run was gone already
        conn.close()


def from_job(conn, pid):
    """What a job's pool-run says: a signal to pass on, or its end (it was killed)."""
    try:
        data = conn.recv(4096)
    except OSError:
        data = b""
    if not data:
        # pool-run is gone: so is the job; nothing of it may run on.
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        selector.unregister(conn)
        return
    for line in data.splitlines():
        try:
            message = json.loads(line)
            os.killpg(pid, int(message["signal"]))
        except (ValueError, KeyError, OSError):
            pass


while True:
    for key, _ in selector.select(timeout=1.0):
        if key.data == "accept":
            accept()
        elif key.data == "wake":
            try:
                os.read(wake_read, 4096)
            except BlockingIOError:
                pass
        else:
            from_job(key.fileobj, key.data)
    reap()
    if not draining and (
        (max_jobs and served >= max_jobs) or (max_memory and rss_bytes() > max_memory)
    ):
        # Recycled: new jobs go to another parent, or wait for this one's next attempt.
        draining = True
        selector.unregister(listener)
        listener.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        print(f"pool parent recycled after {served} jobs", file=sys.stderr, flush=True)
    if draining and not children:
        sys.exit(RECYCLE_EXIT)
