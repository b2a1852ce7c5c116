"""Logged datasets at scale: 1,000,000 events generated, written and read back.

Setting (pretrained-policies issue, "sizes up to 1M events within memory"):
`ContextualRec-v0` with the uniform logging policy, 64 streams, in a fresh Python
process that generates the events, writes them as Parquet, loads them back and
checks that the action and propensity columns survived exactly. Recorded in
`benchmark.extra_info`: seconds for each phase, events per second of generation,
the Parquet file's size and the peak resident memory of that process.

Under `--benchmark-disable` (as in `make bench-smoke`) the same probe runs with 5,000
events as a smoke test; its numbers are not meaningful.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FULL_EVENTS, SMOKE_EVENTS = 1_000_000, 5_000

PROBE = textwrap.dedent(
    """
    import json, os, resource, sys, tempfile, time
    import jax, numpy as np
    import envs
    from envs import logged

    events = int(sys.argv[1])
    env, params = envs.make("ContextualRec-v0")
    start = time.perf_counter()
    data = logged.generate(
        jax.random.key(0), env, params, logged.uniform(), events, num_streams=64
    )
    generated = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "logs.parquet")
        logged.save(data, path)
        written = time.perf_counter()
        size = os.path.getsize(path)
        back = logged.load(path)
        read = time.perf_counter()
    exact = bool(
        np.array_equal(back.columns()["action"], data.columns()["action"])
        and np.array_equal(back.columns()["propensity"], data.columns()["propensity"])
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    print(json.dumps({
        "events": len(back), "exact": exact, "generate_s": generated - start,
        "write_s": written - generated, "read_s": read - written,
        "parquet_mib": size / 2**20, "peak_rss_mib": peak,
    }))
    """
)


def test_one_million_logged_events(benchmark, record_ratio, request):
    disabled = request.config.getoption("benchmark_disable")
    events = SMOKE_EVENTS if disabled else FULL_EVENTS

    def probe() -> dict:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(events)],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])

    result = benchmark.pedantic(probe, rounds=1, iterations=1)
    assert result["events"] == events
    assert result["exact"]
    benchmark.extra_info.update(result)
    record_ratio(
        "logged_events_per_s",
        events / result["generate_s"],
        events=events,
        write_s=result["write_s"],
        read_s=result["read_s"],
        parquet_mib=result["parquet_mib"],
        peak_rss_mib=result["peak_rss_mib"],
    )
