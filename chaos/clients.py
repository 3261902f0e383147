"""Campaign clients: threads that append and read while the nemesis works, recording every
attempt for the checker (checker.py documents the record's fields and outcomes).

A worker's operations on a random session through a random node:
  - append with an idempotency key (most of them): an indeterminate outcome (503, timeout,
    reset) is retried with the same key and content through another node, as SPEC §3 says
    a client must; a refused connection is a definite failure of that attempt (nothing
    was sent) and is retried too;
  - append with expected_seq = the last seq this client knows for the session (+ a key);
  - append without a key (never retried: a retry could duplicate it);
  - page read from a cursor near the known end.
Payload numbers are written with exact texts (1.50, -0, 30-digit integers, 1E+400) that
must come back unchanged whatever faults happen.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import threading
import time

from checker import exact_json
from nodes import HTTP_PORT

NUMBER_TEXTS = ["1.50", "-0", "123456789012345678901234567890", "1E+400", "0.1000000000000000055511151231257827", "42"]
CLIENT_TIMEOUT_S = 10.0
RETRY_WINDOW_S = 40.0


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.attempts: list[dict] = []
        self.next_op = 0
        self.known_seq: dict[str, int] = {}

    def op_id(self) -> int:
        with self.lock:
            self.next_op += 1
            return self.next_op

    def record(self, attempt: dict) -> None:
        with self.lock:
            self.attempts.append(attempt)
            seq = attempt.get("seq") if attempt["kind"] == "append" else attempt.get("last_seq")
            if attempt["outcome"] == "ok" and seq:
                s = attempt["session"]
                self.known_seq[s] = max(self.known_seq.get(s, 0), seq)

    def known(self, session: str) -> int:
        with self.lock:
            return self.known_seq.get(session, 0)


def request(addr: str, method: str, path: str, body: str | None) -> tuple[str, int | None, dict | None, str]:
    """One HTTP exchange on a fresh connection: (outcome class, status, JSON body, error).

    Outcome class: "answered" (a status came back), "refused" (nothing was sent), "lost"
    (sent, or maybe sent, and no answer)."""
    conn = http.client.HTTPConnection(addr, HTTP_PORT, timeout=CLIENT_TIMEOUT_S)
    try:
        try:
            conn.connect()
        except (ConnectionRefusedError, socket.timeout, OSError) as e:
            return "refused", None, None, type(e).__name__
        try:
            headers = {"content-type": "application/json"} if body is not None else {}
            conn.request(method, path, body=body.encode() if body is not None else None, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            return "lost", None, None, type(e).__name__
        try:
            parsed = exact_json(raw.decode())
        except ValueError:
            parsed = None
        return "answered", resp.status, parsed, ""
    finally:
        conn.close()


def num(v) -> int:
    return int(v[1]) if isinstance(v, tuple) else int(v)


class Worker(threading.Thread):
    def __init__(self, wid: int, seed: int, addrs: list[str], sessions: list[str], recorder: Recorder, stop: threading.Event):
        super().__init__(name=f"worker-{wid}", daemon=True)
        self.wid = wid
        self.rng = random.Random(seed * 1000 + wid)
        self.addrs = addrs
        self.sessions = sessions
        self.rec = recorder
        self.stop_flag = stop

    def run(self) -> None:
        while not self.stop_flag.is_set():
            session = self.rng.choice(self.sessions)
            roll = self.rng.random()
            if roll < 0.6:
                self.append(session, keyed=True, expected=False)
            elif roll < 0.7:
                self.append(session, keyed=True, expected=True)
            elif roll < 0.8:
                self.append(session, keyed=False, expected=False)
            else:
                self.read(session)

    def append(self, session: str, keyed: bool, expected: bool) -> None:
        op = self.rec.op_id()
        number = self.rng.choice(NUMBER_TEXTS)
        pad = "".join(self.rng.choice("abcdefghij") for _ in range(self.rng.randint(8, 120)))
        fields = [f'"type":"chaos"', f'"payload":{{"op":{op},"w":{self.wid},"x":{number},"pad":"{pad}"}}', f'"actor":"worker-{self.wid}"']
        if self.rng.random() < 0.3:
            fields.append('"metadata":{"m":[1,2.0,"three"]}')
        if keyed:
            fields.append(f'"idempotency_key":"op-{op}"')
        expected_seq = None
        if expected:
            expected_seq = self.rec.known(session)
            fields.append(f'"expected_seq":{expected_seq}')
        body = "{" + ",".join(fields) + "}"
        deadline = time.monotonic() + RETRY_WINDOW_S
        while True:
            addr = self.rng.choice(self.addrs)
            invoke = time.monotonic()
            cls, status, parsed, err = request(addr, "POST", f"/v1/sessions/{session}/append", body)
            attempt = {"kind": "append", "op": op, "session": session, "body": body, "expected_seq": expected_seq, "node": addr,
                       "invoke": invoke, "complete": time.monotonic(), "seq": None, "deduped": False, "status": status, "error": err}
            if cls == "answered" and status == 201 and isinstance(parsed, dict):
                attempt.update(outcome="ok", seq=num(parsed["seq"]), deduped=parsed.get("deduped") is True)
            elif cls == "answered" and status is not None and 400 <= status < 500:
                attempt.update(outcome="fail", error=(parsed or {}).get("error", str(status)) if isinstance(parsed, dict) else str(status))
            elif cls == "refused":
                attempt.update(outcome="fail")
            else:
                attempt.update(outcome="info", error=(parsed.get("error") if isinstance(parsed, dict) else err) or str(status))
            self.rec.record(attempt)
            retry = attempt["outcome"] == "info" or cls == "refused"
            if not retry or not keyed and cls != "refused" or self.stop_flag.is_set() or time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def read(self, session: str) -> None:
        addr = self.rng.choice(self.addrs)
        cursor = max(0, self.rec.known(session) - self.rng.randint(0, 40))
        invoke = time.monotonic()
        cls, status, parsed, err = request(addr, "GET", f"/v1/sessions/{session}/events?cursor={cursor}&limit=100", None)
        attempt = {"kind": "read", "session": session, "node": addr, "invoke": invoke, "complete": time.monotonic(), "status": status, "error": err}
        if cls == "answered" and status == 200 and isinstance(parsed, dict):
            attempt.update(outcome="ok", last_seq=num(parsed["last_seq"]), events=parsed["events"])
        else:
            attempt.update(outcome="fail" if cls == "refused" or (status and status < 500) else "info")
        self.rec.record(attempt)


def read_history(addr: str, session: str) -> list[dict] | None:
    """Every event of a session through one node's page reads (routed to the leader)."""
    events: list[dict] = []
    cursor = 0
    for _ in range(10_000):
        cls, status, parsed, _ = request(addr, "GET", f"/v1/sessions/{session}/events?cursor={cursor}&limit=1000", None)
        if cls != "answered" or status != 200:
            return None
        events.extend(parsed["events"])
        cursor = num(parsed["next_cursor"])
        if cursor >= num(parsed["last_seq"]) or not parsed["events"]:
            return events
    return None


def tail_history(addr: str, session: str, until_seq: int, timeout: float = 20.0) -> list[dict] | None:
    """Every event of a session through one node's SSE tail — served from that node's own
    replica when it hosts one, so this compares the replicas themselves."""
    if until_seq == 0:
        return []
    conn = http.client.HTTPConnection(addr, HTTP_PORT, timeout=timeout)
    events: list[dict] = []
    try:
        conn.request("GET", f"/v1/sessions/{session}/tail?cursor=0", headers={"accept": "text/event-stream"})
        resp = conn.getresponse()
        if resp.status != 200:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = resp.readline()
            if not line:
                return None
            if line.startswith(b"data: "):
                events.append(exact_json(line[6:].decode()))
                if num(events[-1]["seq"]) >= until_seq:
                    return events
        return None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def create_sessions(addrs: list[str], names: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            cls, status, parsed, err = request(addrs[0], "POST", "/v1/sessions", json.dumps({"id": name}))
            if status in (201, 409):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot create session {name}: {cls} {status} {parsed} {err}")
            time.sleep(0.2)
