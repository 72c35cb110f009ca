"""
One truth: ``salt-run edge.report`` and ``edge.node`` ask the running
``edge_fleet`` engine for its state (the same memory the metrics are served
from), and read the stored record only when no engine answers (see
``docs/ref/engine.rst``, "Asking the engine").

The engine owns a Unix socket ``<sock_dir>/edge_fleet.ipc`` (mode 0600, the
master's user; a peer of another uid is refused). One request per
connection: a JSON line of at most :data:`MAX_REQUEST` bytes, ``{"want":
"fleet"}`` or ``{"want": "node", "id": ID}``; the answer is a stream of
msgpack objects, at most :data:`MAX_RESPONSE` bytes: the head (a dict, with
``count``, or ``{"error": ...}``), then ``count`` ``[id, record]`` pairs.
The request is handed to the engine's worker thread through its event
queue (:data:`REQUEST` is never a bus tag, those are strings), which copies
the records between two events (consistent, without a lock on the record;
70-90 ms for 5,000 nodes of 120 samples, measured at a load average of 16
on 2 CPUs); they are packed one by one in the socket's thread, so the worker
is never held up by a whole fleet's packing (600 ms in one piece). A fleet
answer carries the last hour of raw samples (what the report reads).
"""

import json
import logging
import os
import queue
import socket
import socketserver
import stat
import struct
import threading
import time

import msgpack

from saltext_edge.errors import EdgeError
from saltext_edge.fleet import nodeview as _nodeview

log = logging.getLogger(__name__)

SOCKET_NAME = "edge_fleet.ipc"
MAX_REQUEST = 4096
MAX_RESPONSE = 256 * 1024 * 1024
#: seconds the engine's worker has to take a request (then: "busy")
ANSWER_TIMEOUT_S = 10.0
#: seconds the runner waits for the engine (connect, send, each read)
ASK_TIMEOUT_S = 15.0
#: the inbox tag of a request (an object: no bus event can carry it)
REQUEST = object()
#: raw samples a fleet answer carries (the report's 1 h trend)
SAMPLES_S = 3600
_SEND_CHUNK = 256 * 1024


class Unavailable(EdgeError):
    """No engine answered; the message (one line) says why."""


def socket_path(opts):
    """Return the path of the engine's socket: ``<sock_dir>/edge_fleet.ipc``."""
    return os.path.join(opts["sock_dir"], SOCKET_NAME)


# --------------------------------------------------------------------------
# the engine's side
# --------------------------------------------------------------------------


def _copy(rec):
    # the lists the engine appends to are copied; their rows are never changed in place
    return dict(
        rec, samples=list(rec.get("samples") or ()), transitions=list(rec.get("transitions") or ())
    )


def state_of(fleet, want="fleet", minion_id=None):
    """
    Return a copy of what the engine ``fleet``
    (:class:`saltext_edge.fleet.engine.FleetEngine`) knows, from its memory:
    ``{"master", "at", "started_at", "flushed_at", "records": {id: record},
    "sites": the site meta, "hours": {id: hourly rows not yet written},
    "engine": counters}``; for ``want="node"`` only ``minion_id``'s record
    and rows. Call it in the engine's worker thread.
    """
    import copy

    if want == "node":
        rec = fleet.records.get(minion_id)
        records = {} if rec is None else {minion_id: _copy(rec)}
        hours = {minion_id: list(fleet.pending_hours.get(minion_id) or ())}
        sites = {}
    else:
        records = {mid: _copy(rec) for mid, rec in fleet.records.items()}
        hours = {}
        sites = copy.deepcopy(fleet.sites_meta)
    return {
        "master": fleet.master_id,
        "at": fleet.clock(),
        "started_at": fleet.started_at,
        "flushed_at": fleet.last_flush,
        "records": records,
        "sites": sites,
        "hours": hours,
        "engine": {"events_seen": fleet.events_seen, "nodes": len(fleet.records)},
    }


class _Job:
    """One request on its way through the engine's worker thread."""

    def __init__(self, want, minion_id):
        self.want = want
        self.minion_id = minion_id
        self.done = threading.Event()
        self.state = None

    def run(self, fleet):
        """Take the state of ``fleet`` (in the worker thread; :func:`state_of`)."""
        try:
            self.state = state_of(fleet, self.want, self.minion_id)
        except Exception as exc:
            log.error("edge_fleet: cannot answer a state request: %s", exc.__class__.__name__)
        finally:
            self.done.set()


def _peer_uid(sock):
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


