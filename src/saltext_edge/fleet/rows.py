"""
The rows of the uplink history, named (``docs/ref/engine.rst``, "Record and
history"): a node's raw :class:`Sample` rows and :class:`HourRow` rows, a
site's :class:`SiteHourRow` rows.

Stored (``salt.cache``, msgpack) and kept in the engine's memory as plain
lists in the field order of their type: that order is the layout. Fields are
only ever appended, never moved or removed, so :func:`load` reads every row
written so far: an older, shorter row gets ``None`` for the fields it lacks;
a newer, longer one keeps the fields this version knows. :func:`stored`
turns a named row back into the stored list.

Pure: no Salt, no I/O.
"""

import typing


class Sample(typing.NamedTuple):
    """One heartbeat's uplink figures, as received at ``at`` (epoch seconds)."""

    at: float
    rtt_ms: float | None
    jitter_ms: float | None
    loss_pct: float | None
    quality: str | None


class HourRow(typing.NamedTuple):
    """One node's hour (``hour``: its start, epoch seconds), aggregated from its samples."""

    hour: int
    samples: int
    rtt_ms_median: float | None
    rtt_ms_p95: float | None
    loss_pct: float | None
    heartbeats: int
    worst_quality: str | None


class SiteHourRow(typing.NamedTuple):
    """One site's hour: nodes online / late / offline at its end, the RTT and loss of all its samples."""

    hour: int
    online: int
    late: int
    offline: int
    rtt_ms_median: float | None
    rtt_ms_p95: float | None
    loss_pct: float | None
    samples: int

    def as_hour_row(self):
        """Return the :class:`HourRow` of the site as a whole (every sample counts as a heartbeat)."""
        return HourRow(
            self.hour,
            self.samples,
            self.rtt_ms_median,
            self.rtt_ms_p95,
            self.loss_pct,
            self.samples,
            None,
        )


#: positions of a :class:`Sample` in its stored list, for the loops over
#: every raw sample of a fleet (a report reads millions: no object per row)
AT, RTT_MS, JITTER_MS, LOSS_PCT, QUALITY = range(len(Sample._fields))


def load(kind, row):
    """
    Return the stored ``row`` (a list or tuple, of any layout written so far)
    as a ``kind`` (:class:`Sample`, :class:`HourRow` or :class:`SiteHourRow`).
    """
    width = len(kind._fields)
    if len(row) >= width:
        return kind._make(row[:width])
    return kind._make(list(row) + [None] * (width - len(row)))


def stored(row):
    """Return the named ``row`` as it is stored: a plain list in field order."""
    return list(row)
