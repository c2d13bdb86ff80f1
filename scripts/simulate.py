"""A flash sale against a waiting room: thousands of virtual visitors, each with its own
cookie jar and keep-alive connection, arrive in a burst at one nginx (started by
scripts/simulate) whose room lets a few in at a time.

A visitor who is queued polls GET /_wr/position every refresh_seconds, as the queue page's
script does; when told "admitted" it loads the page again (and must get the origin's content),
browses for a while (page loads and heartbeats, as heartbeat.js sends them), then leaves with
POST /_wr/leave or simply goes away (its slot is freed when the session goes idle). Some
visitors give up while waiting.

A slowing origin (--slowdown F --slow-after S): visitors admitted S seconds or more after the
opening browse F times longer, so the room's pace drops while people wait; the visitors behave
as before otherwise.

Measured: the most sessions live at once (from the status endpoint, and from the visitors' own
account), admissions out of ticket order, waits, the accuracy of the wait estimates (for the
visitors admitted from the queue, the relative error (estimate - real wait) / real wait of the
first estimate each saw and of every estimate seen, each poll's against the wait that was really
left; median signed and median absolute); a chart
and a JSON summary are written. Exits 1 when the room admitted more than its capacity or out of
order, 2 when the run itself failed.

Python 3.11 standard library and matplotlib only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import json
import math
import os
import random
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

ROOM = "sale"
COOKIE = f"wr_{ROOM}"
ORIGIN_MARK = "ORIGIN-CONTENT"
REQUEST_TIMEOUT = 10.0
# Estimates given this many seconds after the opening are also scored on their own.
WARM = 60.0


def env(name, default, kind=str):
    v = os.environ.get(name)
    return kind(v) if v not in (None, "") else default


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--nginx", required=True, help="nginx binary")
    a("--module", required=True, help="the module's .so")
    a("--prefix", required=True, help="an empty directory for nginx's prefix")
    a("--visitors", type=int, default=env("SIM_VISITORS", 3000, int))
    a("--burst", type=float, default=env("SIM_BURST", 20.0, float), help="arrivals spread over this many seconds")
    a("--capacity", type=int, default=env("SIM_CAPACITY", 20, int), help="max_active")
    a("--abandon", type=float, default=env("SIM_ABANDON", 0.10, float), help="fraction who give up waiting")
    a("--leave", type=float, default=env("SIM_LEAVE", 0.70, float), help="fraction of admitted who POST leave")
    a("--seed", type=int, default=env("SIM_SEED", 1, int))
    a("--duration", type=float, default=env("SIM_DURATION", 180.0, float),
      help="seconds from the first arrival after which every visitor stops")
    a("--claim-window", type=int, default=env("SIM_CLAIM_WINDOW", 10, int))
    a("--idle", type=int, default=env("SIM_IDLE", 15, int))
    a("--heartbeat", type=int, default=env("SIM_HEARTBEAT", 5, int))
    a("--queue-timeout", type=int, default=env("SIM_QUEUE_TIMEOUT", 30, int))
    a("--browse-min", type=float, default=env("SIM_BROWSE_MIN", 5.0, float))
    a("--browse-max", type=float, default=env("SIM_BROWSE_MAX", 30.0, float))
    a("--slowdown", type=float, default=env("SIM_SLOWDOWN", 1.0, float),
      help="a slowing origin: visitors admitted --slow-after seconds or more after the opening "
           "browse this many times longer (1: a steady origin), so the room's pace drops")
    a("--slow-after", type=float, default=env("SIM_SLOW_AFTER", 60.0, float),
      help="seconds after the opening from which --slowdown applies (60)")
    a("--png", default=env("SIM_PNG", "target/simulate.png"))
    a("--json", default=env("SIM_JSON", "target/simulate.json"))
    args = p.parse_args()
    if args.visitors < 1 or args.capacity < 1 or args.burst <= 0 or args.duration <= 0:
        p.error("visitors, capacity, burst and duration must be positive")
    if not (0 <= args.abandon <= 1 and 0 <= args.leave <= 1):
        p.error("abandon and leave are fractions between 0 and 1")
    if args.heartbeat >= args.idle:
        p.error("heartbeat must be shorter than idle")
    if args.browse_min > args.browse_max or args.browse_min < 0:
        p.error("browse-min must be between 0 and browse-max")
    if args.slowdown <= 0 or args.slow_after < 0:
        p.error("slowdown must be positive and slow-after not negative")
    args.duration = min(args.duration, 1800.0)
    return args


# ---------------------------------------------------------------------------------------------
# nginx


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(args, port, origin_port):
    prefix = args.prefix
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    html = os.path.join(prefix, "html")
    os.makedirs(html, exist_ok=True)
    for name, title in (("index.html", "Flash sale"), ("product.html", "The product")):
        with open(os.path.join(html, name), "w") as f:
            f.write(f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
                    f"<!-- {ORIGIN_MARK} --><h1>{title}</h1><p>Buy now.</p>"
                    f"<script src=\"/_wr/heartbeat.js\"></script></body></html>\n")
    user = "user root;" if os.geteuid() == 0 else ""
    conf = f"""