class _Handler(socketserver.StreamRequestHandler):
    timeout = 5.0  # seconds to read the request

    def _refuse(self, message):
        self.wfile.write(msgpack.packb({"error": message}, use_bin_type=True))

    def _answer(self, state):
        records = state.pop("records")
        cut = state["at"] - SAMPLES_S if self.want == "fleet" else None
        packer = msgpack.Packer(use_bin_type=True)
        buf = [packer.pack(dict(state, count=len(records)))]
        size = len(buf[0])
        # one record at a time: the engine's worker gets the GIL in between
        for minion_id, rec in records.items():
            if cut is not None:
                rec["samples"] = [s for s in rec["samples"] if s[0] >= cut]
            buf.append(packer.pack([minion_id, rec]))
            size += len(buf[-1])
            if size >= _SEND_CHUNK:
                self.wfile.write(b"".join(buf))
                buf, size = [], 0
        self.wfile.write(b"".join(buf))

    def handle(self):
        if _peer_uid(self.request) not in (os.geteuid(), 0):
            return  # the socket is 0600: only a peer of another uid that got past it lands here
        line = self.rfile.readline(MAX_REQUEST + 1)
        if len(line) > MAX_REQUEST or not line.endswith(b"\n"):
            self._refuse(f"the request must be one JSON line of at most {MAX_REQUEST} bytes")
            return
        try:
            req = json.loads(line)
            want = req["want"]
            minion_id = req.get("id")
        except (ValueError, TypeError, KeyError):
            self._refuse('the request must be {"want": "fleet"} or {"want": "node", "id": ID}')
            return
        if want not in ("fleet", "node") or (want == "node" and not isinstance(minion_id, str)):
            self._refuse('the request must be {"want": "fleet"} or {"want": "node", "id": ID}')
            return
        self.want = want
        job = _Job(want, minion_id)
        try:
            self.server.inbox.put((REQUEST, job), timeout=ANSWER_TIMEOUT_S)
        except queue.Full:
            self._refuse("the engine is busy (its event queue is full)")
            return
        if not job.done.wait(ANSWER_TIMEOUT_S):
            self._refuse(f"the engine did not take the request within {ANSWER_TIMEOUT_S:g} s")
            return
        if job.state is None:
            self._refuse("the engine could not copy its state (see the master's log)")
            return
        self._answer(job.state)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A requester that went away mid-answer is not an error of the engine's: debug log only."""
        log.debug("edge_fleet: a state request ended early", exc_info=True)


class StateServer:
    """Handle of the engine's socket: ``.path``, ``.close()``."""

    def __init__(self, server, thread, path):
        self._server = server
        self._thread = thread
        self.path = path

    def close(self):
        """Stop answering and remove the socket (idempotent)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        self._thread.join(5)
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except OSError:
            pass


def serve(opts, inbox):
    """
    Answer state requests on ``<sock_dir>/edge_fleet.ipc`` from a daemon
    thread; each request is put on ``inbox`` as ``(REQUEST, job)`` for the
    engine's worker thread to ``job.run(fleet)``. A socket left by an engine
    that died is replaced. Returns a :class:`StateServer`. Raises ``OSError``
    when the socket cannot be made.
    """
    path = socket_path(opts)
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    server = _Server(path, _Handler, bind_and_activate=False)
    try:
        server.server_bind()
        os.chmod(path, 0o600)
        server.server_activate()
    except OSError:
        server.server_close()
        raise
    server.inbox = inbox
    thread = threading.Thread(target=server.serve_forever, name="edge-fleet-state", daemon=True)
    thread.start()
    return StateServer(server, thread, path)


# --------------------------------------------------------------------------
# the runner's side
# --------------------------------------------------------------------------


def _objects(sock):
    """Yield the msgpack objects the engine sends, at most :data:`MAX_RESPONSE` bytes."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=MAX_RESPONSE)
    received = 0
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        received += len(chunk)
        if received > MAX_RESPONSE:
            raise Unavailable(f"the engine's answer is larger than {MAX_RESPONSE} bytes")
        unpacker.feed(chunk)
        yield from unpacker


def _read_answer(sock):
    objects = _objects(sock)
    head = next(objects, None)
    if not isinstance(head, dict) or "error" in head or not isinstance(head.get("count"), int):
        message = head.get("error") if isinstance(head, dict) else None
        raise Unavailable(str(message or "the engine's answer is not a state"))
    records = {}
    for _ in range(head.pop("count")):
        pair = next(objects, None)
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], dict):
            raise Unavailable("the engine's answer ended early")
        records[pair[0]] = pair[1]
    head["records"] = records
    return head


