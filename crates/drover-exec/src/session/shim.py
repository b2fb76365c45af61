# drover's session shim: runs inside the user's Python (or SageMath) interpreter, started by
# `drover session-host`. Requests arrive on fd 3 as JSON lines ({"code": ...}); the status of
# each is written to fd 4 as one JSON line after stdout and stderr are flushed, so that the
# host has every byte of an exec's output before it learns that the exec is over.
import ast
import json
import os
import signal
import sys
import traceback

kind = sys.argv[1] if len(sys.argv) > 1 else "python"
requests = os.fdopen(3, "rb")
statuses = os.fdopen(4, "wb", buffering=0)
# SIGINT interrupts the exec that runs (KeyboardInterrupt), whatever the parent left it as.
signal.signal(signal.SIGINT, signal.default_int_handler)

namespace = {"__name__": "__main__", "__builtins__": __builtins__}
preparse = None
if kind == "sage":
    exec("from sage.all import *", namespace)
    from sage.repl.preparse import preparse


def report(status):
    sys.stdout.flush()
    sys.stderr.flush()
    statuses.write(json.dumps(status).encode() + b"\n")


# Everything is imported: the host may say the session is ready.
report({"ok": True, "ready": True})


def run(code):
    """Runs `code` in the session's namespace; a last bare expression is printed, as a REPL does."""
    if preparse is not None:
        code = preparse(code)
    tree = ast.parse(code, "<exec>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, "<exec>", "exec"), namespace)
    if last is not None:
        value = eval(compile(last, "<exec>", "eval"), namespace)
        if value is not None:
            print(repr(value))


while True:
    try:
        line = requests.readline()
        if not line:
            break
        request = json.loads(line)
        try:
            run(request["code"])
            status = {"ok": True}
        except KeyboardInterrupt:
            status = {"ok": False, "interrupted": True, "error": "KeyboardInterrupt"}
        except SystemExit as stop:
            report({"ok": False, "session_ended": True,
                    "error": f"the code called exit({stop.code!r}); the session ends"})
            break
        except BaseException as err:
            # The traceback from the user's code down, without the shim's own frames.
            tb = err.__traceback__
            while tb is not None and tb.tb_frame.f_code.co_filename != "<exec>":
                tb = tb.tb_next
            traceback.print_exception(type(err), err, tb)
            text = "".join(traceback.format_exception_only(type(err), err)).strip()
            status = {"ok": False, "error": text, "printed": True}
        report(status)
    except KeyboardInterrupt:
        # An interrupt that came between two execs: there is nothing to interrupt.
        continue
