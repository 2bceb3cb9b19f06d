"""Runs one MiniStack on 127.0.0.1:PORT for as long as the process OWNER_PID lives.

usage: python ministack_serve.py PORT OWNER_PID WORKDIR

MiniStack keeps the Lambda processes it started alive when it is stopped, unless it
is reset first; and it writes a pid file and code cache into TMPDIR. So each instance
gets its own WORKDIR as TMPDIR, and is reset before it is stopped: when the owner
(a test binary, the demo script) exits, when this process is told to stop, or when
MiniStack itself dies.
"""

import os
import signal
import subprocess
import sys
import time
import urllib.request


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def main():
    port, owner, workdir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ)
    env.update(
        TMPDIR=workdir,
        BIND_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        IOT_MTLS_ENABLED="0",
    )
    binary = os.path.join(os.path.dirname(sys.executable), "ministack")
    log = open(os.path.join(workdir, "ministack.log"), "ab")
    child = subprocess.Popen([binary], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    try:
        while not stopping and alive(owner) and child.poll() is None:
            time.sleep(0.3)
    finally:
        if child.poll() is None:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/_ministack/reset", method="POST"
                )
                urllib.request.urlopen(request, timeout=10).read()
            except Exception:
                pass
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