def ask(opts, want="fleet", minion_id=None, timeout=ASK_TIMEOUT_S):
    """
    Ask the running engine for its state (:func:`state_of`). Returns the
    answer dict; raises :class:`Unavailable` (one line) when no engine
    answers.
    """
    if not opts.get("sock_dir"):
        raise Unavailable("the master's sock_dir is not set")
    path = socket_path(opts)
    request = {"want": want} if want == "fleet" else {"want": want, "id": minion_id}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
            return _read_answer(sock)
    except (FileNotFoundError, ConnectionRefusedError):
        raise Unavailable(f"no edge_fleet engine is listening on {path}") from None
    except PermissionError:
        raise Unavailable(
            f"{path} belongs to the master's user; run salt-run as that user or root"
        ) from None
    except TimeoutError:
        raise Unavailable(f"the edge_fleet engine did not answer within {timeout:g} s") from None
    except OSError as exc:
        raise Unavailable(f"cannot reach the edge_fleet engine: {exc.strerror or exc}") from None
    except (ValueError, msgpack.UnpackException) as exc:
        raise Unavailable(f"the engine's answer is malformed ({exc.__class__.__name__})") from None


class EngineView:
    """
    The engine's answer with the read methods of
    :class:`saltext_edge.fleet.store.Store` the report reads (``load_all``,
    ``load``, ``meta``, ``engines``, ``hours``); hourly rows already written
    come from ``store``. ``live`` is true: a record's ``status`` is the
    engine's own.

    When other masters' engines write to the same store (a shared record,
    ``docs/ref/engine.rst``, "Several masters"), a node this engine has not
    heard of, or heard of last, is taken from the store with no status (the
    report classifies it from its last sign of life), so every master
    answers for the whole fleet.
    """

    live = True

    def __init__(self, answer, store):
        self.answer = answer
        self.store = store
        self.master = answer.get("master")
        self._engines = None

    def _shared(self):
        return any(master != self.master for master in self._stored_engines())

    def _stored_engines(self):
        if self._engines is None:
            self._engines = self.store.engines()
        return self._engines

    @staticmethod
    def _newer(mine, theirs):
        if theirs is None:
            return mine
        if mine is None or (theirs.get("last_seen") or 0) > (mine.get("last_seen") or 0):
            return dict(theirs, status=None)
        return mine

    def load_all(self):
        """Return ``{id: record}`` as the engine holds it (with a shared store's newer records)."""
        records = self.answer["records"]
        if not self._shared():
            return records
        stored = self.store.load_all()
        return {
            mid: self._newer(records.get(mid), stored.get(mid))
            for mid in stored.keys() | records.keys()
        }

    def load(self, minion_id):
        """Return ``minion_id``'s record as the engine holds it (or a shared store's newer one), or ``None``."""
        mine = self.answer["records"].get(minion_id)
        if mine is not None and not self._shared():
            return mine
        return self._newer(mine, self.store.load(minion_id))

    def meta(self, key):
        """Return the site meta as the engine holds it (other entries: the stored ones)."""
        if key == "sites" and self.answer.get("sites"):
            return self.answer["sites"]
        return self.store.meta(key)

    def engines(self):
        """Return the stored engine entries, this master's with the answering engine's figures."""
        engines = dict(self._stored_engines())
        mine = dict(engines.get(self.master) or {})
        mine.update(
            started_at=self.answer.get("started_at"),
            flushed_at=self.answer.get("flushed_at"),
            nodes=(self.answer.get("engine") or {}).get("nodes"),
            answered_at=self.answer.get("at"),
        )
        engines[self.master] = mine
        return engines

    def hours(self, minion_id):
        """Return the hourly rows: those written, then those the engine has not written yet."""
        rows = {r[0]: r for r in self.store.hours(minion_id)}
        rows.update((r[0], r) for r in (self.answer.get("hours") or {}).get(minion_id) or ())
        return [rows[k] for k in sorted(rows)]


def _age(seconds):
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


def read(opts, want="fleet", minion_id=None, store=None, now=None):
    """
    Return ``(source, store, note)``: the running engine's state as an
    :class:`EngineView` (``source`` ``"engine <master id>"``, ``note``
    ``None``), else the stored record (``source`` ``"stored record"``) with
    ``note``, one line saying that no engine answered, why, and how old
    the record is.
    """
    from saltext_edge.fleet import store as _store

    store = store if store is not None else _store.Store(opts)
    try:
        answer = ask(opts, want, minion_id)
    except Unavailable as exc:
        now = now if now is not None else time.time()
        flushed = [
            e.get("flushed_at")
            for e in store.engines().values()
            if isinstance(e.get("flushed_at"), (int, float))
        ]
        if flushed:
            last = max(flushed)
            age = f"the stored record, last written {_age(now - last)} ago ({_nodeview.iso(last)})"
        else:
            age = (
                "the stored record, which no engine has written yet: enable the engine "
                "(engines: [{edge_fleet: {}}]) and the edge_heartbeat beacon"
            )
        return "stored record", store, f"no edge_fleet engine answered ({exc}); this is from {age}"
    return f"engine {answer.get('master')}", EngineView(answer, store), None