load_module {args.module};
{user}
worker_processes 2;
worker_rlimit_nofile 20000;
error_log logs/error.log notice;
pid logs/nginx.pid;

events {{
    worker_connections 8192;
}}

http {{
    waiting_room_zone zone={ROOM}:4m max_active={args.capacity} session=30m idle={args.idle}s
                      heartbeat={args.heartbeat}s queue_timeout={args.queue_timeout}s
                      claim_window={args.claim_window}s;

    log_format wr '$msec "$request" $status room=$waiting_room_status '
                  'pos=$waiting_room_position wait=$waiting_room_wait';

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log logs/access.log wr buffer=64k flush=1s;
        keepalive_requests 100000;
        keepalive_timeout 120s;

        location / {{
            waiting_room {ROOM};
            proxy_pass http://127.0.0.1:{origin_port};
        }}
        location /_wr/ {{
            waiting_room_api {ROOM};
        }}
        location = /_wr_status {{
            waiting_room_status {ROOM};
        }}
    }}

    server {{
        listen 127.0.0.1:{origin_port};
        access_log off;
        root html;
    }}
}}
"""
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path


def start_nginx(args):
    port, origin_port = free_port(), free_port()
    while origin_port == port:
        origin_port = free_port()
    write_config(args, port, origin_port)
    base = [args.nginx, "-p", args.prefix.rstrip("/") + "/", "-c", "nginx.conf"]
    subprocess.run(base + ["-t", "-q"], check=True)
    subprocess.run(base, check=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nginx did not start listening")


def stop_nginx(args):
    pidfile = os.path.join(args.prefix, "logs", "nginx.pid")
    try:
        pid = int(open(pidfile).read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------------------------------------
# a small HTTP/1.1 client


class HttpError(Exception):
    pass


@dataclass
class Response:
    status: int
    headers: list
    body: bytes
    sent: float
    received: float

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def cookies(self):
        return [v for k, v in self.headers if k == "set-cookie"]


class Connection:
    """One keep-alive connection, reopened when the server has closed it."""

    def __init__(self, port, clock):
        self.port = port
        self.clock = clock
        self.reader = None
        self.writer = None
        self.used = 0

    async def close(self):
        if self.writer is not None:
            w, self.writer, self.reader = self.writer, None, None
            w.close()
            try:
                await asyncio.wait_for(w.wait_closed(), 1)
            except Exception:
                pass

    async def request(self, method, path, cookies):
        for attempt in (0, 1):
            fresh = self.writer is None
            if fresh:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.used = 0
            try:
                return await self._exchange(method, path, cookies)
            except (ConnectionError, asyncio.IncompleteReadError, HttpError) as e:
                await self.close()
                # A reused connection the server closed meanwhile: once more on a new one.
                if fresh or attempt == 1 or (isinstance(e, HttpError) and str(e) != "closed"):
                    raise
        raise HttpError("unreachable")

    async def _exchange(self, method, path, cookies):
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "User-Agent: wr-simulate"]
        if method == "GET" and not path.startswith("/_wr/"):
            # A page load, as a browser says it: only page loads join the line.
            lines += ["Accept: text/html,*/*;q=0.8", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: document"]
        if cookies:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in cookies.items()))
        if method == "POST":
            lines.append("Content-Length: 0")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        sent = self.clock()
        self.writer.write(data)
        await self.writer.drain()
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                raise HttpError("closed")
            raise
        except asyncio.LimitOverrunError:
            raise HttpError("header too long")
        text = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", text[0])
        if not m:
            raise HttpError(f"bad status line {text[0]!r}")
        status = int(m.group(1))
        headers = []
        for line in text[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.append((k.strip().lower(), v.strip()))
        hmap = {k: v for k, v in headers}
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif "content-length" in hmap:
            body = await self.reader.readexactly(int(hmap["content-length"]))
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        else:
            body = await self.reader.read()
            hmap["connection"] = "close"
        received = self.clock()
        self.used += 1
        if hmap.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, headers, body, sent, received)


def token_fields(value):
    """(kind, number) of a room cookie: kind 1 is a ticket, 2 a session, 3 an arrival (a first
    contact with no place yet, which takes it when it comes back). The part before the
    dot is base64url of a little-endian record: byte 1 the kind, bytes 10..18 the number (the
    ticket number for a ticket); later fields do not matter here."""
    payload = value.split(".", 1)[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if len(raw) < 18 or raw[1] not in (1, 2, 3):
        raise ValueError(f"not a room token ({len(raw)} bytes)")
    return raw[1], int.from_bytes(raw[10:18], "little")


# ---------------------------------------------------------------------------------------------
# visitors


@dataclass
class Visitor:
    n: int
    arrive: float
    abandons: bool
    abandon_after: float
    browse: float
    leaves: bool
    seed: int
    outcome: str = "not arrived"
    kind: str = ""  # direct | queued | full
    ticket: int | None = None
    t_ticket: float | None = None
    eta_first: int | None = None
    t_eta_first: float | None = None
    refresh: float = 5.0
    etas: list = field(default_factory=list)  # (when received, eta_seconds), non-null only
    eta_positions: list = field(default_factory=list)  # the position told with each of etas
    last_queued_sent: float | None = None  # when the last poll answered "queued" was sent
    polls: int = 0
    t_admit_sent: float | None = None
    t_admit: float | None = None
    admitted_page_ok: bool | None = None
    pages: int = 0
    bad_pages: int = 0
    heartbeats: int = 0
    bad_heartbeats: int = 0
    last_sent: float | None = None
    t_leave_sent: float | None = None
    leave_status: int | None = None
    session_lost_at: float | None = None
    end: str = ""  # left | idle | cut
    error: str | None = None

    def inner_interval(self, idle):
        """When this visitor certainly held a session: from the response that admitted it to
        the moment it asked to leave, lost it, or the server could first expire it."""
        if self.t_admit is None:
            return None
        if self.t_leave_sent is not None:
            end = self.t_leave_sent
        elif self.session_lost_at is not None:
            end = self.session_lost_at
        else:
            end = (self.last_sent or self.t_admit) + idle
        return (self.t_admit, max(end, self.t_admit))


class Sim:
    def __init__(self, args, port):
        self.args = args
        self.port = port
        self.t0 = time.monotonic()
        self.deadline = args.duration
        self.samples = []
        self.lag = []
        self.stop = asyncio.Event()

    def now(self):
        return time.monotonic() - self.t0

    async def sleep_until(self, t):
        """Sleeps until t (sim seconds); False when the run's deadline comes first."""
        t_stop = self.deadline
        wait = min(t, t_stop) - self.now()
        if wait > 0:
            await asyncio.sleep(wait)
        return t < t_stop and self.now() < t_stop

    async def request(self, v, conn, jar, method, path):
        r = await asyncio.wait_for(conn.request(method, path, jar), REQUEST_TIMEOUT)
        v.last_sent = r.sent
        for c in r.cookies():
            name, _, rest = c.partition("=")
            value = rest.split(";", 1)[0]
            if "max-age=0" in c.lower().replace(" ", ""):
                jar.pop(name, None)
            else:
                jar[name] = value
        return r

    def is_origin(self, r):
        return r.status == 200 and ORIGIN_MARK.encode() in r.body

    async def visitor(self, v: Visitor):
        rng = random.Random(v.seed)
        if not await self.sleep_until(v.arrive):
            return
        conn = Connection(self.port, self.now)
        jar = {}
        v.outcome = "arrived"
        try:
            r = await self.request(v, conn, jar, "GET", "/")
            if self.is_origin(r):
                kind, _ = token_fields(jar.get(COOKIE, ""))
                if kind != 2:
                    raise HttpError("admitted without a session cookie")
                v.kind, v.t_admit_sent, v.t_admit = "direct", r.sent, r.received
                v.outcome = "admitted"
                await self.browse(v, conn, jar, rng)
                return
            if r.status == 503:
                v.kind, v.outcome = "full", "rejected"
                return
            kind, number = token_fields(jar.get(COOKIE, ""))
            if kind == 3:
                # A first contact: the queue page asks at once, which takes the place.
                r = await self.request(v, conn, jar, "GET", "/_wr/position")
                kind, number = token_fields(jar.get(COOKIE, ""))
                if kind == 2:
                    v.kind, v.t_admit_sent, v.t_admit = "direct", r.sent, r.received
                    v.outcome = "admitted"
                    await self.browse(v, conn, jar, rng)
                    return
            if kind != 1:
                raise HttpError(f"no ticket with a {r.status} queue page")
            v.kind, v.ticket, v.t_ticket, v.outcome = "queued", number, r.received, "waiting"
            v.last_queued_sent = r.sent
            if r.body.startswith(b"{"):
                # The answer of the queue page's question.
                d = json.loads(r.body)
                v.refresh = float(d.get("refresh_seconds") or 5)
                eta, position = d.get("eta_seconds"), d.get("position")
            else:
                v.refresh = float(r.header("retry-after") or 5)
                m = re.search(rb'id="eta" data-s="(\d+)"', r.body)
                eta, position = (int(m.group(1)) if m else None), None
            if eta is not None:
                v.eta_first, v.t_eta_first = int(eta), r.received
                v.etas.append((r.received, v.eta_first))
                v.eta_positions.append(position)
            await self.wait_in_line(v, conn, jar, rng)
        except Exception as e:  # noqa: BLE001 - every failure is recorded and reported
            v.error = f"{type(e).__name__}: {e}"
            v.outcome = "error"
        finally:
            await conn.close()

    async def wait_in_line(self, v, conn, jar, rng):
        give_up = v.t_ticket + v.abandon_after if v.abandons else math.inf
        while True:
            t_next = self.now() + v.refresh
            if give_up <= t_next:
                await self.sleep_until(give_up)
                v.outcome = "abandoned"
                return
            if not await self.sleep_until(t_next):
                v.outcome = "waiting"  # still in line when the run ended
                return
            r = await self.request(v, conn, jar, "GET", "/_wr/position")
            v.polls += 1
            try:
                j = json.loads(r.body)
            except ValueError:
                raise HttpError(f"position answered {r.status} with no JSON")
            state = j.get("state")
            if state == "queued" and r.status == 200:
                v.last_queued_sent = r.sent
                if j.get("eta_seconds") is not None:
                    v.etas.append((r.received, int(j["eta_seconds"])))
                    v.eta_positions.append(j.get("position"))
                    if v.eta_first is None:
                        v.eta_first, v.t_eta_first = v.etas[-1][1], r.received
                v.refresh = float(j.get("refresh_seconds") or 5)
            elif state == "admitted" and r.status == 200:
                kind, _ = token_fields(jar.get(COOKIE, ""))
                if kind != 2:
                    raise HttpError("admitted without a session cookie")
                v.t_admit_sent, v.t_admit, v.outcome = r.sent, r.received, "admitted"
                page = await self.request(v, conn, jar, "GET", "/")
                v.admitted_page_ok = self.is_origin(page)
                v.pages += 1
                if not v.admitted_page_ok:
                    v.bad_pages += 1
                    v.session_lost_at = page.sent
                    return
                await self.browse(v, conn, jar, rng)
                return
            else:
                v.outcome = "lost"  # the room no longer knew the ticket
                return

    async def browse(self, v, conn, jar, rng):
        a = self.args
        # A slowing origin: those admitted late take longer over the same visit.
        slow = a.slowdown if v.t_admit >= a.slow_after else 1.0
        end = v.t_admit + v.browse * slow
        next_page = v.t_admit + rng.uniform(2, 6)
        next_beat = v.t_admit + 1  # heartbeat.js beats a second after load, then regularly
        while True:
            t = min(next_page, next_beat)
            if t >= end:
                break
            if not await self.sleep_until(t):
                v.end = "cut"
                return
            if t == next_page:
                path = "/" if rng.random() < 0.5 else "/product.html"
                r = await self.request(v, conn, jar, "GET", path)
                v.pages += 1
                next_page = self.now() + rng.uniform(2, 6)
                next_beat = self.now() + 1
                if not self.is_origin(r):
                    v.bad_pages += 1
                    v.session_lost_at = r.sent
                    v.end = "lost"
                    return
            else:
                r = await self.request(v, conn, jar, "POST", "/_wr/heartbeat")
                v.heartbeats += 1
                next_beat = self.now() + a.heartbeat
                if r.status != 204:
                    v.bad_heartbeats += 1
                    v.session_lost_at = r.sent
                    v.end = "lost"
                    return
        if not await self.sleep_until(end):
            v.end = "cut"
            return
        if v.leaves:
            r = await self.request(v, conn, jar, "POST", "/_wr/leave")
            v.t_leave_sent, v.leave_status, v.end = r.sent, r.status, "left"
        else:
            v.end = "idle"

    async def monitor(self):
        conn = Connection(self.port, self.now)
        try:
            while not self.stop.is_set():
                t = self.now()
                try:
                    r = await asyncio.wait_for(conn.request("GET", "/_wr_status", {}), REQUEST_TIMEOUT)
                    s = json.loads(r.body)
                    s["t"] = round(r.received, 3)
                    self.samples.append(s)
                except Exception as e:  # noqa: BLE001
                    self.samples.append({"t": round(self.now(), 3), "error": repr(e)})
                    await conn.close()
                try:
                    await asyncio.wait_for(self.stop.wait(), max(0.0, t + 0.5 - self.now()))
                except asyncio.TimeoutError:
                    pass
        finally:
            await conn.close()

    async def lag_probe(self):
        await lag_probe(self.stop, self.lag)


