"""A job that misbehaves the way a cancel must survive: it sleeps, with a detached writer and a
double-forked setsid daemon (empty environment) left behind; their pids go to PIDS_FILE."""

import os
import subprocess
import sys
import time

writer = subprocess.Popen(
    [sys.executable, "-c", "import os, time\nwhile True:\n os.write(1, b'tick\\n')\n time.sleep(0.5)"],
    start_new_session=True,
)
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    daemon = os.fork()
    if daemon == 0:
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(900)"], {})
    os.write(w, str(daemon).encode())
    os._exit(0)
daemon = int(os.read(r, 32))
with open(os.environ["PIDS_FILE"], "w") as f:
    f.write(f"{os.getpid()} {writer.pid} {daemon}")
os.write(1, b"sleeping\n")
time.sleep(900)
