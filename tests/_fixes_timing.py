import time, tests.support.nodes as n
orig = n.wait_until
async def timed(pred, *, timeout_s=20.0, interval_s=0.05, what="condition"):
    t = time.monotonic()
    try:
        await orig(pred, timeout_s=timeout_s, interval_s=interval_s, what=what)
    finally:
        print(f"\nWAIT {what!r}: {time.monotonic()-t:.2f}s", flush=True)
n.wait_until = timed
import tests.e2e.test_reliability as r
r.wait_until = timed
