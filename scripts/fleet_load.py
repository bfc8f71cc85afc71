"""A bounded load generator for one endpoint or fleet name: a few requests a second, a
fixed count, every non-200 counted. For watching a relay or a replica kill by hand:

    python scripts/fleet_load.py NAME --count 200 --rate 4

Only loopback or cluster-internal URLs that the registry holds; it never retries, so a
failed request is counted as one.
"""

from __future__ import annotations

import argparse
import collections
import json
import time
import urllib.error
import urllib.request


def one(url: str, key: str, model: str, timeout: float = 30) -> int:
    body = json.dumps({"model": model, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"{url}/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def main() -> None:
    from hpclaunch.endpoints.resolve import resolve

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second (max 20)")
    args = parser.parse_args()
    count, gap = min(args.count, 2000), 1 / min(max(args.rate, 0.1), 20)
    ep = resolve(args.name)
    codes: collections.Counter[int] = collections.Counter()
    started = time.monotonic()
    for i in range(count):
        code = one(ep.base_url, ep.api_key, ep.model)
        codes[code] += 1
        if code != 200:
            print(f"{time.strftime('%H:%M:%S')} request {i}: status {code}", flush=True)
        time.sleep(gap)
    failed = count - codes[200]
    print(f"{count} requests in {time.monotonic() - started:.1f} s: {failed} failed "
          f"({dict(codes)})")


if __name__ == "__main__":
    main()