async def lag_probe(stop, lag):
    """How late the event loop wakes from a 0.1 s sleep, until `stop` is set: the load
    generator's own lag, appended to `lag`."""
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.1)
        lag.append(time.monotonic() - t - 0.1)


def make_visitors(args):
    rng = random.Random(args.seed)
    arrivals = sorted(rng.uniform(0, args.burst) for _ in range(args.visitors))
    out = []
    for i, t in enumerate(arrivals):
        out.append(Visitor(
            n=i,
            arrive=0.5 + t,
            abandons=rng.random() < args.abandon,
            abandon_after=rng.uniform(5, 60),
            browse=rng.uniform(args.browse_min, args.browse_max),
            leaves=rng.random() < args.leave,
            seed=rng.getrandbits(32),
        ))
    return out


async def run(args, port):
    sim = Sim(args, port)
    visitors = make_visitors(args)
    mon = asyncio.create_task(sim.monitor())
    probe = asyncio.create_task(sim.lag_probe())
    tasks = [asyncio.create_task(sim.visitor(v)) for v in visitors]
    done, pending = await asyncio.wait(tasks, timeout=args.duration + 30)
    for t in pending:
        t.cancel()
    if pending:
        await asyncio.wait(pending, timeout=5)
        for v in visitors:
            if v.outcome in ("arrived", "waiting", "admitted") and v.error is None and not v.end:
                v.end = v.end or "cut"
    # A few more status samples after the visitors stopped.
    await asyncio.sleep(1.0)
    sim.stop.set()
    await asyncio.wait([mon, probe], timeout=5)
    return sim, visitors, len(pending)


