"""Nobody loses their place during an operator's operation: a flash sale of virtual visitors
against nginx with the waiting room (started by scripts/ops-check), while an operator reloads,
breaks a reload, restarts and upgrades the binary, one operation after the other.

The visitors are those of scripts/simulate.py, made to notice what an operation could do to
them: each has its own cookie jar and keep-alive connection; a waiting visitor polls
GET /_wr/position every refresh_seconds as the queue page's script does (backing off the same
way when a poll fails), or, for a few, reloads the queue page as the page does without
JavaScript; an admitted visitor browses (page loads, with the `away` beacon heartbeat.js sends
when a page is left and its heartbeats) and then leaves (POST leave) or closes the tab (away).
Arrivals come in a burst and then steadily, so that the line exists throughout.

Operations, each followed by some seconds of load: (a) reload raising max_active,
(b) reload lowering it, (c) reload changing the zone's size, (d) a reload that fails (a
`listen` on a port this script holds), (l) run-time changes from the control location
(max_active raised by 5 and the line held with mode=queue for 2 s, then mode=normal), (e) stop
and start, (f) binary upgrade (USR2, WINCH, QUIT). Restart and upgrade can only keep the room with a state file (`state=` of
waiting_room_zone): when the build does not take it, they are reported as not supported by this
build (and still run and measured, unless --skip-unsupported).

Measured per operation (a row of the table; the row "baseline" is the load before the first
operation):
- tickets lost: a visitor holding a ticket and polling regularly (no gap of claim_window) is
  told "none", or is given another ticket, or is admitted as a newcomer. A ticket that lapsed
  because its visitor stopped polling for claim_window or more is counted apart ("lapsed").
- sessions lost: an admitted visitor, before leaving, is sent the queue page, admitted anew as
  a newcomer (a new session cookie) or has a heartbeat or away refused. A session not seen for
  idle (or for grace after an away) is counted apart ("expired").
- FIFO inversions: a visitor admitted while someone who joined earlier, in the same room, was
  still waiting and polling regularly: that one's poll, sent after the admission was answered,
  still said "queued".
- inside: the most inside at once, from the status location (sampled every 100 ms) and from the
  visitors' own account (a session is certainly live from the answer that admitted it to the
  last request the room accepted for it), against the max_active in force (max_sessions of
  the status). After lowering max_active the people inside stay inside, so what is counted is
  admissions while at or above the max_active in force: certain ones only (from the status
  counters between two samples, and from the visitors' certainly live sessions). Tickets that
  had been called before max_active was lowered (called_unclaimed of the status just before)
  hold a slot reserved under the old figure and may claim it within claim_window: those
  admissions are reported apart, not counted.
- failed requests: connection errors and timeouts (expected while nginx is down, for stop and
  start) apart from HTTP errors (5xx).
Lost, lapsed and expired places are attributed to the last operation performed between the last
time the room answered for that place and the answer that showed it gone.

Exit status: 0 when every supported operation (and the baseline) has 0 tickets lost, 0 sessions
lost, 0 inversions and no admission at or above max_active; 1 otherwise; 2 when the run itself
failed (nginx did not start, an operation could not be performed, no status, no admission).

Python 3.11 standard library only. The HTTP client comes from simulate.py.
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
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

sys.dont_write_bytecode = True  # no __pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simulate import Connection, HttpError, env, free_port, lag_probe, max_overlap  # noqa: E402

ROOM = "sale"
COOKIE = f"wr_{ROOM}"
ORIGIN_MARK = "ORIGIN-CONTENT"
REQUEST_TIMEOUT = 10.0
STATUS_EVERY = 0.1

# The room's timings (the brief's flash sale); the checks below use them.
IDLE = 20.0
HEARTBEAT = 5.0
CLAIM_WINDOW = 10.0
GRACE = 2.0

OPS = ("raise", "lower", "zone", "failed", "live", "restart", "upgrade")
# The operations that can keep the room only with a state file.
NEED_STATE = ("restart", "upgrade")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--nginx", required=True, help="nginx binary (a private copy: a binary upgrade executes it again)")
    a("--module", required=True, help="the module's .so")
    a("--prefix", required=True, help="an empty directory for nginx's prefix")
    a("--visitors", type=int, default=env("OPS_VISITORS", 300, int))
    a("--seed", type=int, default=env("OPS_SEED", 1, int))
    a("--warmup", type=float, default=env("OPS_WARMUP", 15.0, float),
      help="seconds of load before the first operation")
    a("--settle", type=float, default=env("OPS_SETTLE", 14.0, float),
      help="seconds of load after each operation")
    a("--ops", default=env("OPS_OPS", ",".join(OPS)),
      help=f"operations to perform, in this order, from {','.join(OPS)}")
    a("--state", type=int, choices=(0, 1), default=env("OPS_STATE", 1, int),
      help="1: give the zone state=PREFIX/sale.state if the build takes it")
    a("--skip-unsupported", action="store_true", default=env("OPS_SKIP_UNSUPPORTED", 0, int) == 1,
      help="do not perform the operations the build does not support")
    a("--json", default=env("OPS_JSON", "target/ops-check.json"), help="where to write the JSON summary")
    args = p.parse_args()
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = [o for o in args.ops if o not in OPS]
    if bad:
        p.error(f"unknown operation(s) {','.join(bad)}; known: {','.join(OPS)}")
    if args.visitors < 20 or args.warmup < 5 or args.settle < 5:
        p.error("at least 20 visitors, 5 s of warmup and 5 s of settle")
    return args


def now_wall():
    return time.strftime("%H:%M:%S")


# ---------------------------------------------------------------------------------------------
# cookies


def token(value):
    """(kind, number, id, epoch) of a room cookie: kind 1 is a ticket (number: its number), 2 a
    session (number: its slot, id: the session's id), 3 an arrival (no place yet). The part before the dot is base64url of a
    little-endian record: byte 1 the kind, 10..18 the number, 18..26 the id, 50..58 the epoch
    (the layout of the zone it was issued for). None when it is not one."""
    try:
        payload = value.split(".", 1)[0]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) < 58 or raw[1] not in (1, 2, 3):
        return None
    w = lambda at: int.from_bytes(raw[at:at + 8], "little")  # noqa: E731
    return raw[1], w(10), w(18), w(50)


# ---------------------------------------------------------------------------------------------
# nginx


class Nginx:
    """The nginx under test: its configuration, start, signals, and the processes it runs."""

    def __init__(self, args):
        self.args = args
        self.prefix = os.path.abspath(args.prefix).rstrip("/") + "/"
        self.port = free_port()
        self.origin_port = free_port()
        while self.origin_port == self.port:
            self.origin_port = free_port()
        self.state = False
        self.masters_file = os.path.join(self.prefix, "ops-masters")
        self.base = [args.nginx, "-p", self.prefix, "-c", "nginx.conf"]
        os.makedirs(os.path.join(self.prefix, "logs"), exist_ok=True)
        with open(os.path.join(self.prefix, "secret.key"), "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        self.size, self.max_active = "1m", 20

    def config(self, size=None, max_active=None, extra_listen=None, state=None):
        size = size or self.size
        max_active = max_active or self.max_active
        state = self.state if state is None else state
        user = "user root;" if os.geteuid() == 0 else ""
        st = f" state={self.prefix}sale.state" if state else ""
        extra = f"listen 127.0.0.1:{extra_listen};" if extra_listen else ""
        return f"""
load_module {self.args.module};
{user}
worker_processes 2;
master_process on;
daemon on;
worker_rlimit_nofile 8192;
error_log logs/error.log notice;
pid logs/nginx.pid;

events {{
    worker_connections 4096;
}}

http {{
    waiting_room_zone zone={ROOM}:{size} max_active={max_active} idle={IDLE:g}s
                      heartbeat={HEARTBEAT:g}s claim_window={CLAIM_WINDOW:g}s grace={GRACE:g}s{st};
    waiting_room_secret secret.key;

    log_format wr '$msec $pid "$request" $status room=$waiting_room_status '
                  'pos=$waiting_room_position wait=$waiting_room_wait';

    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
        {extra}
        access_log logs/access.log wr buffer=64k flush=1s;
        keepalive_requests 100000;
        keepalive_timeout 120s;
        # What the room decided (PASSED, ADMITTED, QUEUED, REJECTED), and for ADMITTED from the
        # line how long the visitor waited (absent for a newcomer let in directly).
        add_header X-WR $waiting_room_status always;
        add_header X-WR-Wait $waiting_room_wait always;

        location / {{
            waiting_room {ROOM};
            proxy_pass http://127.0.0.1:{self.origin_port};
        }}
        location /_wr/ {{
            waiting_room_api {ROOM};
        }}
        location = /waiting_room_status {{
            waiting_room_status {ROOM};
            allow 127.0.0.1;
            deny all;
        }}
        location = /waiting_room_control {{
            waiting_room_control {ROOM};
            allow 127.0.0.1;
            deny all;
        }}
    }}

    server {{
        listen 127.0.0.1:{self.origin_port};
        access_log off;
        default_type text/html;
        location / {{
            return 200 '<!DOCTYPE html><html><head><title>Flash sale</title></head><body><!-- {ORIGIN_MARK} --><h1>Buy now</h1><script src="/_wr/heartbeat.js"></script></body></html>\\n';
        }}
    }}
}}
"""

    def write(self, **kw):
        with open(os.path.join(self.prefix, "nginx.conf"), "w") as f:
            f.write(self.config(**kw))

    def run(self, *extra, timeout=20):
        return subprocess.run(self.base + list(extra), capture_output=True, text=True, timeout=timeout)

    def detect_state(self):
        """Whether the build takes state=PATH: `nginx -t` of the configuration with it. Returns
        (supported, why)."""
        self.write(state=True)
        r = self.run("-t")
        if r.returncode == 0:
            return True, "nginx -t accepts state="
        if re.search(r'invalid parameter "state=', r.stderr):
            return False, "nginx -t: " + next(
                (ln.strip() for ln in r.stderr.splitlines() if "state=" in ln), "state= refused")
        raise RuntimeError(f"nginx -t failed for another reason:\n{r.stderr.strip()}")

    def pid(self, name="nginx.pid"):
        try:
            return int(open(os.path.join(self.prefix, "logs", name)).read().strip())
        except (OSError, ValueError):
            return None

    def remember(self, pid):
        if pid:
            with open(self.masters_file, "a") as f:
                f.write(f"{pid}\n")

    def masters(self):
        try:
            return sorted({int(x) for x in open(self.masters_file).read().split()})
        except (OSError, ValueError):
            return []

    def start(self):
        r = self.run()
        if r.returncode != 0:
            raise RuntimeError(f"nginx did not start: {r.stderr.strip()}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid and alive(pid):
                self.remember(pid)
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                        return pid
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def ours(self, pid):
        """Whether pid is a master of this run (its title names our prefix)."""
        try:
            return self.prefix.encode() in open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            return False

    def stop_all(self):
        """Stops every master this run started (QUIT, then KILL with its workers)."""
        pids = [p for p in self.masters() if alive(p) and self.ours(p)]
        kids = {p: children(p) for p in pids}
        for p in pids:
            try:
                os.kill(p, signal.SIGQUIT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
        for p in pids:
            for q in [p] + kids[p] + children(p):
                if alive(q):
                    try:
                        os.kill(q, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# what the visitors see


@dataclass
class Ticket:
    number: int
    epoch: int
    t_join: float  # the answer that gave it was received
    last_ok_sent: float  # the last request the room answered for it was sent
    queued: list = field(default_factory=list)  # sent times of "queued" answers, while diligent
    diligent: bool = True  # never a gap of claim_window between two answers
    refresh: float = 5.0  # when the queue page checks again
    end: str = ""  # admitted | lost | lapsed | left | abandoned | cut
    t_end: float | None = None


@dataclass
class Session:
    epoch: int
    slot: int
    sid: int
    how: str  # queue | direct
    t_sent: float  # the request that admitted it
    t_recv: float
    last_ok_sent: float
    ticket: int | None = None
    away_sent: float | None = None  # an away not yet followed by a request the room accepted
    end: str = ""  # left | closed | lost | expired | cut
    t_end: float | None = None  # the last request sent that it was live for (or that ended it)


@dataclass
class Visitor:
    n: int
    arrive: float
    browse: float
    leaves: bool  # POST leave at the end; otherwise the tab is closed (away)
    reloader: bool  # waits by reloading the queue page (no JavaScript)
    abandons: bool
    abandon_after: float
    seed: int
    jar: dict = field(default_factory=dict)
    ticket: Ticket | None = None
    session: Session | None = None
    tickets: list = field(default_factory=list)
    sessions: list = field(default_factory=list)
    done: str = ""
    error: str | None = None


class Run:
    def __init__(self, args, ngx):
        self.args = args
        self.ngx = ngx
        self.port = ngx.port
        self.t0 = time.monotonic()
        self.deadline = math.inf  # set when the operator is done
        self.samples = []  # status answers, with t
        self.status_errors = []  # times
        self.losses = []  # dicts
        self.failures = []  # (t, kind, what)
        self.anomalies = []
        self.held = []  # (t, visitor): newcomers shown the line without a ticket yet
        self.resumed = []  # (t, visitor): a session or ticket refused once, then known again
        self.admissions = []  # (visitor, session)
        self.ops = []  # dicts, the first is the baseline
        self.stop = asyncio.Event()
        self.lag = []

    def now(self):
        return time.monotonic() - self.t0

    async def sleep_until(self, t):
        wait = min(t, self.deadline) - self.now()
        if wait > 0:
            await asyncio.sleep(wait)
        return self.now() < self.deadline

    # -- requests

    async def request(self, v, conn, method, path):
        """One request with the visitor's cookies; the room's Set-Cookie lands in the jar and in
        r.wr (a token tuple, or "clear"). None when it failed (connection, timeout)."""
        t = self.now()
        try:
            r = await asyncio.wait_for(conn.request(method, path, v.jar), REQUEST_TIMEOUT)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, HttpError) as e:
            self.failures.append((t, "conn", f"{method} {path}: {type(e).__name__}"))
            await conn.close()
            return None
        r.wr = None
        for c in r.cookies():
            name, _, rest = c.partition("=")
            if name.strip() != COOKIE:
                continue
            value = rest.split(";", 1)[0]
            if "max-age=0" in c.lower().replace(" ", ""):
                v.jar.pop(COOKIE, None)
                r.wr = "clear"
            else:
                v.jar[COOKIE] = value
                r.wr = token(value)
                if r.wr is None:
                    self.anomalies.append((r.received, v.n, f"unreadable cookie from {path}"))
        if r.status >= 500:
            self.failures.append((r.sent, "http", f"{method} {path}: {r.status}"))
        return r

    @staticmethod
    def origin(r):
        return r.status == 200 and ORIGIN_MARK.encode() in r.body

    # -- bookkeeping

    def lose(self, v, kind, how, last_ok, r_sent, away_sent=None):
        """A place found gone: lost, or lapsed/expired when its visitor was not there."""
        gap = r_sent - last_ok
        if kind == "ticket":
            verdict = "lost" if gap < CLAIM_WINDOW else "lapsed"
        elif away_sent is not None and r_sent - away_sent >= GRACE:
            verdict = "expired"
        else:
            verdict = "lost" if gap < IDLE else "expired"
        loss = {"kind": kind, "visitor": v.n, "how": how, "verdict": verdict,
                "t_ok": round(last_ok, 3), "t_detect": round(r_sent, 3), "gap": round(gap, 3)}
        # What the place was, for looking it up in nginx's access log.
        if kind == "ticket" and v.ticket is not None:
            loss["place"] = {"ticket": v.ticket.number, "joined_at": round(v.ticket.t_join, 3)}
        elif kind == "session" and v.session is not None:
            s = v.session
            loss["place"] = {"slot": s.slot, "session": s.sid, "how": s.how, "admitted_at": round(s.t_recv, 3)}
        self.losses.append(loss)
        return verdict

    def end_ticket(self, v, end, t):
        if v.ticket is not None:
            v.ticket.end, v.ticket.t_end = end, t
            v.ticket = None

    def end_session(self, v, end, t):
        if v.session is not None:
            v.session.end, v.session.t_end = end, t
            v.session = None

    def ticket_ok(self, tk, sent, queued):
        if sent - tk.last_ok_sent >= CLAIM_WINDOW - 0.5:
            tk.diligent = False
        tk.last_ok_sent = max(tk.last_ok_sent, sent)
        if queued and tk.diligent:
            tk.queued.append(sent)

    def new_ticket(self, v, r):
        if not (isinstance(r.wr, tuple) and r.wr[0] == 1):
            self.anomalies.append((r.received, v.n, f"queue page without a ticket cookie (X-WR {r.header('x-wr')})"))
            return
        v.ticket = Ticket(number=r.wr[1], epoch=r.wr[3], t_join=r.received, last_ok_sent=r.sent)
        v.tickets.append(v.ticket)
        self.refresh_from(v.ticket, r)

    @staticmethod
    def refresh_from(tk, r):
        ra = r.header("retry-after")
        tk.refresh = float(ra) if ra and ra.isdigit() and int(ra) > 0 else 5.0

    def new_session(self, v, r, how):
        if not (isinstance(r.wr, tuple) and r.wr[0] == 2):
            self.anomalies.append((r.received, v.n, "admitted without a session cookie"))
            return
        s = Session(epoch=r.wr[3], slot=r.wr[1], sid=r.wr[2], how=how, t_sent=r.sent, t_recv=r.received,
                    last_ok_sent=r.sent)
        if how == "queue" and v.ticket is not None:
            s.ticket = v.ticket.number
        v.session = s
        v.sessions.append(s)
        self.admissions.append((v.n, s))

    def on_page(self, v, r):
        """A page load's answer (GET /), in whatever state the visitor was. Returns what comes
        next: "browse", "wait", "retry"."""
        wr = r.header("x-wr")
        if self.origin(r):
            if v.session is not None:
                if wr == "PASSED":
                    v.session.last_ok_sent = max(v.session.last_ok_sent, r.sent)
                    v.session.away_sent = None
                    return "browse"
                # A new session: the old one was not known any more.
                s = v.session
                self.lose(v, "session", "admitted anew as a newcomer", s.last_ok_sent, r.sent, s.away_sent)
                self.end_session(v, "lost", s.last_ok_sent)
                self.new_session(v, r, "direct" if r.header("x-wr-wait") is None else "queue")
                return "browse"
            if v.ticket is not None:
                tk = v.ticket
                if wr == "ADMITTED" and r.header("x-wr-wait") is not None:
                    self.ticket_ok(tk, r.sent, False)
                    self.new_session(v, r, "queue")
                    self.end_ticket(v, "admitted", r.received)
                else:
                    self.lose(v, "ticket", "admitted anew as a newcomer", tk.last_ok_sent, r.sent)
                    self.end_ticket(v, "lost", r.sent)
                    self.new_session(v, r, "direct")
                return "browse"
            if wr == "ADMITTED":
                self.new_session(v, r, "queue" if r.header("x-wr-wait") is not None else "direct")
            elif wr == "PASSED" and (tok := token(v.jar.get(COOKIE, ""))) and tok[0] == 2:
                # The cookie the visitor was told was void works again (a room that answered
                # 403 for a session it did not know yet): carry on with it. Not an admission.
                v.session = Session(epoch=tok[3], slot=tok[1], sid=tok[2], how="resumed", t_sent=r.sent,
                                    t_recv=r.received, last_ok_sent=r.sent)
                v.sessions.append(v.session)
                self.resumed.append((r.received, v.n))
            else:
                self.anomalies.append((r.received, v.n, f"origin page without admission (X-WR {wr})"))
                if isinstance(r.wr, tuple) and r.wr[0] == 2:
                    self.new_session(v, r, "direct")
            return "browse" if v.session is not None else "retry"
        if wr == "QUEUED" and r.status < 500:
            if v.session is not None:
                s = v.session
                self.lose(v, "session", "sent to the queue", s.last_ok_sent, r.sent, s.away_sent)
                self.end_session(v, "lost", s.last_ok_sent)
                self.new_ticket(v, r)
                return "wait" if v.ticket else "retry"
            if v.ticket is not None:
                tk = v.ticket
                if isinstance(r.wr, tuple):
                    if r.wr[0] == 1 and (r.wr[1], r.wr[3]) == (tk.number, tk.epoch):
                        self.ticket_ok(tk, r.sent, True)
                        self.refresh_from(tk, r)
                        return "wait"
                    self.lose(v, "ticket", "given another ticket", tk.last_ok_sent, r.sent)
                    self.end_ticket(v, "lost", r.sent)
                    self.new_ticket(v, r)
                    return "wait" if v.ticket else "retry"
                self.ticket_ok(tk, r.sent, True)
                self.refresh_from(tk, r)
                return "wait"
            if r.wr is None and (tok := token(v.jar.get(COOKIE, ""))) and tok[0] == 1:
                # The ticket the visitor was told was void works again (a room that answered
                # "none" for a ticket it did not know yet): back in line with it.
                v.ticket = Ticket(number=tok[1], epoch=tok[3], t_join=r.received, last_ok_sent=r.sent)
                v.tickets.append(v.ticket)
                self.refresh_from(v.ticket, r)
                self.resumed.append((r.received, v.n))
                return "wait"
            if r.wr is None:
                # Held: a room standing by (during a binary upgrade) shows the line but hands
                # out no ticket yet; the page asks again after Retry-After.
                self.held.append((r.received, v.n))
                return "held"
            self.new_ticket(v, r)
            return "wait" if v.ticket else "retry"
        if r.status == 503 and wr == "REJECTED":
            return "full"
        self.anomalies.append((r.received, v.n, f"page answered {r.status} (X-WR {wr})"))
        return "retry"

    # -- a visitor

    async def load_page(self, v, conn, path="/"):
        """GET a page until it is answered (a browser's user reloads an error page after a moment)."""
        rng = random.Random(v.seed ^ int(self.now() * 1000))
        while True:
            r = await self.request(v, conn, "GET", path)
            if r is not None and r.status < 500 and r.header("x-wr") == "ARRIVED":
                # A first contact has no place until its browser comes back with the cookie:
                # the queue page's script asks at once (a reload does the same).
                r = await self.request(v, conn, "GET", path)
            if r is not None and r.status < 500:
                return r
            if not await self.sleep_until(self.now() + rng.uniform(1, 2)):
                return None

    async def visitor(self, v):
        rng = random.Random(v.seed)
        if not await self.sleep_until(v.arrive):
            v.done = "not arrived"
            return
        conn = Connection(self.port, self.now)
        try:
            r = await self.load_page(v, conn)
            while r is not None:
                nxt = self.on_page(v, r)
                if nxt == "browse":
                    r = await self.browse(v, conn, rng)
                elif nxt == "wait":
                    r = await self.wait(v, conn, rng)
                else:
                    # Held (again after Retry-After), the line is full (503), or an answer that
                    # made no sense: again later.
                    ra = r.header("retry-after")
                    pause = {"held": float(ra) if ra and ra.isdigit() else 2.0,
                             "full": rng.uniform(5, 10)}.get(nxt, 2.0)
                    r = await self.load_page(v, conn) if await self.sleep_until(self.now() + pause) else None
        except Exception as e:  # noqa: BLE001 - recorded, and the run fails with too many
            v.error = f"{type(e).__name__}: {e}"
        finally:
            t = self.now()
            if v.ticket is not None:
                self.end_ticket(v, "cut", t)
            if v.session is not None:
                self.end_session(v, "cut", v.session.last_ok_sent)
            if not v.done:
                v.done = "cut"
            await conn.close()

    async def wait(self, v, conn, rng):
        """In line: poll as the queue page does (or reload it). Returns the next page's answer,
        or None when the visitor is done."""
        tk = v.ticket
        give_up = tk.t_join + v.abandon_after if v.abandons else math.inf
        while True:
            t_next = self.now() + tk.refresh
            if give_up <= t_next:
                if not await self.sleep_until(give_up):
                    return None
                if rng.random() < 0.5:
                    await self.request(v, conn, "POST", "/_wr/leave")
                # Or the tab is simply closed: the ticket times out, which loses nobody's place.
                self.end_ticket(v, "abandoned", self.now())
                v.done = "abandoned"
                return None
            if not await self.sleep_until(t_next):
                return None
            if v.reloader:
                return await self.load_page(v, conn)  # on_page reads it, and its Retry-After
            r = await self.request(v, conn, "GET", "/_wr/position")
            j = None
            if r is not None and r.status in (200, 403):
                try:
                    j = json.loads(r.body)
                except ValueError:
                    j = None
            state = j.get("state") if isinstance(j, dict) else None
            if state not in ("queued", "admitted", "none"):
                # The page backs off: twice as long each time, up to a minute.
                if r is not None and r.status < 500:
                    self.anomalies.append((r.received, v.n, f"position answered {r.status}"))
                tk.refresh = min(60.0, tk.refresh * 2)
                continue
            if state == "queued" and r.status == 200:
                if isinstance(r.wr, tuple):
                    self.lose(v, "ticket", "poll set another cookie", tk.last_ok_sent, r.sent)
                    self.end_ticket(v, "lost", r.sent)
                    return await self.load_page(v, conn)
                self.ticket_ok(tk, r.sent, True)
                rs = j.get("refresh_seconds")
                tk.refresh = float(rs) if isinstance(rs, (int, float)) and rs > 0 else 5.0
                continue
            if state == "admitted" and r.status == 200:
                if isinstance(r.wr, tuple) and r.wr[0] == 2:
                    self.ticket_ok(tk, r.sent, False)
                    self.new_session(v, r, "queue")
                else:
                    self.anomalies.append((r.received, v.n, f"admitted without a session cookie ({r.wr})"))
                self.end_ticket(v, "admitted", r.received)
                # The page reloads itself.
                return await self.load_page(v, conn)
            # "none": the room does not know the ticket; the page reloads itself.
            self.lose(v, "ticket", f"told none ({r.status})", tk.last_ok_sent, r.sent)
            self.end_ticket(v, "lost", r.sent)
            return await self.load_page(v, conn)

    async def browse(self, v, conn, rng):
        """Inside: pages and heartbeats until the visit is over, then leave or close the tab.
        Returns a page answer when the session turned out to be gone (the visitor carries on
        from there), or None when done."""
        s = v.session
        end = s.t_recv + v.browse
        next_page = self.now() + rng.uniform(2, 6)
        next_beat = self.now() + 0.3  # heartbeat.js beats 0.3 s after load, then regularly
        while True:
            t = min(next_page, next_beat)
            if t >= end:
                break
            if not await self.sleep_until(t):
                return None
            if v.session is not s:
                return None
            if t == next_page:
                # pagehide: heartbeat.js sends away; then the next page is asked for.
                r = await self.request(v, conn, "POST", "/_wr/away")
                if r is not None and r.status == 204:
                    s.last_ok_sent = max(s.last_ok_sent, r.sent)
                    s.away_sent = r.sent
                elif r is not None and r.status == 403:
                    self.lose(v, "session", "away refused (403)", s.last_ok_sent, r.sent, s.away_sent)
                    self.end_session(v, "lost", s.last_ok_sent)
                    return await self.load_page(v, conn)
                path = "/" if rng.random() < 0.5 else "/product.html"
                r = await self.load_page(v, conn, path)
                if r is None:
                    return None
                if not (self.origin(r) and r.header("x-wr") == "PASSED"):
                    return r  # the main loop tells what happened
                s.last_ok_sent = max(s.last_ok_sent, r.sent)
                s.away_sent = None
                next_page = self.now() + rng.uniform(2, 6)
                next_beat = self.now() + 0.3
            else:
                r = await self.request(v, conn, "POST", "/_wr/heartbeat")
                next_beat = self.now() + HEARTBEAT
                if r is None or r.status >= 500:
                    continue  # heartbeat.js ignores failures
                if r.status == 204:
                    s.last_ok_sent = max(s.last_ok_sent, r.sent)
                    s.away_sent = None
                elif r.status == 403:
                    self.lose(v, "session", "heartbeat refused (403)", s.last_ok_sent, r.sent, s.away_sent)
                    self.end_session(v, "lost", s.last_ok_sent)
                    return await self.load_page(v, conn)
                else:
                    self.anomalies.append((r.received, v.n, f"heartbeat answered {r.status}"))
        if not await self.sleep_until(end):
            return None
        how = "leave" if v.leaves else "away"
        for _ in range(5):
            r = await self.request(v, conn, "POST", f"/_wr/{how}")
            if r is not None and r.status < 500:
                break
            if not await self.sleep_until(self.now() + 1):
                return None
        if r is None:
            self.end_session(v, "left" if v.leaves else "closed", s.last_ok_sent)
        elif r.status == 204:
            self.end_session(v, "left" if v.leaves else "closed", r.sent)
        elif r.status == 403:
            self.lose(v, "session", f"{how} refused (403)", s.last_ok_sent, r.sent, s.away_sent)
            self.end_session(v, "lost", s.last_ok_sent)
        else:
            self.end_session(v, "left" if v.leaves else "closed", s.last_ok_sent)
        v.done = "left" if v.leaves else "closed"
        return None

    # -- the status, every 100 ms

    async def monitor(self):
        conn = Connection(self.port, self.now)
        try:
            while not self.stop.is_set():
                t = self.now()
                try:
                    r = await asyncio.wait_for(conn.request("GET", "/waiting_room_status", {}), 2.0)
                    if r.status != 200:
                        raise HttpError(f"status {r.status}")
                    s = json.loads(r.body)
                    s["t"] = round(r.received, 3)
                    s["t_sent"] = round(r.sent, 3)
                    self.samples.append(s)
                except Exception:  # noqa: BLE001
                    self.status_errors.append(round(self.now(), 3))
                    await conn.close()
                try:
                    await asyncio.wait_for(self.stop.wait(), max(0.0, t + STATUS_EVERY - self.now()))
                except asyncio.TimeoutError:
                    pass
        finally:
            await conn.close()

    async def lag_probe(self):
        await lag_probe(self.stop, self.lag)

    def last_sample(self):
        return self.samples[-1] if self.samples else None

    async def status_where(self, pred, timeout):
        """Waits until a status sample taken from now on satisfies pred; the sample or None."""
        t = self.now()
        deadline = t + timeout
        while self.now() < deadline:
            for s in reversed(self.samples):
                if s["t_sent"] < t:
                    break
                if pred(s):
                    return s
            await asyncio.sleep(0.05)
        return None


# ---------------------------------------------------------------------------------------------
# the operations


def log_size(ngx):
    try:
        return os.path.getsize(os.path.join(ngx.prefix, "logs", "error.log"))
    except OSError:
        return 0


def log_since(ngx, offset):
    try:
        with open(os.path.join(ngx.prefix, "logs", "error.log"), "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


async def to_thread(f, *a, **kw):
    return await asyncio.to_thread(f, *a, **kw)


async def wait_new_workers(master, before, timeout=10.0):
    """Waits until master has worker processes not in `before` (as many as it had), and the
    old ones have gone. (new, old_still_there)."""
    deadline = time.monotonic() + timeout
    new = []
    while time.monotonic() < deadline:
        kids = children(master)
        new = [k for k in kids if k not in before]
        if len(new) >= 2 and not [k for k in kids if k in before]:
            return new, []
        await asyncio.sleep(0.05)
    kids = children(master)
    return new, [k for k in kids if k in before]


async def reload_op(run, op, **conf):
    ngx = run.ngx
    master = ngx.pid()
    before = children(master)
    ngx.write(**conf)
    r = await to_thread(ngx.run, "-s", "reload")
    if r.returncode != 0:
        raise RuntimeError(f"nginx -s reload failed: {r.stderr.strip()}")
    new, old = await wait_new_workers(master, before)
    if len(new) < 2:
        raise RuntimeError(f"no new workers after the reload (workers {children(master)}; "
                           f"error.log: {log_since(ngx, op['log_offset']).strip()[-300:]})")
    op["notes"].append(f"new workers {','.join(map(str, new))} in {run.now() - op['t_start']:.1f}s"
                       + (f", old {','.join(map(str, old))} still shutting down" if old else ""))
    for k in ("size", "max_active"):
        if k in conf:
            setattr(ngx, k, conf[k])


async def op_raise(run, op):
    await reload_op(run, op, max_active=30)
    s = await run.status_where(lambda s: s["max_sessions"] == 30, 5)
    op["max_active_after"] = 30
    if s is None:
        op["problems"].append("max_sessions never showed 30 after the reload")
    else:
        op["notes"].append(f"max_active 30 in force after {s['t'] - op['t_start']:.1f}s")


async def op_lower(run, op):
    last = run.last_sample()
    await reload_op(run, op, max_active=10)
    op["max_active_after"] = 10
    s = await run.status_where(lambda s: s["max_sessions"] == 10, 5)
    if s is None:
        op["problems"].append("max_sessions never showed 10 after the reload")
    else:
        op["notes"].append(f"max_active 10 in force after {s['t'] - op['t_start']:.1f}s, "
                           f"{s['active_sessions']} inside (were {last['active_sessions'] if last else '?'}), "
                           f"{s['called_unclaimed']} called")


async def op_zone(run, op):
    last = run.last_sample()
    old_size = run.ngx.size
    await reload_op(run, op, size="2m")
    s = await run.status_where(lambda s: last is None or s["queue_capacity"] != last["queue_capacity"], 5)
    if s is None:
        op["notes"].append("queue_capacity unchanged (the old zone still answers?)")
    else:
        reset = last is not None and s["joined_total"] < last["joined_total"]
        op["notes"].append(f"zone {old_size}->2m: queue_capacity {last['queue_capacity'] if last else '?'}"
                           f"->{s['queue_capacity']}" + (", the room started anew (counters reset)" if reset else ""))


async def op_failed(run, op):
    ngx = run.ngx
    master = ngx.pid()
    before = children(master)
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    port = held.getsockname()[1]
    try:
        want = ngx.max_active * 4
        ngx.write(extra_listen=port, max_active=want)
        r = await to_thread(ngx.run, "-s", "reload")
        if r.returncode != 0:
            raise RuntimeError(f"nginx -s reload refused to signal: {r.stderr.strip()}")
        # nginx tries bind() 5 times, half a second apart, then gives the reload up.
        deadline = time.monotonic() + 10
        failed = False
        while time.monotonic() < deadline:
            text = log_since(ngx, op["log_offset"])
            if re.search(rf"bind\(\) to 127\.0\.0\.1:{port} failed", text) and "still could not bind" in text:
                failed = True
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        after = children(master)
        if not failed:
            raise RuntimeError("the reload did not fail on the port held (no bind() error in error.log)")
        if not alive(master) or ngx.pid() != master:
            raise RuntimeError("the master did not survive the failed reload")
        op["notes"].append(f"reload failed as meant (bind() to :{port}); master {master} goes on")
        if after != before:
            op["problems"].append(f"workers changed by a failed reload: {before} -> {after}")
        else:
            op["notes"].append("same workers")
        s = await run.status_where(lambda s: True, 3)
        if s is not None and s["max_sessions"] != ngx.max_active:
            op["problems"].append(f"the failed reload's max_active={want} applied (max_sessions {s['max_sessions']})")
        elif s is not None:
            op["notes"].append(f"its max_active={want} did not apply (max_sessions {s['max_sessions']})")
    finally:
        held.close()
        ngx.write()  # the good configuration again, on disk


def control(ngx, change):
    """POSTs `change` to the room's control location; its answer (the settings in force)."""
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{ngx.port}/waiting_room_control",
                                 data=json.dumps(change).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


async def op_live(run, op):
    ngx = run.ngx
    want = ngx.max_active + 5
    s = await to_thread(control, ngx, {"max_active": want, "mode": "queue"})
    if (s.get("max_active"), s.get("mode")) != (want, "queue"):
        raise RuntimeError(f"the control location answered {s}")
    op["notes"].append(f"max_active {ngx.max_active}->{want} and mode=queue at run time")
    ngx.max_active = want
    op["max_active_after"] = want
    await asyncio.sleep(2.0)
    s = await to_thread(control, ngx, {"mode": "normal"})
    if s.get("mode") != "normal":
        raise RuntimeError(f"the control location answered {s}")
    op["notes"].append(f"mode=normal {run.now() - op['t_start']:.1f}s after")
    st = await run.status_where(lambda s: s["max_sessions"] == want, 5)
    if st is None:
        op["problems"].append(f"max_sessions never showed {want} after the change")


async def op_restart(run, op):
    ngx = run.ngx
    master = ngx.pid()
    r = await to_thread(ngx.run, "-s", "quit")
    if r.returncode != 0:
        raise RuntimeError(f"nginx -s quit failed: {r.stderr.strip()}")
    deadline = time.monotonic() + 20
    while alive(master) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    if alive(master):
        raise RuntimeError("nginx did not quit within 20 s")
    t_down = run.now()
    pid = await to_thread(ngx.start)
    t_up = run.now()
    op["notes"].append(f"quit in {t_down - op['t_start']:.1f}s, down {t_up - t_down:.2f}s, new master {pid}")
    if ngx.state:
        st = os.path.join(ngx.prefix, "sale.state")
        op["notes"].append("state file " + (f"{os.path.getsize(st)} bytes" if os.path.exists(st) else "missing"))
    op["downtime"] = [round(t_down, 3), round(t_up, 3)]


async def op_upgrade(run, op):
    ngx = run.ngx
    old = ngx.pid()
    os.kill(old, signal.SIGUSR2)
    deadline = time.monotonic() + 10
    new = None
    while time.monotonic() < deadline:
        new = ngx.pid()
        if ngx.pid("nginx.pid.oldbin") == old and new and new != old and alive(new):
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError(f"no new master after USR2 (error.log: {log_since(ngx, op['log_offset']).strip()[-300:]})")
    ngx.remember(new)
    deadline = time.monotonic() + 10
    while len(children(new)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    op["notes"].append(f"new master {new} with workers {','.join(map(str, children(new)))} "
                       f"in {run.now() - op['t_start']:.1f}s")
    # Both run side by side for a moment, as in a real upgrade, then the old one's workers go.
    await asyncio.sleep(2.0)
    os.kill(old, signal.SIGWINCH)
    # The new master is a child of the old one too.
    old_workers = lambda: [k for k in children(old) if k != new]  # noqa: E731
    deadline = time.monotonic() + 15
    while old_workers() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if old_workers():
        op["problems"].append("the old master's workers did not stop after WINCH")
    else:
        op["notes"].append(f"old workers gone {run.now() - op['t_start']:.1f}s after USR2 (WINCH)")
    await asyncio.sleep(1.0)
    os.kill(old, signal.SIGQUIT)
    deadline = time.monotonic() + 15
    while alive(old) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if alive(old):
        raise RuntimeError("the old master did not quit")
    op["notes"].append(f"old master {old} gone after {run.now() - op['t_start']:.1f}s")


OP_INFO = {
    "raise": ("(a) reload max_active 20->30", op_raise),
    "lower": ("(b) reload max_active 30->10", op_lower),
    "zone": ("(c) reload zone size 1m->2m", op_zone),
    "failed": ("(d) reload that fails (port held)", op_failed),
    "live": ("(l) live: max_active +5, queue 2 s", op_live),
    "restart": ("(e) stop and start", op_restart),
    "upgrade": ("(f) binary upgrade (USR2)", op_upgrade),
}


async def operator(run, args, support):
    """Performs the operations in turn, printing each one's row when its load is over."""
    if not await run.sleep_until(args.warmup):
        return
    for name in args.ops:
        label, fn = OP_INFO[name]
        # The max_active figures of the labels follow the order of the default sequence.
        if name == "raise":
            label = f"(a) reload max_active {run.ngx.max_active}->30"
        elif name == "lower":
            label = f"(b) reload max_active {run.ngx.max_active}->10"
        elif name == "zone":
            label = f"(c) reload zone size {run.ngx.size}->2m"
        supported = name not in NEED_STATE or support["state"]
        op = {"name": name, "label": label, "supported": supported, "performed": False,
              "unsupported": "" if supported else support["short"],
              "t_start": round(run.now(), 3), "notes": [], "problems": [], "error": None,
              "log_offset": log_size(run.ngx)}
        print_row(run, run.ops[-1])
        if not supported and args.skip_unsupported:
            op["notes"].append(f"skipped: {support['short']}")
            run.ops.append(op)
            continue
        run.ops.append(op)
        print(f"[{now_wall()} +{run.now():5.1f}s] {label}" +
              ("" if supported else f" ({support['short']}: {support['why']}; measured anyway)"),
              flush=True)
        try:
            await fn(run, op)
            op["performed"] = True
        except Exception as e:  # noqa: BLE001
            op["error"] = f"{type(e).__name__}: {e}"
            print(f"  could not perform it: {op['error']}", flush=True)
        op["t_done"] = round(run.now(), 3)
        for n in op["notes"]:
            print(f"  {n}", flush=True)
        for p in op["problems"]:
            print(f"  PROBLEM: {p}", flush=True)
        if op["error"] and name not in ("restart", "upgrade"):
            # The room may be in any state; the rest would measure nothing meaningful.
            break
        if op["error"] and not alive(run.ngx.pid() or 0):
            break
        if not await run.sleep_until(run.now() + args.settle):
            break
    print_row(run, run.ops[-1])


# ---------------------------------------------------------------------------------------------
# analysis


def windows(run, end):
    starts = [op["t_start"] for op in run.ops]
    return [(s, starts[i + 1] if i + 1 < len(starts) else end) for i, s in enumerate(starts)]


def window_of(wins, t):
    for i in range(len(wins) - 1, -1, -1):
        if t >= wins[i][0]:
            return i
    return 0


def attribute(run, wins, t_ok, t_detect):
    """The operation a place found gone at t_detect, last answered for at t_ok, is put down to:
    the last one started between the two, or else the one whose window holds t_detect."""
    cands = [i for i, op in enumerate(run.ops) if i > 0 and t_ok < op["t_start"] <= t_detect]
    return cands[-1] if cands else window_of(wins, t_detect)


def same_room(a, b):
    keys = ("joined_total", "admitted_total", "sessions_left", "sessions_expired")
    return all(b.get(k, 0) >= a.get(k, 0) for k in keys)


def status_overflows(samples):
    """Admissions certainly made at or above the max_active in force, between two samples of
    the same room: with A admitted and D sessions ended between them and a2 inside at the
    second, at least min(A, a2 - M) were let in at a level of M or more (M: the larger max in
    force of the two). [(t, count, detail)]."""
    out = []
    for a, b in zip(samples, samples[1:]):
        if not same_room(a, b):
            continue
        A = b["admitted_total"] - a["admitted_total"]
        M = max(a["max_sessions"], b["max_sessions"])
        over = min(A, b["active_sessions"] - M)
        # Rising while above the figure is also certain, whatever the counters say.
        rise = b["active_sessions"] - max(a["active_sessions"], M)
        n = max(over, rise, 0)
        if n > 0:
            out.append((b["t"], n, f"{a['active_sessions']}->{b['active_sessions']} inside, "
                                   f"{A} admitted, max {M}", True))
    return out


def lowerings(samples):
    """Where max_active went down: (time, how many tickets were called then). A ticket called
    before holds a slot reserved under the old figure, and claims it when its visitor polls
    (within claim_window): that is not an admission the lowered figure should have paused."""
    out = []
    for a, b in zip(samples, samples[1:]):
        if same_room(a, b) and b["max_sessions"] < a["max_sessions"]:
            out.append((a["t"], max(a.get("called_unclaimed", 0), b.get("called_unclaimed", 0))))
    return out


def split_reserved(overflows, lows):
    """Separates, from the admissions at or above max_active, those that can be tickets called
    before a lowering (at most as many as were called, within claim_window of it)."""
    budget = [c for _, c in lows]
    counted, reserved = [], []
    for t, n, d, from_line in sorted(overflows, key=lambda x: x[0]):
        for k, (tl, _) in enumerate(lows):
            if from_line and budget[k] > 0 and tl - 0.2 <= t <= tl + CLAIM_WINDOW + 1:
                take = min(n, budget[k])
                budget[k] -= take
                n -= take
                reserved.append((t, take, d + " (called before the lowering)"))
                if n == 0:
                    break
        if n > 0:
            counted.append((t, n, d))
    return counted, reserved


def visitor_intervals(run):
    out = []
    for v in run.visitors:
        for s in v.sessions:
            end = s.t_end if s.t_end is not None else s.last_ok_sent
            out.append((s.t_recv, max(end, s.last_ok_sent, s.t_recv), v.n, s))
    return out


def visitor_overflows(run, intervals):
    """Admissions made while, by the visitors' own account, max_active or more others were
    certainly inside for the whole time the admitting request took."""
    samples = run.samples
    ts = [s["t"] for s in samples]
    out = []
    starts = sorted(intervals, key=lambda x: x[0])
    for v, s in run.admissions:
        i = bisect.bisect_right(ts, s.t_sent) - 1
        j = bisect.bisect_left(ts, s.t_recv)
        ms = [samples[k]["max_sessions"] for k in (i, j) if 0 <= k < len(samples)]
        if not ms:
            continue
        M = max(ms)
        inside = sum(1 for a, b, n, o in starts if a <= s.t_sent and b >= s.t_recv and o is not s)
        if inside >= M:
            out.append((s.t_recv, 1, f"visitor {v} admitted ({s.how}) with {inside} certainly inside, max {M}",
                        s.how == "queue"))
    return out


def inversions(run):
    """Admissions from the line, or newcomers let in, while a diligent visitor who joined
    earlier, in the same room (epoch), was answered "queued" to a poll sent afterwards."""
    by_epoch = {}
    for v in run.visitors:
        for tk in v.tickets:
            by_epoch.setdefault(tk.epoch, []).append((v.n, tk))
    out = []
    for v, s in run.admissions:
        line = by_epoch.get(s.epoch, [])
        for n, tk in line:
            if n == v or not tk.queued:
                continue
            earlier = tk.number < s.ticket if s.how == "queue" and s.ticket is not None else tk.t_join < s.t_sent
            if earlier and tk.queued[-1] > s.t_recv:
                q = next(x for x in tk.queued if x > s.t_recv)
                out.append((s.t_recv, v, f"visitor {v} admitted ({s.how}"
                            + (f", ticket {s.ticket}" if s.ticket is not None else "")
                            + f") at {s.t_recv:.2f}s while visitor {n} (ticket {tk.number}) was answered "
                              f"queued to a poll sent at {q:.2f}s"))
                break
    return out


def row(run, i, wins, ov_status, ov_visit, invs, intervals):
    op = run.ops[i]
    a, b = wins[i]
    inw = lambda t: a <= t < b  # noqa: E731
    losses = [x for x in run.losses if attribute(run, wins, x["t_ok"], x["t_detect"]) == i]
    count = lambda kind, verdict: sum(1 for x in losses if x["kind"] == kind and x["verdict"] == verdict)  # noqa: E731
    samples = [s for s in run.samples if inw(s["t"])]
    before = [s for s in run.samples if s["t"] < a][-1:]
    around = before + samples
    clipped = [(max(x, a), min(y, b)) for x, y, _, _ in intervals if x < b and y > a and min(y, b) > max(x, a)]
    most_visit, _ = max_overlap(clipped, b) if clipped else (0, None)
    maxes = []
    for s in around:
        if not maxes or maxes[-1] != s["max_sessions"]:
            maxes.append(s["max_sessions"])
    fails = [f for f in run.failures if inw(f[0])]
    r = {
        "operation": op["label"],
        "name": op["name"],
        "supported": op["supported"],
        "unsupported": op.get("unsupported", ""),
        "performed": op["performed"],
        "window": [round(a, 1), round(b, 1)],
        "tickets_lost": count("ticket", "lost"),
        "tickets_lapsed": count("ticket", "lapsed"),
        "sessions_lost": count("session", "lost"),
        "sessions_expired": count("session", "expired"),
        "fifo_inversions": sum(1 for t, _, _ in invs if inw(t)),
        "most_inside_status": max((s["active_sessions"] for s in samples), default=None),
        "most_inside_visitors": most_visit,
        "max_active_in_force": maxes,
        "admitted_at_or_above_max_status": sum(n for t, n, _ in ov_status[0] if inw(t)),
        "admitted_at_or_above_max_visitors": sum(n for t, n, _ in ov_visit[0] if inw(t)),
        "admitted_reserved_before_lowering_status": sum(n for t, n, _ in ov_status[1] if inw(t)),
        "admitted_reserved_before_lowering_visitors": sum(n for t, n, _ in ov_visit[1] if inw(t)),
        "room_started_anew": any(not same_room(x, y) for x, y in zip(around, around[1:])),
        "failed_requests_connection": sum(1 for f in fails if f[1] == "conn"),
        "failed_requests_http": sum(1 for f in fails if f[1] == "http"),
        "status_errors": sum(1 for t in run.status_errors if inw(t)),
        "held_without_ticket": sum(1 for t, _ in run.held if inw(t)),
        "refused_then_known_again": sum(1 for t, _ in run.resumed if inw(t)),
        "admissions": sum(1 for _, s in run.admissions if inw(s.t_recv)),
        "notes": op["notes"],
        "problems": op["problems"],
        "error": op["error"],
        "examples": {
            "lost": [x for x in losses if x["verdict"] == "lost"][:8],
            "inversions": [d for t, _, d in invs if inw(t)][:5],
            "overflow_status": [d for t, _, d in ov_status[0] if inw(t)][:5],
            "overflow_visitors": [d for t, _, d in ov_visit[0] if inw(t)][:5],
            "reserved": [d for t, _, d in ov_visit[1] if inw(t)][:5],
        },
    }
    bad = (r["tickets_lost"] or r["sessions_lost"] or r["fifo_inversions"]
           or r["admitted_at_or_above_max_status"] or r["admitted_at_or_above_max_visitors"]
           or op["problems"])
    if not op["supported"]:
        r["result"] = "SKIPPED" if not op["performed"] and not op["error"] else "UNSUPPORTED"
    elif op["error"]:
        r["result"] = "ERROR"
    else:
        r["result"] = "FAIL" if bad else "PASS"
    return r


def compute_rows(run, end):
    wins = windows(run, end)
    intervals = visitor_intervals(run)
    lows = lowerings(run.samples)
    ov_status = split_reserved(status_overflows(run.samples), lows)
    ov_visit = split_reserved(visitor_overflows(run, intervals), lows)
    invs = inversions(run)
    return [row(run, i, wins, ov_status, ov_visit, invs, intervals) for i in range(len(run.ops))]


HEAD = (f"{'operation':<36} {'tickets':>7} {'sessions':>8} {'FIFO':>4} {'most inside':>11} "
        f"{'max_active':>10} {'admits':>7} {'failed requests':>15}  result")
HEAD2 = (f"{'':<36} {'lost':>7} {'lost':>8} {'inv.':>4} {'status/vis.':>11} {'in force':>10} "
         f"{'at/>max':>7} {'conn/http':>15}")


def fmt_row(r):
    if r["result"] == "SKIPPED":
        return f"{r['operation']:<36} {'-':>7} {'-':>8} {'-':>4} {'-':>11} {'-':>10} {'-':>7} {'-':>15}  " \
               f"{r['unsupported']} (skipped)"
    mi = f"{'-' if r['most_inside_status'] is None else r['most_inside_status']}/{r['most_inside_visitors']}"
    ma = "->".join(map(str, r["max_active_in_force"])) or "-"
    ad = f"{r['admitted_at_or_above_max_status']}/{r['admitted_at_or_above_max_visitors']}"
    fr = f"{r['failed_requests_connection']}/{r['failed_requests_http']}"
    res = r["result"]
    if res == "UNSUPPORTED":
        res = r["unsupported"]
    elif res == "SKIPPED":
        res = f"{r['unsupported']} (skipped)"
    return (f"{r['operation']:<36} {r['tickets_lost']:>7} {r['sessions_lost']:>8} {r['fifo_inversions']:>4} "
            f"{mi:>11} {ma:>10} {ad:>7} {fr:>15}  {res}")


def print_row(run, op):
    i = run.ops.index(op)
    rows = compute_rows(run, run.now())
    r = rows[i]
    if i == 0:
        print(HEAD)
        print(HEAD2)
    print(fmt_row(r), flush=True)


# ---------------------------------------------------------------------------------------------
# the run


def make_visitors(args, horizon):
    """A burst (40% in the first 4 s) and then a steady flow until `horizon`."""
    rng = random.Random(args.seed)
    n_burst = int(args.visitors * 0.4)
    arrivals = [rng.uniform(0, 4) for _ in range(n_burst)]
    arrivals += [rng.uniform(4, max(horizon, 8)) for _ in range(args.visitors - n_burst)]
    arrivals.sort()
    return [Visitor(n=i, arrive=0.3 + t, browse=rng.uniform(5, 20), leaves=rng.random() < 0.6,
                    reloader=rng.random() < 0.15, abandons=rng.random() < 0.05,
                    abandon_after=rng.uniform(5, 40), seed=rng.getrandbits(32))
            for i, t in enumerate(arrivals)]


async def run_all(args, ngx, support):
    run = Run(args, ngx)
    n_ops = len(args.ops)
    # Arrivals go on until about when the last operation's load ends; the visitors stop when
    # the operator is done.
    horizon = args.warmup + n_ops * (args.settle + 2)
    run.visitors = make_visitors(args, horizon - args.settle / 2)
    run.ops.append({"name": "baseline", "label": "baseline: load only", "supported": True,
                    "performed": True, "t_start": 0.0, "notes": [], "problems": [], "error": None})
    main = asyncio.current_task()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    mon = asyncio.create_task(run.monitor())
    probe = asyncio.create_task(run.lag_probe())
    tasks = [asyncio.create_task(run.visitor(v)) for v in run.visitors]
    try:
        await operator(run, args, support)
        run.deadline = run.now()
        # Requests under way finish (or time out); sleepers are woken by cancelling them.
        await asyncio.sleep(0.5)
        _, pending = await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 1)
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
    finally:
        run.deadline = min(run.deadline, run.now())
        run.stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.wait([mon, probe], timeout=5)
    return run


def main():
    args = parse_args()
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.visitors + 1000)), hard))
    except (ValueError, OSError):
        pass
    started = time.monotonic()
    ngx = Nginx(args)
    support = {"state": False, "why": "", "short": ""}
    try:
        if args.state:
            ok, why = ngx.detect_state()
            support = {"state": ok, "why": why, "short": "" if ok else "not supported by this build"}
        else:
            support = {"state": False, "why": "OPS_STATE=0: run without a state file",
                       "short": "not checked: no state file (OPS_STATE=0)"}
        ngx.state = support["state"]
        ngx.write()
        r = ngx.run("-t")
        if r.returncode != 0:
            raise RuntimeError(f"nginx -t: {r.stderr.strip()}")
        master = ngx.start()
    except Exception as e:  # noqa: BLE001
        print(f"ops-check: could not start nginx: {e}", file=sys.stderr)
        ngx.stop_all()
        return 2
    print(f"==> nginx {ngx.args.nginx} (master {master}) on 127.0.0.1:{ngx.port}, 2 workers, room "
          f"{ROOM}:1m max_active=20 idle={IDLE:g}s heartbeat={HEARTBEAT:g}s claim_window={CLAIM_WINDOW:g}s "
          f"grace={GRACE:g}s; prefix {ngx.prefix}")
    print(f"    state file: {'yes, ' + ngx.prefix + 'sale.state' if ngx.state else 'no'} ({support['why']})")
    unsupported = [OP_INFO[o][0] for o in args.ops if o in NEED_STATE and not ngx.state]
    if unsupported:
        print(f"    {support['short']}: {', '.join(unsupported)}"
              + (" -- skipped" if args.skip_unsupported else " -- performed and measured, not counted"))
    print(f"==> {args.visitors} visitors (40% in the first 4 s, then steadily); operations: "
          f"{', '.join(args.ops)}, {args.warmup:g}s of load before the first and {args.settle:g}s after each",
          flush=True)
    interrupted = False
    run = None
    try:
        run = asyncio.run(run_all(args, ngx, support))
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    finally:
        ngx.stop_all()
    if interrupted or run is None:
        print("ops-check: interrupted; nginx stopped", file=sys.stderr)
        return 130

    end = run.now()
    rows = compute_rows(run, end)
    errors = [f"visitor {v.n}: {v.error}" for v in run.visitors if v.error]
    try:
        with open(os.path.join(ngx.prefix, "logs", "error.log"), errors="replace") as f:
            alerts = [ln.rstrip() for ln in f if re.search(r"\[(alert|crit|emerg)\]", ln)]
    except OSError:
        alerts = []
    lag = sorted(run.lag)
    result = {
        "config": {"visitors": args.visitors, "seed": args.seed, "warmup": args.warmup,
                   "settle": args.settle, "ops": args.ops, "state_requested": bool(args.state),
                   "room": {"zone": "1m", "max_active": 20, "idle": IDLE, "heartbeat": HEARTBEAT,
                            "claim_window": CLAIM_WINDOW, "grace": GRACE},
                   "nginx": args.nginx, "module": args.module},
        "state_file": support,
        "run_seconds": round(end, 1),
        "wall_seconds": round(time.monotonic() - started, 1),
        "operations": rows,
        "totals": {
            "admissions": len(run.admissions),
            "admitted_from_queue": sum(1 for _, s in run.admissions if s.how == "queue"),
            "tickets": sum(len(v.tickets) for v in run.visitors),
            "losses": {k: sum(1 for x in run.losses if f"{x['kind']} {x['verdict']}" == k)
                       for k in sorted({f"{x['kind']} {x['verdict']}" for x in run.losses})},
            "status_samples": len(run.samples),
            "status_errors": len(run.status_errors),
            "failed_requests": len(run.failures),
            "held_without_ticket": len(run.held),
            "anomalies": len(run.anomalies),
            "anomaly_examples": [f"+{t:.2f}s visitor {n}: {d}" for t, n, d in run.anomalies[:10]],
            "client_errors": errors[:10],
            "loop_lag_max_s": round(lag[-1], 3) if lag else None,
            "visitor_outcomes": {k: sum(1 for v in run.visitors if v.done == k) for k in
                                 sorted({v.done for v in run.visitors})},
        },
        "error_log_alerts": alerts[:20],
        "losses": run.losses,
        "status_samples": [{k: s[k] for k in ("t", "active_sessions", "max_sessions", "queue_length",
                                              "called_unclaimed", "admitted_total", "joined_total")}
                           for s in run.samples],
    }

    # The verdict.
    failed_run = None
    if not run.samples:
        failed_run = "the status location never answered"
    elif not run.admissions:
        failed_run = "nobody was admitted"
    elif len(errors) > max(5, 0.02 * args.visitors):
        failed_run = f"{len(errors)} visitors failed in the client"
    elif any(r["result"] == "ERROR" for r in rows):
        failed_run = "an operation could not be performed"
    elif len(rows) < len(args.ops) + 1:
        failed_run = "not every operation was reached"
    counted = [r for r in rows if r["supported"]]
    ok = all(r["result"] == "PASS" for r in counted)
    code = 2 if failed_run else (0 if ok else 1)
    result["exit"] = code
    result["failed_run"] = failed_run

    print()
    print(f"==> summary: {len(run.admissions)} admissions ({result['totals']['admitted_from_queue']} from the line), "
          f"{result['totals']['tickets']} tickets; {len(run.samples)} status samples; run {end:.0f}s")
    print(HEAD)
    print(HEAD2)
    for r in rows:
        print(fmt_row(r))
    print()
    print("  tickets lost: told none / given another ticket / let in as newcomers while polling regularly;")
    print("  sessions lost: sent to the queue, let in anew, or heartbeat/away refused, while active;")
    print("  most inside: status active_sessions / the visitors' certainly live sessions; admits at/>max:")
    print("  admissions certainly made at or above max_active in force (status counters / visitors).")
    for r in rows:
        extra = []
        if r["tickets_lapsed"] or r["sessions_expired"]:
            extra.append(f"not counted: {r['tickets_lapsed']} tickets lapsed, {r['sessions_expired']} sessions "
                         f"expired (their visitor was away)")
        if r["admitted_reserved_before_lowering_status"] or r["admitted_reserved_before_lowering_visitors"]:
            extra.append(f"not counted: {r['admitted_reserved_before_lowering_status']}/"
                         f"{r['admitted_reserved_before_lowering_visitors']} (status/visitors) admissions at or "
                         f"above the lowered max_active were tickets called before the reload (a slot reserved)")
        if r["room_started_anew"]:
            extra.append("the status counters went back: another room answered (a new zone, or two "
                         "nginx side by side)")
        if r["held_without_ticket"]:
            extra.append(f"{r['held_without_ticket']} times a newcomer was shown the line without a ticket "
                         f"(a room standing by), and asked again")
        if r["refused_then_known_again"]:
            extra.append(f"{r['refused_then_known_again']} times a ticket told none or a session refused (403) "
                         f"was known again later with the same cookie (the refusal still counts as lost: the "
                         f"queue page reloads on none, heartbeat.js stops beating on a 403)")
        if r["status_errors"]:
            extra.append(f"{r['status_errors']} status samples failed")
        if r["error"]:
            extra.append(f"ERROR: {r['error']}")
        extra += [f"PROBLEM: {p}" for p in r["problems"]]
        ex = r["examples"]
        for k in ("lost", "inversions", "overflow_status", "overflow_visitors"):
            for e in ex[k][:3]:
                extra.append(f"e.g. {k}: " + (json.dumps(e) if isinstance(e, dict) else e))
        if extra:
            print(f"  {r['operation']}:")
            for e in extra:
                print(f"    {e}")
    if run.anomalies:
        print(f"  anomalies: {len(run.anomalies)}, e.g. " + "; ".join(result["totals"]["anomaly_examples"][:3]))
    if errors:
        print(f"  client errors: {len(errors)}, e.g. {errors[0]}")
    if alerts:
        print(f"  nginx error.log: {len(alerts)} lines at alert/crit/emerg, e.g.:")
        for ln in alerts[:4]:
            print(f"    {ln[:200]}")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
    print(f"  JSON summary: {args.json}")
    if failed_run:
        print(f"ops-check: the run itself failed: {failed_run}", file=sys.stderr)
    else:
        bad = [r["operation"] for r in counted if r["result"] != "PASS"]
        print(f"==> {'FAIL: ' + ', '.join(bad) if bad else 'PASS: nobody lost their place'}"
              + (f" ({support['short']}, not counted: {', '.join(unsupported)})" if unsupported else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
