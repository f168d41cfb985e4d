"""
A gRPC load loop (ghz is not packaged): unary calls on one channel, with
C{--concurrency} calls in flight, for C{--duration} seconds; prints one JSON
line with the calls done, the errors, and the rate.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

import grpc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--authority", default=None)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--size", type=int, default=64, help="request bytes")
    args = parser.parse_args()
    options = [("grpc.default_authority", args.authority)] if args.authority else []
    channel = grpc.insecure_channel(args.target, options=options)
    call = channel.unary_unary("/bench.Echo/Echo")
    payload = b"x" * args.size
    call(payload, timeout=10)  # connected and warm before the clock starts
    lock = threading.Lock()
    done = errors = 0
    stop_at = time.monotonic() + args.duration
    finished = threading.Event()
    outstanding = [0]

    def launch() -> None:
        outstanding[0] += 1
        call.future(payload, timeout=10).add_done_callback(landed)

    def landed(future: grpc.Future) -> None:
        nonlocal done, errors
        with lock:
            outstanding[0] -= 1
            if future.exception() is None:
                done += 1
            else:
                errors += 1
            if time.monotonic() < stop_at:
                launch()
            elif outstanding[0] == 0:
                finished.set()

    started = time.monotonic()
    with lock:
        for _ in range(args.concurrency):
            launch()
    finished.wait(args.duration + 30)
    elapsed = time.monotonic() - started
    print(json.dumps({"calls": done, "errors": errors, "rps": done / elapsed}))
    channel.close()


if __name__ == "__main__":
    main()
