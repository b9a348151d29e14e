#!/usr/bin/env python3
"""Does a request's latency tell whether an address has an account?

Starts latchkey on a throwaway database, creates identities through the admin
API, then for recovery code requests, verification code requests and login
with a wrong password sends pairs of requests, one for a known address and one
for an unknown one, in random order within each pair, over one kept-alive
connection. Each side's latencies are compared with the Mann-Whitney U test
and the two-sample Kolmogorov-Smirnov test (large p-values: nothing to tell
the sides apart at this sample size). Prints a Markdown table, writes JSON.

Standard library only. A measurement, not a test: it fails nothing.

  scripts/timing.py                                  # release build, SQLite
  scripts/timing.py --bin target/release/latchkey --db both --out timing.json
"""

import argparse
import http.client
import json
import math
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime, timezone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOWS = ("recovery", "verification", "login")
# Other known sides for login, each against unknown addresses: an identity
# without a password, a deactivated one, one whose hash was imported with
# other parameters than the configured hasher's.
LOGIN_VARIANTS = ("login-nopassword", "login-inactive", "login-otherhash")
# Send caps: an address past its cap against one still mailed, both with
# accounts, on a server of their own with the per-address cap on
# (CAP_PER_ADDRESS a window) and the per-client limits out of reach.
CAP_VARIANTS = ("recovery-capped", "verification-capped")
CAP_PER_ADDRESS = 5
# A real bcrypt hash's salt and digest; the cost in front is set per run.
BCRYPT_TAIL = "iiCigTe6scRSMso87E.XEu2jZcbqkBbhmBFPE47PiBZRdeOAlCuo."
PASSWORD = "timing-script passphrase, long and unusual"
WRONG_PASSWORD = "not the password of anyone here"


# --- statistics -------------------------------------------------------------


