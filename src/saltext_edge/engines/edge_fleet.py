"""
Engine ``edge_fleet``: fleet health on the master (see ``docs/ref/engine.rst``).

.. code-block:: yaml

    # master config
    engines:
      - edge_fleet: {}
    edge:
      fleet: {late_after: 2, offline_after: 5}   # docs/configuration.rst
      metrics: {address: 127.0.0.1, port: 9345}  # false: no metrics server

Listens on the master event bus for signs of life (signed heartbeats from
the ``edge_heartbeat`` beacon, job returns, start and ping events, sign-ins),
keeps the record through ``salt.cache``, and fires ``edge/node/<id>/offline``,
``edge/node/<id>/online``, ``edge/site/<site>/degraded`` and
``edge/site/<site>/recovered`` once per transition, each sealed with the
master's event key (:mod:`saltext_edge.eventauth`: the alert reactor acts only
on events that verify). It never contacts a node.
The logic lives in :mod:`saltext_edge.fleet.engine`.
"""

import itertools
import logging
import queue
import threading
import time

try:
    from saltext_edge import eventauth as _eventauth
    from saltext_edge.fleet import conf as _conf
    from saltext_edge.fleet import engine as _engine
    from saltext_edge.fleet import live as _live

    HAS_LIB = True
except ImportError:  # pragma: no cover
    HAS_LIB = False

log = logging.getLogger(__name__)

__virtualname__ = "edge_fleet"

TICK_S = 1.0


def __virtual__():
    if not HAS_LIB:
        return (
            False,
            "edge_fleet: the saltext_edge library is missing (salt-run saltutil.sync_utils)",
        )
    return __virtualname__


def _metrics(opts, snapshot_fn):
    # --- view: edge:metrics is parsed and validated by metrics_server.start
    # (address, port, per_node, enabled; docs/ref/metrics.rst) --------------
    try:
        from saltext_edge.view import metrics_server
    except ImportError:
        log.info(
            "edge_fleet: no metrics module (saltext_edge.view.metrics_server); metrics not served"
        )
        return None
    try:
        return metrics_server.start(opts, snapshot_fn)
    except Exception as exc:
        log.error("edge_fleet: metrics not served: %s", exc)
        return None
    # --- end view ---------------------------------------------------------


def _state_server(opts, inbox):
    # the runner asks the engine for its state over <sock_dir>/edge_fleet.ipc
    # (saltext_edge.fleet.live; docs/ref/engine.rst, "Asking the engine")
    try:
        return _live.serve(opts, inbox)
    except OSError as exc:
        log.error("edge_fleet: edge.report will read the stored record only: %s", exc)
        return None


def _worker(opts, conf, inbox, tick, stopping):
    """The engine's thread: takes events from ``inbox``, ticks, fires, writes."""
    import salt.utils.event

    try:
        key = _eventauth.load_key(opts, create=True)
    except _eventauth.EventKeyError as exc:
        # the events still go out, unsealed: nothing acts on them as ours
        log.error("edge_fleet: events are fired unsealed, no alert will act on them: %s", exc)
        key = None

    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as pusher:

        def fire(tag, data):
            try:
                pusher.fire_event(_eventauth.seal_with(key, tag, data) if key else data, tag)
            except Exception as exc:
                log.error("edge_fleet: cannot fire %s: %s", tag, exc)

        fleet = _engine.FleetEngine(opts, conf=conf, fire=fire)
        log.info(
            "edge_fleet: started with %d node(s) in the record; grace %.0f s",
            len(fleet.records),
            fleet.grace_until - fleet.started_at,
        )
        fire("edge/fleet/started", {"master": fleet.master_id, "nodes": len(fleet.records)})
        server = _metrics(opts, fleet.snapshot)
        state_server = _state_server(opts, inbox)
        next_tick = time.monotonic()
        try:
            while not stopping.is_set():
                try:
                    tag, data = inbox.get(timeout=max(0.01, next_tick - time.monotonic()))
                except queue.Empty:
                    tag = None
                if tag is _live.REQUEST:
                    data.run(fleet)
                    tag = None
                if tag is not None:
                    try:
                        fleet.handle(tag, data)
                    except Exception:
                        log.exception("edge_fleet: event %s not handled", _engine.shown(tag))
                if time.monotonic() >= next_tick:
                    try:
                        fleet.tick()
                    except Exception:
                        log.exception("edge_fleet: tick failed")
                    next_tick = time.monotonic() + tick
        finally:
            try:
                fleet.flush()
            finally:
                if state_server is not None:
                    state_server.close()
                if server is not None:
                    server.close()


def start(interval=None):
    """
    Run the fleet engine until the master stops (Salt calls this in the
    engine's own process). ``interval``: seconds between two classification
    ticks (default 1). Returns only on a bad configuration (logged).

    The master's event bus is read with an asyncio handler (Salt's
    ``set_event_handler``, about half the CPU of polling ``get_event``); the
    events go through a queue to one worker thread that owns the record.

    CLI Example:

    .. code-block:: bash

        # not called from the CLI: enable it in the master config
        # engines: [{edge_fleet: {}}]
        salt-run edge.report
    """
    import asyncio

    import salt.utils.event

    opts = __opts__
    tick = float(interval or TICK_S)
    try:
        conf = _conf.from_opts(opts)
    except ValueError as exc:
        log.error("edge_fleet: not started, bad configuration: %s", exc)
        return
    # bounded in bytes; only the tags the engine reads (docs/ref/engine.rst, "Memory and log bounds")
    inbox = _engine.Inbox()
    stopping = threading.Event()
    worker = threading.Thread(
        target=_worker, args=(opts, conf, inbox, tick, stopping), name="edge-fleet", daemon=True
    )
    worker.start()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    dropped = itertools.count(1)

    async def on_event(raw):
        tag = _engine.peek_tag(raw)
        if not _engine.wanted(tag):
            return
        if len(raw) > inbox.max_event:
            # too big to be ours: counted (a heartbeat is refused "oversize"), never unpacked
            inbox.offer(tag, _engine.OVERSIZE_COST, _engine.oversize(tag, len(raw)))
            return
        try:
            tag, data = salt.utils.event.SaltEvent.unpack(raw)
        except Exception:
            return
        if not inbox.offer(tag, len(raw), (tag, data)):
            count = next(dropped)
            if count % 1000 == 1:
                log.error("edge_fleet: falling behind, %d event(s) dropped", count)

    def watch():
        if not worker.is_alive():
            log.error("edge_fleet: the worker thread stopped; stopping the engine")
            loop.stop()
            return
        loop.call_later(5, watch)

    try:
        with salt.utils.event.get_master_event(
            opts, opts["sock_dir"], io_loop=loop, listen=True
        ) as bus:
            bus.subscribe("")
            bus.set_event_handler(on_event)
            loop.call_later(5, watch)
            loop.run_forever()
    finally:
        stopping.set()
        worker.join(30)
        loop.close()
