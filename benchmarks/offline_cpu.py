"""The offline pipeline's CPU per event, to compare two commits on a shared machine (issue 14).

``run.py``'s offline section times its loop by the wall clock, which counts the time the loop
waited for a core while other jobs ran; this times the same loop (``Decoder.decode`` +
``Scorer.score`` + ``orjson.dumps``, batches of 500, the default settings) by the process's CPU
time as well. It imports ``run`` from the current directory's ``benchmarks/``, so it runs against
any checkout, older ones included, with that checkout's interpreter::

    cd /tmp/cpu-base && .venv/bin/python /path/to/benchmarks/offline_cpu.py 100000
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path.cwd() / "benchmarks"))
import run  # (the checkout's own, found from the current directory)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    from stream_scorer.decode import Decoder
    from stream_scorer.worker import build_scorer

    values = [v for _, v in run.simulate(n)]
    s = run.settings_for()
    decode = Decoder(s.max_event_bytes, s.max_future_skew_s, s.min_event_time).decode
    score = build_scorer(s).score
    dumps = orjson.dumps
    gc.collect()
    w0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, n, 500):
        t0, now = time.perf_counter(), time.time()
        for v in values[i : i + 500]:
            dumps(score(decode(v, now), 0, t0))
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(json.dumps({"git_head": run._git_head(), "events": n,
                      "wall_us_per_event": round(wall / n * 1e6, 2),
                      "cpu_us_per_event": round(cpu / n * 1e6, 2)}))


if __name__ == "__main__":
    main()