def percentile(sorted_xs, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_xs:
        return float("nan")
    pos = (len(sorted_xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def mann_whitney(xs, ys):
    """Two-sided U test, normal approximation with tie and continuity corrections."""
    n1, n2 = len(xs), len(ys)
    pooled = sorted([(v, 0) for v in xs] + [(v, 1) for v in ys])
    rank_sum_x = 0.0
    tie_term = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        avg_rank = (i + j) / 2 + 1
        t = j - i + 1
        tie_term += t**3 - t
        rank_sum_x += avg_rank * sum(1 for k in range(i, j + 1) if pooled[k][1] == 0)
        i = j + 1
    u1 = rank_sum_x - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    var = n1 * n2 / 12 * ((n + 1) - tie_term / (n * (n - 1)))
    if var <= 0:
        return {"u": u1, "z": 0.0, "p": 1.0}
    diff = u1 - mean
    z = (abs(diff) - 0.5) / math.sqrt(var) if abs(diff) >= 0.5 else 0.0
    p = min(1.0, math.erfc(z / math.sqrt(2)))
    # Common-language effect size: P(known > unknown) + P(tie)/2.
    return {"u": u1, "z": math.copysign(z, diff), "p": p, "auc": u1 / (n1 * n2)}


def kolmogorov_q(lam):
    """P(K > lam) for the Kolmogorov distribution."""
    if lam < 1e-3:
        return 1.0
    total = 0.0
    for k in range(1, 200):
        term = 2 * (-1) ** (k - 1) * math.exp(-2 * k * k * lam * lam)
        total += term
        if abs(term) < 1e-12:
            break
    return min(1.0, max(0.0, total))


def kolmogorov_smirnov(xs, ys):
    """Two-sample statistic D and its asymptotic two-sided p-value."""
    a, b = sorted(xs), sorted(ys)
    n1, n2 = len(a), len(b)
    i = j = 0
    d = 0.0
    while i < n1 and j < n2:
        v = min(a[i], b[j])
        while i < n1 and a[i] == v:
            i += 1
        while j < n2 and b[j] == v:
            j += 1
        d = max(d, abs(i / n1 - j / n2))
    ne = n1 * n2 / (n1 + n2)
    # Stephens' small-sample correction, as in Numerical Recipes.
    lam = (math.sqrt(ne) + 0.12 + 0.11 / math.sqrt(ne)) * d
    return {"d": d, "p": kolmogorov_q(lam)}


def summary(ns):
    ms = sorted(v / 1e6 for v in ns)
    return {
        "n": len(ms),
        "median_ms": percentile(ms, 0.5),
        "p10_ms": percentile(ms, 0.1),
        "p90_ms": percentile(ms, 0.9),
        "p99_ms": percentile(ms, 0.99),
        "mean_ms": sum(ms) / len(ms) if ms else float("nan"),
    }


# --- the server -------------------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hasher_yaml(spec):
    """bcrypt:COST or argon2:m=KIB,t=N,p=N -> the hashers block."""
    algo, _, params = spec.partition(":")
    if algo == "bcrypt":
        return f"hashers:\n  algorithm: bcrypt\n  bcrypt:\n    cost: {int(params or 12)}\n"
    if algo == "argon2":
        kv = dict(p.split("=") for p in params.split(",")) if params else {}
        return (
            "hashers:\n  algorithm: argon2\n  argon2:\n"
            f"    memory: {int(kv.get('m', 65536)) // 1024}MB\n"
            f"    iterations: {int(kv.get('t', 2))}\n"
            f"    parallelism: {int(kv.get('p', 2))}\n"
        )
    sys.exit(f"--hasher: expected bcrypt:COST or argon2:m=KIB,t=N,p=N, got {spec}")


def send_limits_yaml(capped):
    if not capped:
        return "  send_limits:\n    enabled: false\n"
    return (
        "  send_limits:\n    enabled: true\n"
        f"    address:\n      max: {CAP_PER_ADDRESS}\n      window: 1h\n"
        "    ip:\n      flows_per_minute: 1000000000\n      codes_per_minute: 1000000000\n"
    )


def write_config(path, dsn, public_port, admin_port, hasher, capped=False):
    schema = os.path.join(REPO, "contrib/quickstart/identity.schema.json")
    # Limits off: one client asking for the same addresses thousands of
    # times would be refused (or silently capped) within a second, and the
    # comparison is of the uncapped paths; the send-cap comparison runs on a
    # server of its own with only the per-address cap. courier.smtp is unset, so mail
    # stays in the outbox and no dispatcher competes for the CPU.
    text = f"""version: v0.13.0
dsn: "{dsn}"
serve:
  public:
    host: 127.0.0.1
    port: {public_port}
    base_url: http://127.0.0.1:{public_port}/
  admin:
    host: 127.0.0.1
    port: {admin_port}
    base_url: http://127.0.0.1:{admin_port}/
log:
  level: warn
  format: text
secrets:
  cookie:
    - TIMING-SCRIPT-ONLY-NOT-A-SECRET
  cipher:
    - 32-LONG-TIMING-SCRIPT-NOT-SECRET
{hasher_yaml(hasher)}security:
  login_throttling:
    enabled: false
{send_limits_yaml(capped)}selfservice:
  default_browser_return_url: http://127.0.0.1:{public_port}/
  methods:
    password:
      enabled: true
  flows:
    verification:
      enabled: true
      use: code
    recovery:
      enabled: true
      use: code
database:
  cleanup:
    interval: 0s
identity:
  default_schema_id: default
  schemas:
    - id: default
      url: file://{schema}
"""
    with open(path, "w") as f:
        f.write(text)


def psql(url, sql):
    env = dict(os.environ, PGOPTIONS="-c client_min_messages=warning")
    subprocess.run(["psql", url, "-qAtc", sql], check=True, stdout=subprocess.DEVNULL, env=env)


class Server:
    def __init__(self, binary, db, pg_url, hasher, workdir, capped=False):
        self.binary, self.db, self.pg_url = binary, db, pg_url
        self.dir = tempfile.mkdtemp(prefix=f"timing-{db}-", dir=workdir)
        self.public_port, self.admin_port = free_port(), free_port()
        self.pg_db = None
        if db == "sqlite":
            self.dsn = f"sqlite://{self.dir}/timing.db?_fk=true"
        else:
            self.pg_db = f"latchkey_timing_{os.getpid()}{'_capped' if capped else ''}"
            psql(pg_url, f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)")
            psql(pg_url, f"CREATE DATABASE {self.pg_db}")
            parts = urllib.parse.urlsplit(pg_url)
            self.dsn = urllib.parse.urlunsplit(parts._replace(path="/" + self.pg_db))
            subprocess.run(
                [binary, "migrate", "sql", "--yes", self.dsn],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        self.config = os.path.join(self.dir, "latchkey.yml")
        write_config(self.config, self.dsn, self.public_port, self.admin_port, hasher, capped)
        self.log = open(os.path.join(self.dir, "server.log"), "wb")
        # --dev only so that a bcrypt cost below 12 is accepted.
        self.proc = subprocess.Popen(
            [binary, "serve", "-c", self.config, "--dev"],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                self.log.flush()
                with open(self.log.name, errors="replace") as f:
                    sys.stderr.write(f.read())
                raise SystemExit(f"latchkey exited with {self.proc.returncode}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=2)
                c.request("GET", "/health/ready")
                if c.getresponse().status == 200:
                    c.close()
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("latchkey did not become ready within 60 s")
            time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        if self.pg_db:
            psql(self.pg_url, f"DROP DATABASE IF EXISTS {self.pg_db} WITH (FORCE)")
        shutil.rmtree(self.dir, ignore_errors=True)


# --- the client -------------------------------------------------------------


class Client:
    """One kept-alive connection; reconnects if the server closes it."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                start = time.perf_counter_ns()
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                payload = resp.read()
                elapsed = time.perf_counter_ns() - start
                return resp.status, payload, elapsed
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # An idle timeout closed the connection; the retry's time counts.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise


def other_hash(hasher):
    """A bcrypt hash at other parameters than the configured hasher's."""
    algo, _, params = hasher.partition(":")
    cost = int(params or 12) + 2 if algo == "bcrypt" else 10
    return f"$2b${cost:02d}${BCRYPT_TAIL}"


def create_identities(admin, n, tag, kind="login", hasher=""):
    known = []
    for i in range(n):
        email = f"known-{kind}-{tag}-{i}@timing.example"
        identity = {"schema_id": "default", "traits": {"email": email}}
        if kind == "login-otherhash":
            identity["credentials"] = {"password": {"config": {"hashed_password": other_hash(hasher)}}}
        elif kind not in ("login-nopassword", "mailed", "capped"):
            identity["credentials"] = {"password": {"config": {"password": PASSWORD}}}
        if kind == "login-inactive":
            identity["state"] = "inactive"
        status, body, _ = admin.call("POST", "/admin/identities", identity)
        if status != 201:
            raise SystemExit(f"creating an identity: {status} {body[:300]!r}")
        created = json.loads(body)
        if created.get("state", "active") != identity.get("state", "active"):
            raise SystemExit(f"identity created as {created.get('state')}, not {identity['state']}")
        known.append(email)
    return known


def one_request(public, flow, email):
    """Starts a fresh native flow (not timed), then times the submission."""
    flow = flow.split("-")[0]
    status, body, _ = public.call("GET", f"/self-service/{flow}/api")
    if status != 200:
        raise SystemExit(f"starting a {flow} flow: {status} {body[:300]!r}")
    flow_id = json.loads(body)["id"]
    if flow == "login":
        payload = {"method": "password", "identifier": email, "password": WRONG_PASSWORD}
    else:
        payload = {"method": "code", "email": email}
    status, _, elapsed = public.call("POST", f"/self-service/{flow}?flow={flow_id}", payload)
    return status, elapsed


def measure(public, flow, known, unknown, samples, warmup, rng):
    times = {"known": [], "unknown": []}
    statuses = {"known": {}, "unknown": {}}
    for i in range(warmup + samples):
        pair = [("known", known[i % len(known)]), ("unknown", unknown[i % len(unknown)])]
        rng.shuffle(pair)
        for side, email in pair:
            status, elapsed = one_request(public, flow, email)
            if i >= warmup:
                times[side].append(elapsed)
                statuses[side][str(status)] = statuses[side].get(str(status), 0) + 1
    return times, statuses


def compare(db, flow, times, statuses, elapsed_s):
    return {
        "db": db,
        "flow": flow,
        "known": summary(times["known"]),
        "unknown": summary(times["unknown"]),
        "statuses": statuses,
        "mann_whitney": mann_whitney(times["known"], times["unknown"]),
        "ks": kolmogorov_smirnov(times["known"], times["unknown"]),
        "wall_seconds": elapsed_s,
    }


def fmt_p(p):
    # erfc underflows to 0 beyond about 1e-308.
    return f"{p:.3g}" if p > 0 else "< 1e-300"


def markdown(results):
    head = (
        "| db | flow | side | n | median ms | p10 ms | p90 ms | p99 ms | Mann-Whitney p | KS D | KS p |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        for side in ("known", "unknown"):
            s = r[side]
            label = side
            if r["flow"] in CAP_VARIANTS:
                label = {"known": "mailed", "unknown": "capped"}[side]
            tests = (
                f"{fmt_p(r['mann_whitney']['p'])} | {r['ks']['d']:.4f} | {fmt_p(r['ks']['p'])}"
                if side == "known"
                else " | | "
            )
            rows.append(
                f"| {r['db']} | {r['flow']} | {label} | {s['n']} | {s['median_ms']:.3f} | "
                f"{s['p10_ms']:.3f} | {s['p90_ms']:.3f} | {s['p99_ms']:.3f} | {tests} |"
            )
    return head + "\n".join(rows) + "\n"


def git_commit():
    try:
        return subprocess.run(
            ["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", help="latchkey binary to run (default: cargo build --release, then target/release/latchkey)")
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument("--postgres-url", default=os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
                    help="maintenance connection; a fresh database is created beside it and dropped afterwards")
    ap.add_argument("--samples", type=int, default=5000, help="timed requests per side and flow (default 5000)")
    ap.add_argument("--warmup", type=int, default=200, help="untimed pairs before each flow's samples (default 200)")
    ap.add_argument("--identities", type=int, default=100, help="known addresses, cycled (default 100); as many unknown ones")
    ap.add_argument("--flows", default=",".join(FLOWS), help="comma-separated, from " + ",".join(FLOWS + LOGIN_VARIANTS + CAP_VARIANTS) + " or all (default: the first three)")
    ap.add_argument("--hasher", default="bcrypt:8",
                    help="bcrypt:COST or argon2:m=KIB,t=N,p=N (default bcrypt:8; the server runs with --dev so low costs are allowed)")
    ap.add_argument("--seed", type=int, help="seed for the order within pairs")
    ap.add_argument("--out", default="timing.json", help="JSON results (default timing.json)")
    args = ap.parse_args()

    flows = [f for f in args.flows.split(",") if f]
    if flows == ["all"]:
        flows = list(FLOWS + LOGIN_VARIANTS + CAP_VARIANTS)
    for f in flows:
        if f not in FLOWS + LOGIN_VARIANTS + CAP_VARIANTS:
            ap.error(f"unknown flow {f}")
    binary = args.bin
    if not binary:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "latchkey"], cwd=REPO, check=True)
        binary = os.path.join(REPO, "target/release/latchkey")
    binary = os.path.abspath(binary)
    if "/debug/" in binary:
        print("warning: a debug build; its timings say little about a release build's", file=sys.stderr)

    rng = random.Random(args.seed)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    workdir = os.path.join(REPO, "target", "tmp")
    os.makedirs(workdir, exist_ok=True)
    results = []
    for db in dbs:
        plain = [f for f in flows if f not in CAP_VARIANTS]
        if plain:
            server = Server(binary, db, args.postgres_url, args.hasher, workdir)
            try:
                admin = Client(server.admin_port)
                public = Client(server.public_port)
                tag = f"{os.getpid()}-{rng.randrange(1 << 30)}"
                known = create_identities(admin, args.identities, tag)
                unknown = [f"unknown-{tag}-{i}@timing.example" for i in range(args.identities)]
                for flow in plain:
                    pool = known
                    if flow in LOGIN_VARIANTS:
                        pool = create_identities(admin, args.identities, tag, flow, args.hasher)
                    print(f"{db} {flow}: {args.warmup} + {args.samples} pairs", file=sys.stderr, flush=True)
                    start = time.monotonic()
                    times, statuses = measure(public, flow, pool, unknown, args.samples, args.warmup, rng)
                    results.append(compare(db, flow, times, statuses, time.monotonic() - start))
            finally:
                server.stop()
        capped_flows = [f for f in flows if f in CAP_VARIANTS]
        if capped_flows:
            server = Server(binary, db, args.postgres_url, args.hasher, workdir, capped=True)
            try:
                admin = Client(server.admin_port)
                public = Client(server.public_port)
                for flow in capped_flows:
                    tag = f"{os.getpid()}-{rng.randrange(1 << 30)}"
                    # Mailed: enough addresses that none reaches its cap.
                    per_address = CAP_PER_ADDRESS - 1
                    mailed = create_identities(
                        admin, -(-(args.warmup + args.samples) // per_address), tag, "mailed"
                    )
                    # Capped: asked for up to their cap before the clock starts.
                    capped = create_identities(admin, args.identities, tag, "capped")
                    for email in capped:
                        for _ in range(CAP_PER_ADDRESS):
                            one_request(public, flow, email)
                    print(f"{db} {flow}: {args.warmup} + {args.samples} pairs", file=sys.stderr, flush=True)
                    start = time.monotonic()
                    times, statuses = measure(public, flow, mailed, capped, args.samples, args.warmup, rng)
                    results.append(compare(db, flow, times, statuses, time.monotonic() - start))
            finally:
                server.stop()

    meta = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "binary": binary,
        "hasher": args.hasher,
        "samples": args.samples,
        "warmup": args.warmup,
        "identities": args.identities,
        "other_hash": other_hash(args.hasher) if "login-otherhash" in flows else None,
        "seed": args.seed,
        "cpus": os.cpu_count(),
    }
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=2)
    print(markdown(results))
    for r in results:
        if set(r["statuses"]["known"]) != set(r["statuses"]["unknown"]):
            print(f"note: {r['db']} {r['flow']}: statuses differ: {r['statuses']}", file=sys.stderr)


if __name__ == "__main__":
    main()