# ---------------------------------------------------------------------------------------------
# analysis


def quantile(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def max_overlap(intervals, until):
    """The most intervals open at once before `until`, and a step series of the count."""
    ev = []
    for a, b in intervals:
        if a < until:
            ev.append((a, 1))
            if b < until:
                ev.append((b, -1))
    ev.sort(key=lambda e: (e[0], e[1]))  # at equal times, ends first
    cur = best = 0
    series = [(0.0, 0)]
    for t, d in ev:
        cur += d
        best = max(best, cur)
        series.append((t, cur))
    series.append((until, cur))
    return best, series


def out_of_order(visitors, end_time):
    """Visitors admitted from the queue ahead of a diligent visitor with an earlier ticket.

    Diligent: polled until admitted or until the run ended (did not give up, was not lost,
    no error). B counts when some diligent A with a smaller ticket number was admitted more
    than (A's poll interval + 1 s) after B, or was still in line, answered "queued" to a
    poll sent after B's admission. `strict` counts only certain inversions: A's poll answered
    "queued" although it was sent after B had been admitted (no slack needed)."""
    diligent = [v for v in visitors if v.kind == "queued" and v.ticket is not None
                and v.outcome in ("admitted", "waiting") and v.error is None]
    diligent.sort(key=lambda v: v.ticket)
    loose, strict = [], []
    best_x = best_l = -math.inf
    worst = []
    for v in diligent:
        if v.outcome == "admitted":
            if best_x > v.t_admit:
                loose.append(v.n)
                worst.append(best_x - v.t_admit)
            if best_l > v.t_admit:
                strict.append(v.n)
        # What v says about those behind it.
        if v.outcome == "admitted":
            x = v.t_admit - (v.refresh + 1.0)
            lq = v.last_queued_sent if v.last_queued_sent is not None else -math.inf
        else:
            x = v.last_queued_sent if v.last_queued_sent is not None else -math.inf
            lq = x
        best_x = max(best_x, x)
        best_l = max(best_l, lq)
    return {
        "diligent": len(diligent),
        "diligent_admitted": sum(1 for v in diligent if v.outcome == "admitted"),
        "out_of_order": len(loose),
        "out_of_order_certain": len(strict),
        "out_of_order_visitors": loose[:20],
        "worst_seconds": round(max(worst), 3) if worst else 0.0,
    }


def analyse(args, sim, visitors, cancelled):
    end_time = min(args.duration, sim.now())
    samples = [s for s in sim.samples if "error" not in s]
    status_errors = len(sim.samples) - len(samples)
    max_status = max((s["active_sessions"] for s in samples), default=None)
    max_status_held = max((s["active_sessions"] + s.get("called_unclaimed", 0) for s in samples), default=None)
    intervals = [iv for v in visitors if (iv := v.inner_interval(args.idle)) is not None]
    max_sim, series = max_overlap(intervals, end_time)

    admitted_q = [v for v in visitors if v.kind == "queued" and v.t_admit is not None]
    waits = [v.t_admit - v.t_ticket for v in admitted_q]
    eta_abs, eta_rel, eta_signed = [], [], []
    for v in admitted_q:
        if v.eta_first is not None:
            real = v.t_admit - v.t_eta_first
            err = v.eta_first - real
            eta_signed.append(err)
            eta_abs.append(abs(err))
            eta_rel.append(abs(err) / max(real, 1.0))
    # The same for the first estimate given once the room's pace had been measured for a while
    # (WARM seconds after the opening), to tell the warm-up from the steady state.
    warm_abs, warm_rel = [], []
    for v in admitted_q:
        late = next(((t, e) for t, e in v.etas if t >= WARM), None)
        if late is not None:
            real = v.t_admit - late[0]
            warm_abs.append(abs(late[1] - real))
            warm_rel.append(abs(late[1] - real) / max(real, 1.0))
    # Relative errors, (estimate - real remaining wait) / real remaining wait (real at least
    # 1 s), of the first estimate each visitor saw and of every estimate seen (each poll's),
    # against the moment the visitor was told it was admitted.
    first_rel, all_rel = [], []
    for v in admitted_q:
        for i, (t, e) in enumerate(v.etas):
            rel = (e - (v.t_admit - t)) / max(v.t_admit - t, 1.0)
            all_rel.append(rel)
            if i == 0:
                first_rel.append(rel)
    # Those still waiting when the run ended: an estimate that promised admission before the
    # end (with a poll interval to spare) was too short by at least the difference.
    eta_missed = [v for v in visitors if v.kind == "queued" and v.outcome == "waiting"
                  and v.eta_first is not None
                  and v.t_eta_first + v.eta_first + v.refresh + 1 < end_time]

    outcomes = {}
    for v in visitors:
        outcomes[v.outcome] = outcomes.get(v.outcome, 0) + 1
    ends = {}
    for v in visitors:
        if v.t_admit is not None:
            ends[v.end or "none"] = ends.get(v.end or "none", 0) + 1
    errors = [f"visitor {v.n}: {v.error}" for v in visitors if v.error]
    order = out_of_order(visitors, end_time)
    lag = sorted(sim.lag)
    last = samples[-1] if samples else {}

    def r(x, nd=1):
        return None if x is None else round(x, nd)

    result = {
        "config": {k: getattr(args, k) for k in (
            "visitors", "burst", "capacity", "abandon", "leave", "seed", "duration",
            "claim_window", "idle", "heartbeat", "queue_timeout", "browse_min", "browse_max",
            "slowdown", "slow_after")},
        "run_seconds": round(sim.now(), 1),
        "outcomes": outcomes,
        "admitted_directly": sum(1 for v in visitors if v.kind == "direct"),
        "admitted_from_queue": len(admitted_q),
        "sessions_ended": ends,
        "max_concurrent": {
            "capacity": args.capacity,
            "status_active_sessions": max_status,
            "status_active_plus_called": max_status_held,
            "simulator_certain": max_sim,
        },
        "order": order,
        "wait_seconds": {
            "n": len(waits),
            "median": r(quantile(waits, 0.5)),
            "p95": r(quantile(waits, 0.95)),
            "max": r(max(waits) if waits else None),
        },
        "eta": {
            "n": len(eta_abs),
            "median_abs_error_s": r(quantile(eta_abs, 0.5)),
            "median_rel_error": r(quantile(eta_rel, 0.5), 3),
            "median_signed_error_s": r(quantile(eta_signed, 0.5)),
            "p90_abs_error_s": r(quantile(eta_abs, 0.9)),
            "warm_after_s": WARM,
            "warm_n": len(warm_abs),
            "warm_median_abs_error_s": r(quantile(warm_abs, 0.5)),
            "warm_median_rel_error": r(quantile(warm_rel, 0.5), 3),
            "first_rel_n": len(first_rel),
            "first_median_rel_signed": r(quantile(first_rel, 0.5), 3),
            "first_median_rel_abs": r(quantile([abs(x) for x in first_rel], 0.5), 3),
            "all_rel_n": len(all_rel),
            "all_median_rel_signed": r(quantile(all_rel, 0.5), 3),
            "all_median_rel_abs": r(quantile([abs(x) for x in all_rel], 0.5), 3),
            "still_waiting_past_estimate": len(eta_missed),
            "visitors_never_given_estimate": sum(
                1 for v in admitted_q if v.eta_first is None),
        },
        "problems": {
            "admitted_but_page_not_origin": sum(1 for v in visitors if v.admitted_page_ok is False),
            "session_lost_while_browsing": sum(1 for v in visitors if v.end == "lost"),
            "bad_pages": sum(v.bad_pages for v in visitors),
            "bad_heartbeats": sum(v.bad_heartbeats for v in visitors),
            "leave_not_204": sum(1 for v in visitors if v.leave_status not in (None, 204)),
            "diligent_lost": outcomes.get("lost", 0),
            "rejected_full": outcomes.get("rejected", 0),
            "errors": len(errors),
            "error_examples": errors[:10],
            "status_errors": status_errors,
            "cancelled_at_hard_cap": cancelled,
        },
        "client": {
            "requests_polls": sum(v.polls for v in visitors),
            "pages": sum(v.pages for v in visitors),
            "heartbeats": sum(v.heartbeats for v in visitors),
            "loop_lag_max_s": r(lag[-1] if lag else None, 3),
            "loop_lag_p99_s": r(quantile(lag, 0.99), 3),
        },
        "room_at_end": {k: last.get(k) for k in (
            "active_sessions", "queue_length", "called_unclaimed", "admitted_total",
            "admitted_from_queue", "joined_total", "sessions_left", "sessions_expired",
            "tickets_abandoned", "tickets_missed", "tickets_left", "rejected_full",
            "admitted_per_minute", "called_per_minute", "avg_wait_seconds")},
    }
    checks = {
        "max concurrent <= capacity": (
            max_status is not None and max_status <= args.capacity and max_sim <= args.capacity),
        "0 out of order": order["out_of_order"] == 0 and order["out_of_order_certain"] == 0,
    }
    result["checks"] = {k: ("PASS" if ok else "FAIL") for k, ok in checks.items()}
    return result, samples, series, admitted_q


def chart(path, args, result, samples, series, admitted_q):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in samples]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(11, 9), sharex=True,
                                        gridspec_kw={"height_ratios": [1.1, 1, 1]})
    c = result["config"]
    fig.suptitle(f"Flash sale: {c['visitors']} visitors over {c['burst']:g}s, room of "
                 f"{c['capacity']} (claim {c['claim_window']}s, idle {c['idle']}s); "
                 f"abandon {c['abandon']:.0%}, leave {c['leave']:.0%}, seed {c['seed']}"
                 + (f"; browsing x{c['slowdown']:g} from {c['slow_after']:g}s"
                    if c["slowdown"] != 1 else ""),
                 fontsize=11)

    ax1.plot(t, [s["queue_length"] for s in samples], color="tab:blue", label="queue length (status)")
    ax1.set_ylabel("people in line")
    ax1.axvspan(0.5, 0.5 + c["burst"], color="tab:orange", alpha=0.12, label="arrivals")
    ax1.legend(loc="upper right")
    ax1.grid(alpha=0.3)

    ax2.step(t, [s["active_sessions"] for s in samples], where="post", color="tab:green",
             label="active sessions (status)")
    ax2.step(t, [s["active_sessions"] + s.get("called_unclaimed", 0) for s in samples], where="post",
             color="tab:olive", alpha=0.6, linestyle=":", label="+ called, not yet claimed (status)")
    st, sv = zip(*series) if series else ((), ())
    ax2.step(st, sv, where="post", color="black", alpha=0.5, linewidth=0.9,
             label="sessions certainly live (simulator)")
    ax2.axhline(c["capacity"], color="tab:red", linestyle="--", label=f"capacity ({c['capacity']})")
    ax2.set_ylim(0, c["capacity"] * 1.35 + 1)
    ax2.set_ylabel("sessions")
    ax2.legend(loc="lower right", fontsize=8, ncol=2)
    ax2.grid(alpha=0.3)

    ax3.plot(t, [s.get("admitted_per_minute") if s.get("admitted_per_minute") is not None else math.nan
                 for s in samples], color="tab:purple", label="admitted/min (status, smoothed)")
    ax3.plot(t, [s.get("called_per_minute") if s.get("called_per_minute") is not None else math.nan
                 for s in samples], color="tab:pink", linestyle="--", label="called/min (status, smoothed)")
    adm = sorted(v.t_admit for v in admitted_q)
    if t:
        measured = [(bisect.bisect_right(adm, x) - bisect.bisect_right(adm, x - 60)) * 60 / min(60, max(x, 1))
                    for x in t]
        ax3.plot(t, measured, color="gray", alpha=0.7, label="admitted from line/min (simulator, last 60 s)")
    for ax in (ax1, ax2, ax3):
        ax.axvline(c["duration"], color="gray", linestyle="-.", linewidth=0.8)
    ax1.text(c["duration"], ax1.get_ylim()[1] * 0.02, " visitors stop", color="gray", fontsize=8)
    ax3.set_ylabel("per minute")
    ax3.set_xlabel("seconds since the sale opened")
    ax3.legend(loc="lower right", fontsize=8)
    ax3.grid(alpha=0.3)
    ax3.set_ylim(bottom=0)

    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_summary(result, png, js):
    mc, o, w, e, p, cl = (result["max_concurrent"], result["order"], result["wait_seconds"],
                          result["eta"], result["problems"], result["client"])
    c = result["config"]

    def f(x, unit=""):
        return "n/a" if x is None else f"{x}{unit}"

    print()
    print("==> flash sale summary")
    print(f"  visitors {c['visitors']} over {c['burst']:g}s, capacity {c['capacity']}, "
          f"claim_window {c['claim_window']}s, idle {c['idle']}s, heartbeat {c['heartbeat']}s, "
          f"queue_timeout {c['queue_timeout']}s, abandon {c['abandon']:.0%}, leave {c['leave']:.0%}, "
          f"seed {c['seed']}, run {result['run_seconds']}s (visitors stop at {c['duration']:g}s)"
          + (f", browsing x{c['slowdown']:g} for those admitted from {c['slow_after']:g}s"
             if c["slowdown"] != 1 else ""))
    print(f"  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(result["outcomes"].items())))
    print(f"  admitted directly {result['admitted_directly']}, from the queue {result['admitted_from_queue']}; "
          f"sessions ended: " + ", ".join(f"{k} {v}" for k, v in sorted(result["sessions_ended"].items())))
    print(f"  max concurrent: status active_sessions {f(mc['status_active_sessions'])} "
          f"(with called-unclaimed {f(mc['status_active_plus_called'])}), simulator (certainly live) "
          f"{mc['simulator_certain']}, capacity {mc['capacity']}")
    print(f"  order: {o['diligent']} diligent visitors, {o['diligent_admitted']} admitted; "
          f"out of order {o['out_of_order']} (certain inversions {o['out_of_order_certain']}"
          f"{', worst by %ss' % o['worst_seconds'] if o['out_of_order'] else ''})")
    print(f"  wait (ticket -> admitted), {w['n']} visitors: median {f(w['median'], 's')}, "
          f"p95 {f(w['p95'], 's')}, max {f(w['max'], 's')}")
    print(f"  estimate (first non-null eta vs real remaining wait), {e['n']} visitors: "
          f"median abs error {f(e['median_abs_error_s'], 's')}, median rel error "
          f"{'n/a' if e['median_rel_error'] is None else format(e['median_rel_error'], '.0%')}, "
          f"median signed {f(e['median_signed_error_s'], 's')} (+ = too long), p90 abs "
          f"{f(e['p90_abs_error_s'], 's')}; still waiting past their estimate at the end: "
          f"{e['still_waiting_past_estimate']}; admitted without ever an estimate: "
          f"{e['visitors_never_given_estimate']}")
    def pct(x, sign="+"):
        return "n/a" if x is None else format(x, sign + ".0%")

    print(f"  estimate error, (eta - real) / real, visitors admitted from the queue: first estimate "
          f"median {pct(e['first_median_rel_signed'])} (abs {pct(e['first_median_rel_abs'], '')}, "
          f"{e['first_rel_n']} visitors); all estimates median {pct(e['all_median_rel_signed'])} "
          f"(abs {pct(e['all_median_rel_abs'], '')}, {e['all_rel_n']} polls)")
    if e["warm_n"]:
        print(f"  estimate, first one given {e['warm_after_s']:g}s or more after the opening, "
              f"{e['warm_n']} visitors: median abs error {f(e['warm_median_abs_error_s'], 's')}, "
              f"median rel error {format(e['warm_median_rel_error'], '.0%')}")
    print(f"  client: {cl['requests_polls']} polls, {cl['pages']} pages, {cl['heartbeats']} heartbeats; "
          f"event loop lag max {f(cl['loop_lag_max_s'], 's')}, p99 {f(cl['loop_lag_p99_s'], 's')}")
    print(f"  room at end: " + ", ".join(f"{k} {v}" for k, v in result["room_at_end"].items()))
    notes = [f"{k} {v}" for k, v in p.items()
             if k not in ("error_examples", "rejected_full") and v]
    print(f"  problems: {', '.join(notes) if notes else 'none'}")
    for ex in p["error_examples"][:5]:
        print(f"    {ex}")
    print(f"  chart {png}, summary {js}")
    print()
    for k, v in result["checks"].items():
        print(f"  {v}  {k}")


def main():
    args = parse_args()
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, max(soft, args.visitors + 1000))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass
    started = time.monotonic()
    try:
        port = start_nginx(args)
    except Exception as e:  # noqa: BLE001
        print(f"simulate: could not start nginx: {e}", file=sys.stderr)
        stop_nginx(args)
        return 2
    print(f"==> nginx on 127.0.0.1:{port}: {args.visitors} visitors arrive over {args.burst:g}s "
          f"at a room for {args.capacity}; visitors stop at {args.duration:g}s", flush=True)
    try:
        sim, visitors, cancelled = asyncio.run(run(args, port))
    finally:
        stop_nginx(args)
    result, samples, series, admitted_q = analyse(args, sim, visitors, cancelled)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    result["status_samples"] = samples
    cols = ["n", "ticket", "arrive", "t_ticket", "t_admit", "outcome", "end", "refresh", "polls",
            "eta_first", "t_eta_first", "t_leave_sent", "last_sent", "etas", "eta_positions"]

    def cell(x):
        if isinstance(x, float):
            return round(x, 3)
        if isinstance(x, list):
            return [[round(y[0], 3), y[1]] if isinstance(y, tuple) else y for y in x]
        return x

    result["visitors"] = {"columns": cols, "rows": [
        [cell(getattr(v, c)) for c in cols] for v in visitors]}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    chart(args.png, args, result, samples, series, admitted_q)
    try:
        with open(os.path.join(args.prefix, "logs", "error.log")) as f:
            alerts = [ln.rstrip() for ln in f if re.search(r"\[(alert|crit|emerg|error)\]", ln)]
    except OSError:
        alerts = []
    if alerts:
        print(f"nginx error.log: {len(alerts)} lines at error level or above, e.g.:")
        for ln in alerts[:5]:
            print("  " + ln)
    print_summary(result, args.png, args.json)
    p = result["problems"]
    if not samples or p["errors"] > max(5, 0.01 * args.visitors) or not any(
            v.t_admit is not None for v in visitors):
        print("simulate: the run itself failed (no status, no admission, or too many client "
              "errors): its checks mean nothing", file=sys.stderr)
        return 2
    return 0 if all(v == "PASS" for v in result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
