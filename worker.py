"""Run a Storywink worker: `python worker.py` (or the `storywink-worker` console script).

What it checks at start-up and how it stops: storywink/worker/process.py.
"""

from storywink.worker.process import run

if __name__ == "__main__":
    run()
